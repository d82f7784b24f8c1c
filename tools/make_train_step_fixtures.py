"""Reference for whole training steps: a network in train mode, cross-entropy, backward and
torch.optim.SGD(lr 0.05, momentum 0.9, weight decay 5e-4), three steps, in float64.

For resnet8 (10 classes; its stride-2 projection shortcuts) and wrn_16_1 (10 classes), from
the deterministic weights of make_model_fixtures.py, on the deterministic input of shape
[8, 3, 32, 32] with labels 0..7, writes the loss of every step and the eval-mode logits after
the last step (these depend on every parameter and every running statistic).

A second file per architecture keeps the float64 results as they are, for the float64 tests:
`losses` and `eval_logits`, the whole state dict after the last step (`state.<key>`, every
parameter and running statistic) and the gradient of every parameter in the first backward
(`grad.<key>`), so that a mismatch can be traced to the first tensor that differs.

    python tools/make_train_step_fixtures.py
    # -> tests/fixtures/training/<arch>_sgd.safetensors (float32) and <arch>_sgd_f64.safetensors
"""
import json
import os
import sys

import numpy as np
import torch
from safetensors.numpy import save_file

sys.path.insert(0, os.path.dirname(__file__))
import zoo_reference as zoo  # noqa: E402
from make_model_fixtures import deterministic, deterministic_state  # noqa: E402

OUT = os.path.join(os.path.dirname(__file__), "..", "tests", "fixtures", "training")
STEPS = 3


def train_logits(model, x):
    """The logits of a plain training step: RepDistiller's forward without `is_feat`, so no
    pre-activation features (whose extra BN calls would update running statistics twice)."""
    if isinstance(model, zoo.WideResNet):
        return model(x, preact=False)[0]
    return model(x)[0]


def write(arch):
    model = zoo.build(arch, 10)
    model.load_state_dict(deterministic_state(model))
    model = model.double().train()
    x = torch.from_numpy(deterministic("input", (8, 3, 32, 32))).double()
    y = torch.arange(8)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, weight_decay=5e-4)
    losses = []
    first_grads = {}
    for _ in range(STEPS):
        logits = train_logits(model, x)
        loss = torch.nn.functional.cross_entropy(logits, y)
        optimizer.zero_grad()
        loss.backward()
        if not first_grads:
            first_grads = {f"grad.{k}": p.grad.numpy().copy() for k, p in model.named_parameters()}
        optimizer.step()
        losses.append(loss.item())
    model.eval()
    with torch.no_grad():
        logits = model(x)[0]
    meta = {
        "arch": arch,
        "num_classes": 10,
        "input_shape": [8, 3, 32, 32],
        "keys": [[k, list(v.shape)] for k, v in model.state_dict().items() if not k.endswith("num_batches_tracked")],
    }
    save_file(
        {"losses": np.array(losses, dtype=np.float32), "eval_logits": logits.float().numpy()},
        os.path.join(OUT, f"{arch}_sgd.safetensors"),
        metadata={"case": json.dumps(meta)},
    )
    final_state = {
        f"state.{k}": v.numpy().copy()
        for k, v in model.state_dict().items()
        if not k.endswith("num_batches_tracked")
    }
    save_file(
        {
            "losses": np.array(losses, dtype=np.float64),
            "eval_logits": logits.numpy(),
            **final_state,
            **first_grads,
        },
        os.path.join(OUT, f"{arch}_sgd_f64.safetensors"),
        metadata={"case": json.dumps(meta)},
    )
    print(arch, losses)


if __name__ == "__main__":
    os.makedirs(OUT, exist_ok=True)
    for arch in ["resnet8", "wrn_16_1"]:
        write(arch)
