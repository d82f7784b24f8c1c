"""Writes the PyTorch reference fixtures of the model zoo to tests/fixtures/models/.

Usage (CPU torch from PyPI, plus numpy and safetensors):
    pip install torch numpy safetensors
    python tools/make_model_fixtures.py

Weights are not stored for every architecture (the zoo holds ~190 M parameters). Instead every
state-dict entry and the input batch are drawn from a counter-based generator keyed by the
tensor's PyTorch name, which tests/common/mod.rs reimplements bit for bit:

    seed   = FNV-1a-64(key as UTF-8)
    u_i    = (splitmix64(seed + i) >> 40) / 2^24          (i = flat element index)
    t_i    = f32(2·u_i − 1)                                in [−1, 1), exact in f32
    conv / linear weight (ndim ≥ 2): t_i · f32(sqrt(3 / fan_in)),  fan_in = prod(shape[1:])
    1-D `weight` (batch norm γ): 1 + 0.25·t_i;   any `bias`: 0.1·t_i
    running_mean: 0.1·t_i;   running_var: 1 + 0.5·t_i;   the input batch ("input"): t_i
(all arithmetic in f32). The reference outputs are computed in float64 from those exact values.

Each fixture `<case>.safetensors` holds `logits` and `embedding` in full and, for every feature
map `feat.k` / `preact.k`, 2048 elements sampled at flat indices floor(j·numel / 2048) (all
elements when there are fewer). Its metadata `case` (JSON) names the architecture, classes,
input shape, the state-dict keys with shapes, and the feature shapes.

It also writes real checkpoints, for the import path:
- resnet8_repdistiller.pth: {"model": state_dict, "epoch", "best_acc", "optimizer"} (RepDistiller)
- resnet8_state_dict.safetensors: the bare state dict
- wrn_16_1_sskd_teacher.pth: SSKD's teacher.pth after head training, saved from DataParallel
  (`module.backbone.*`, `module.proj_head.*`), plus `head` output in the wrn_16_1 fixture.
"""
import json
import os
import sys

import numpy as np
import torch
from safetensors.numpy import save_file

sys.path.insert(0, os.path.dirname(__file__))
import zoo_reference as zoo  # noqa: E402

OUT = os.path.join(os.path.dirname(__file__), "..", "tests", "fixtures", "models")
SAMPLES = 2048
MASK = (1 << 64) - 1


def fnv1a64(text):
    h = 0xCBF29CE484222325
    for byte in text.encode():
        h = ((h ^ byte) * 0x100000001B3) & MASK
    return h


def uniform_signed(key, count):
    """t_i = 2·u_i − 1 in float32, u_i from splitmix64(seed + i)."""
    with np.errstate(over="ignore"):
        z = (np.uint64(fnv1a64(key)) + np.arange(count, dtype=np.uint64)).astype(np.uint64)
        z = z + np.uint64(0x9E3779B97F4A7C15)
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        z = z ^ (z >> np.uint64(31))
    u = (z >> np.uint64(40)).astype(np.float64) / float(1 << 24)
    return (2.0 * u - 1.0).astype(np.float32)


def deterministic(key, shape):
    t = uniform_signed(key, int(np.prod(shape)))
    leaf = key.rsplit(".", 1)[-1]
    f = np.float32
    if leaf == "running_var":
        v = f(1.0) + f(0.5) * t
    elif leaf == "running_mean" or leaf == "bias":
        v = f(0.1) * t
    elif leaf == "weight" and len(shape) == 1:
        v = f(1.0) + f(0.25) * t
    elif leaf == "weight":
        fan_in = int(np.prod(shape[1:]))
        v = t * f(np.sqrt(3.0 / fan_in))
    else:
        v = t
    return v.astype(np.float32).reshape(shape)


def deterministic_state(module, prefix=""):
    state = {}
    for key, value in module.state_dict().items():
        if key.endswith("num_batches_tracked"):
            state[key] = value
        else:
            state[key] = torch.from_numpy(deterministic(prefix + key, tuple(value.shape)))
    return state


def sample(array):
    flat = array.reshape(-1)
    n = flat.size
    if n <= SAMPLES:
        return flat.astype(np.float32)
    idx = (np.arange(SAMPLES, dtype=np.int64) * n) // SAMPLES
    return flat[idx].astype(np.float32)


CASES = [(n, 100, 32, 2) for n in [
    "resnet8", "resnet14", "resnet20", "resnet32", "resnet44", "resnet56", "resnet110", "resnet8x4",
    "resnet32x4", "resnet14x05", "resnet20x05", "resnet20x0375", "wrn_16_2", "wrn_40_1", "wrn_40_2",
    "vgg8", "vgg11", "vgg13", "vgg16", "vgg19", "MobileNetV2", "ShuffleV1", "ResNet18", "ResNet34", "ResNet50",
]] + [
    ("wrn_16_1", 10, 32, 2),
    ("ShuffleV2", 7, 32, 2),
    ("vgg8", 100, 64, 2),
    ("resnet18", 1000, 224, 1),
    ("resnet34", 1000, 224, 1),
    ("resnet50", 1000, 224, 1),
]


def case_name(arch, size):
    return arch if size in (32, 224) else f"{arch}_{size}"


@torch.no_grad()
def write_case(arch, num_classes, size, batch):
    model = zoo.build(arch, num_classes).eval()
    model.load_state_dict(deterministic_state(model))
    model = model.double()
    x = torch.from_numpy(deterministic("input", (batch, 3, size, size))).double()
    logits, emb, feats, pres = model(x)
    tensors = {"logits": logits.float().numpy(), "embedding": emb.float().numpy()}
    for k, f in enumerate(feats):
        tensors[f"feat.{k}"] = sample(f.numpy())
    if pres is not None:
        for k, p in enumerate(pres):
            tensors[f"preact.{k}"] = sample(p.numpy())
    meta = {
        "arch": arch,
        "num_classes": num_classes,
        "input_shape": [batch, 3, size, size],
        "keys": [[k, list(v.shape)] for k, v in model.state_dict().items() if not k.endswith("num_batches_tracked")],
        "feature_shapes": [list(f.shape) for f in feats],
        "has_preact": pres is not None,
        "params": sum(p.numel() for p in model.parameters()),
    }
    if arch == "wrn_16_1":
        head = zoo.SS_HEAD(emb.shape[1]).eval()
        head.load_state_dict(deterministic_state(head, "proj_head."))
        tensors["head"] = head.double()(emb).float().numpy()
        write_wrn_teacher(model, head)
    if arch == "resnet8":
        write_resnet8_checkpoints(model)
    name = case_name(arch, size)
    save_file({k: np.ascontiguousarray(v) for k, v in tensors.items()},
              os.path.join(OUT, f"{name}.safetensors"), metadata={"case": json.dumps(meta)})
    print(f"{name}: {meta['params']} params, logits {tuple(logits.shape)}")


def float_state(model):
    return {k: (v.float() if v.is_floating_point() else v) for k, v in model.state_dict().items()}


def write_resnet8_checkpoints(model):
    state = float_state(model)
    optimizer = torch.optim.SGD(zoo.build("resnet8").parameters(), lr=0.05, momentum=0.9)
    torch.save({"epoch": 240, "model": state, "best_acc": 71.3, "optimizer": optimizer.state_dict()},
               os.path.join(OUT, "resnet8_repdistiller.pth"))
    save_file({k: v.numpy() for k, v in state.items() if not k.endswith("num_batches_tracked")},
              os.path.join(OUT, "resnet8_state_dict.safetensors"))


def write_wrn_teacher(model, head):
    state = {f"module.backbone.{k}": v for k, v in float_state(model).items()}
    state.update({f"module.proj_head.{k}": v.float() for k, v in head.state_dict().items()})
    torch.save(state, os.path.join(OUT, "wrn_16_1_sskd_teacher.pth"))


if __name__ == "__main__":
    os.makedirs(OUT, exist_ok=True)
    for case in CASES:
        write_case(*case)
