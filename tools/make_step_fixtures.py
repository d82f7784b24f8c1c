"""Reference training steps of the released SSKD code, for `tests/steps_match_pytorch.rs`.

For each case, in float64 on CPU torch, from deterministic weights (the `deterministic(key,
shape)` draw of make_model_fixtures.py, keyed `"<case>/<role>/<state-dict key>"`, which the
Rust test draws bit for bit) and a committed batch:

- student cases: every published CIFAR-100 pair of the paper (the SSKD step), and a KD
  student; SSKD's `student.py` step (teacher `wrapper` in eval mode, student `wrapper` in
  train mode on the 4B rows, row 4i+k = image i rotated k·90°; CE + KD + TF + SS with error
  ranking, the default weights) or a KD step (B rows, CE + KD), then SGD(lr 0.05, momentum 0.9,
  weight decay 5e-4) on the student's backbone and SS head; two steps on the same batch;
- teacher cases: RepDistiller's cross-entropy step of one network, two steps.

Written to tests/fixtures/steps/<case>.safetensors: `x` (f32) and `labels` (i64), the batch;
for every key of the trained network's state dict, `sample.<key>` (the update final − initial
at up to 512 evenly spaced elements, float64), `max.<key>` (max |update| over the whole
tensor) and `sum.<key>` (Σ final); metadata `case` (JSON: stage, archs, method, keys and
shapes, per-step terms and selection counts). Weights are not stored: both sides draw them.

The batch is redrawn until every selection is robust: no target score within 1e-6 of another
score of its row (teacher logits for TF, teacher similarities for SS), so that the kept rows
cannot change with rounding. The SS head of a random network sees embeddings whose cosine
similarities all lie near 1; the teacher's similarities are spread by the head's deterministic
weights, and the margin check above is what makes the ranking well defined.

    python tools/make_step_fixtures.py   # -> tests/fixtures/steps/*.safetensors
"""
import json
import os
import sys

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from safetensors.numpy import save_file

sys.path.insert(0, os.path.dirname(__file__))
import zoo_reference as zoo  # noqa: E402
from make_loss_fixtures import SSKD_DEFAULT, kl_batchmean, rank_of_target, select  # noqa: E402
from make_model_fixtures import deterministic  # noqa: E402

OUT = os.path.join(os.path.dirname(__file__), "..", "tests", "fixtures", "steps")
CLASSES = 100
BATCH = 4
SIZE = 32
STEPS = 2
LR, MOMENTUM, WEIGHT_DECAY = 0.05, 0.9, 5e-4
SAMPLES = 512
MARGIN = 1e-6

STUDENT_CASES = [
    ("sskd_wrn_40_2_wrn_16_2", "sskd", "wrn_40_2", "wrn_16_2"),
    ("sskd_resnet56_resnet20", "sskd", "resnet56", "resnet20"),
    ("sskd_vgg13_vgg8", "sskd", "vgg13", "vgg8"),
    ("sskd_vgg13_MobileNetV2", "sskd", "vgg13", "MobileNetV2"),
    ("sskd_wrn_40_2_ShuffleV1", "sskd", "wrn_40_2", "ShuffleV1"),
    ("kd_wrn_40_2_wrn_16_2", "kd", "wrn_40_2", "wrn_16_2"),
    ("sskd_wrn_40_2_wrn_40_1", "sskd", "wrn_40_2", "wrn_40_1"),
    ("sskd_resnet32x4_resnet8x4", "sskd", "resnet32x4", "resnet8x4"),
    ("sskd_ResNet50_MobileNetV2", "sskd", "ResNet50", "MobileNetV2"),
    ("sskd_ResNet50_vgg8", "sskd", "ResNet50", "vgg8"),
    ("sskd_resnet32x4_ShuffleV1", "sskd", "resnet32x4", "ShuffleV1"),
    ("sskd_resnet32x4_ShuffleV2", "sskd", "resnet32x4", "ShuffleV2"),
]
TEACHER_CASES = ["wrn_16_1", "resnet8", "vgg8", "MobileNetV2", "ShuffleV1", "ShuffleV2"]


class Wrapper(nn.Module):
    """SSKD's `wrapper`: the backbone and `proj_head` = Linear(d, d) → ReLU → Linear(d, d)."""

    def __init__(self, backbone, dim):
        super().__init__()
        self.backbone = backbone
        self.proj_head = nn.Sequential(nn.Linear(dim, dim), nn.ReLU(inplace=True), nn.Linear(dim, dim))

    def forward(self, x):
        logits, emb = backbone_forward(self.backbone, x)
        return logits, self.proj_head(emb)


def backbone_forward(backbone, x):
    """Logits and embedding as the released code's `model(x, is_feat=True)` (no pre-activation
    features: for a WRN their second BN calls would update running statistics again)."""
    if isinstance(backbone, zoo.WideResNet):
        return backbone(x, preact=False)[:2]
    return backbone(x)[:2]


def embedding_dim(backbone):
    with torch.no_grad():
        return backbone.eval()(torch.zeros(2, 3, SIZE, SIZE))[1].shape[1]


def load_deterministic(module, case, role):
    state = {}
    for key, value in module.state_dict().items():
        if key.endswith("num_batches_tracked"):
            state[key] = value
        else:
            state[key] = torch.from_numpy(deterministic(f"{case}/{role}/{key}", tuple(value.shape)))
    module.load_state_dict(state)
    return module.double()


def state_keys(module):
    return [[k, list(v.shape)] for k, v in module.state_dict().items() if not k.endswith("num_batches_tracked")]


def draw_batch(rng, rotations):
    """Images with their own per-channel offset and contrast, so that even a random network's
    embeddings (and its SS head's similarities) differ between images."""
    noise = rng.normal(0.0, 1.0, (BATCH, 3, SIZE, SIZE))
    offset = rng.normal(0.0, 2.0, (BATCH, 3, 1, 1))
    contrast = rng.uniform(0.3, 3.0, (BATCH, 1, 1, 1))
    images = torch.from_numpy((noise * contrast + offset).astype(np.float32))
    labels = torch.from_numpy(rng.integers(0, CLASSES, size=BATCH)).long()
    if not rotations:
        return images, labels
    rows = [torch.rot90(images[i], k, (1, 2)) for i in range(BATCH) for k in range(4)]
    return torch.stack(rows).contiguous(), labels


def split(rows):
    b = rows.shape[0] // 4
    grouped = rows.view(b, 4, -1)
    return grouped[:, 0], grouped[:, 1:].reshape(3 * b, -1)


def similarities(head_rows):
    nor, aug = split(head_rows)
    return F.cosine_similarity(aug.unsqueeze(2), nor.unsqueeze(2).transpose(0, 2), dim=1, eps=1e-8)


def margin(scores, targets):
    """The smallest |score − target score| over each row's other entries."""
    target = scores.gather(1, targets.view(-1, 1))
    gaps = (scores - target).abs()
    gaps.scatter_(1, targets.view(-1, 1), float("inf"))
    return float(gaps.min())


def sskd_step_terms(s_logits, s_head, t_logits, t_head, labels, cfg):
    """student.py's loss (error-ranking selection in its deterministic reading)."""
    b = labels.numel()
    s_nor, s_aug = split(s_logits)
    t_nor, t_aug = split(t_logits)
    aug_labels = labels.unsqueeze(1).expand(-1, 3).reshape(-1)
    keep_tf = select(rank_of_target(t_aug, aug_labels), cfg["ratio_tf"])
    s_sim, t_sim = similarities(s_head), similarities(t_head)
    sources = torch.arange(3 * b) // 3
    keep_ss = select(rank_of_target(t_sim, sources), cfg["ratio_ss"])
    kd_t, tf_t, ss_t = cfg["kd_temperature"], cfg["tf_temperature"], cfg["ss_temperature"]
    terms = {
        "ce": F.cross_entropy(s_nor, labels),
        "kd": kl_batchmean(t_nor, s_nor, kd_t) * kd_t ** 2,
        "tf": kl_batchmean(t_aug[keep_tf], s_aug[keep_tf], tf_t) * tf_t ** 2,
        "ss": kl_batchmean(t_sim[keep_ss], s_sim[keep_ss], ss_t) * ss_t ** 2,
    }
    weights = {"ce": cfg["ce_weight"], "kd": cfg["kd_weight"], "tf": cfg["tf_weight"], "ss": cfg["ss_weight"]}
    counts = {"kept_tf": int(keep_tf.numel()), "kept_ss": int(keep_ss.numel())}
    return terms, weights, counts


def kd_step_terms(s_logits, t_logits, labels, temperature=4.0):
    terms = {"ce": F.cross_entropy(s_logits, labels), "kd": kl_batchmean(t_logits, s_logits, temperature) * temperature ** 2}
    return terms, {"ce": 0.1, "kd": 0.9}, {}


def robust_batch(rng, teacher, rotations):
    """A batch whose teacher scores leave every selection well defined (see the docstring)."""
    for _ in range(100):
        x, labels = draw_batch(rng, rotations)
        if not rotations:
            return x, labels
        with torch.no_grad():
            t_logits, t_head = teacher(x.double())
        _, t_aug = split(t_logits)
        aug_labels = labels.unsqueeze(1).expand(-1, 3).reshape(-1)
        sources = torch.arange(3 * BATCH) // 3
        sims = similarities(t_head)
        if margin(t_aug, aug_labels) > MARGIN and margin(sims, sources) > MARGIN:
            print(f"  teacher similarities span {float(sims.min()):.3f}..{float(sims.max()):.3f}")
            return x, labels
    raise RuntimeError("no robust batch in 100 draws")


def summarise(initial, final):
    arrays = {}
    for key, value in final.items():
        if key.endswith("num_batches_tracked"):
            continue
        update = (value - initial[key]).reshape(-1).numpy()
        count = update.size
        positions = np.linspace(0, count - 1, min(count, SAMPLES)).round().astype(np.int64)
        arrays[f"sample.{key}"] = update[positions]
        arrays[f"max.{key}"] = np.array([np.abs(update).max()])
        arrays[f"sum.{key}"] = np.array([value.double().sum().item()])
    return arrays


def snapshot(module):
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


def student_case(case, method, teacher_arch, student_arch, rng):
    t_backbone = zoo.build(teacher_arch, CLASSES)
    teacher = load_deterministic(Wrapper(t_backbone, embedding_dim(t_backbone)), case, "teacher").eval()
    s_backbone = zoo.build(student_arch, CLASSES)
    student = load_deterministic(Wrapper(s_backbone, embedding_dim(s_backbone)), case, "student").train()
    rotations = method == "sskd"
    x, labels = robust_batch(rng, teacher, rotations)
    initial = snapshot(student)
    optimizer = torch.optim.SGD(student.parameters(), lr=LR, momentum=MOMENTUM, weight_decay=WEIGHT_DECAY)
    steps = []
    for _ in range(STEPS):
        s_logits, s_head = student(x.double())
        with torch.no_grad():
            t_logits, t_head = teacher(x.double())
        if rotations:
            terms, weights, counts = sskd_step_terms(s_logits, s_head, t_logits, t_head, labels, SSKD_DEFAULT)
        else:
            terms, weights, counts = kd_step_terms(s_logits, t_logits, labels)
        total = sum(weights[k] * v for k, v in terms.items())
        optimizer.zero_grad()
        total.backward()
        optimizer.step()
        steps.append({**{k: v.item() for k, v in terms.items()}, "total": total.item(), **counts})
    meta = {
        "stage": "student", "method": method, "teacher_arch": teacher_arch, "student_arch": student_arch,
        "teacher_keys": state_keys(teacher), "student_keys": state_keys(student), "steps": steps,
    }
    return x, labels, summarise(initial, snapshot(student)), meta


def teacher_case(case, arch, rng):
    model = load_deterministic(zoo.build(arch, CLASSES), case, "weights").train()
    x, labels = draw_batch(rng, rotations=False)
    initial = snapshot(model)
    optimizer = torch.optim.SGD(model.parameters(), lr=LR, momentum=MOMENTUM, weight_decay=WEIGHT_DECAY)
    steps = []
    for _ in range(STEPS):
        loss = F.cross_entropy(backbone_forward(model, x.double())[0], labels)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        steps.append({"ce": loss.item(), "total": loss.item()})
    meta = {"stage": "teacher", "arch": arch, "keys": state_keys(model), "steps": steps}
    return x, labels, summarise(initial, snapshot(model)), meta


def write(case, result):
    x, labels, arrays, meta = result
    meta.update({"case": case, "num_classes": CLASSES, "lr": LR, "momentum": MOMENTUM, "weight_decay": WEIGHT_DECAY})
    tensors = {"x": x.numpy().astype(np.float32), "labels": labels.numpy().astype(np.int64), **arrays}
    save_file(tensors, os.path.join(OUT, f"{case}.safetensors"), metadata={"case": json.dumps(meta)})
    print(case, meta["steps"])


def main():
    torch.manual_seed(0)
    os.makedirs(OUT, exist_ok=True)
    for index, (case, method, teacher_arch, student_arch) in enumerate(STUDENT_CASES):
        write(case, student_case(case, method, teacher_arch, student_arch, np.random.default_rng(index)))
    for index, arch in enumerate(TEACHER_CASES):
        case = f"teacher_{arch}"
        write(case, teacher_case(case, arch, np.random.default_rng(100 + index)))


if __name__ == "__main__":
    main()
