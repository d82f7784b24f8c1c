r"""The quickstart's regime in PyTorch, for the side by side in docs/quickstart.md.

Same data (the shipped Fashion-MNIST subset, 28×28 padded by 2 to 32×32, grey expanded to RGB,
normalised with mean 0.286 / std 0.353, the first `count / 10` images of each class), same
networks (tools/zoo_reference.py: resnet20 teacher, its SS head, resnet8 students), same recipe
(SGD momentum 0.9, weight decay 5e-4, lr 0.05 with a per-epoch cosine decay to 0, batches of 16
images for the students and 64 for the teacher and its head, random crop with padding 4 +
horizontal flip; SSKD's four-rotation batches with one flip per image and a crop per copy) and
the released SSKD loss (tools/make_loss_fixtures.py). The generators differ from the Rust run's,
so runs agree in distribution, not image for image.

Usage (CPU torch from PyPI, plus numpy):
    python tools/quickstart_torch.py --threads 2 --seeds 0,1,2 \
        --teacher-cache runs/torch-teacher.pt --out runs/quickstart-torch.json
prints a table like the quickstart's (one row per student and seed, then the mean ± std over the
seeds) and writes the per-epoch results as JSON.
"""
import argparse
import gzip
import json
import math
import os
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(__file__))
import zoo_reference as zoo  # noqa: E402
from make_loss_fixtures import SSKD_DEFAULT, kd, sskd, ss_head  # noqa: E402

ROOT = os.path.join(os.path.dirname(__file__), "..")
KD_CFG = dict(ce_weight=0.1, kd_weight=0.9, temperature=4.0, logit_standardization=False)


def idx(path):
    with open(path, "rb") as f:
        raw = f.read()
    if raw[:2] == b"\x1f\x8b":
        raw = gzip.decompress(raw)
    dims = raw[3]
    shape = [int.from_bytes(raw[4 + 4 * d:8 + 4 * d], "big") for d in range(dims)]
    return np.frombuffer(raw, np.uint8, offset=4 + 4 * dims).reshape(shape)


def fashion(data, prefix, count):
    """`count` class-balanced images (the first count/10 of each class), padded to 32×32."""
    images = idx(os.path.join(data, f"{prefix}-images-idx3-ubyte.gz"))
    labels = idx(os.path.join(data, f"{prefix}-labels-idx1-ubyte.gz")).astype(np.int64)
    chosen = np.concatenate([np.flatnonzero(labels == c)[: count // 10] for c in range(10)])
    chosen.sort()
    x = torch.from_numpy(np.pad(images[chosen], ((0, 0), (2, 2), (2, 2)))).float() / 255.0
    x = ((x - 0.286) / 0.353).unsqueeze(1).expand(-1, 3, -1, -1).contiguous()
    return x, torch.from_numpy(labels[chosen])


def crop(x, generator, padding=4):
    """A random crop of each image of `x` from its zero-padded copy (torchvision's RandomCrop:
    the padding is black, normalised like every pixel)."""
    n, _, h, w = x.shape
    black = (0.0 - 0.286) / 0.353
    padded = F.pad(x, [padding] * 4, value=black)
    out = torch.empty_like(x)
    offsets = torch.randint(0, 2 * padding + 1, (n, 2), generator=generator)
    for i, (top, left) in enumerate(offsets.tolist()):
        out[i] = padded[i, :, top:top + h, left:left + w]
    return out


def flip(x, generator):
    mask = torch.rand(x.shape[0], generator=generator) < 0.5
    x = x.clone()
    x[mask] = x[mask].flip(3)
    return x


def plain_batch(x, generator):
    return crop(flip(x, generator), generator)


def rotation_batch(x, generator, train=True):
    """Rows 4i+k: image i rotated k·90° counter-clockwise (one flip per image, a crop per copy)."""
    base = flip(x, generator) if train else x
    copies = torch.stack([torch.rot90(base, k, dims=(2, 3)) for k in range(4)], 1)
    rows = copies.reshape(-1, *x.shape[1:])
    return crop(rows, generator) if train else rows


def batches(n, batch, generator):
    order = torch.randperm(n, generator=generator)
    return [order[i:i + batch] for i in range(0, n, batch)]


def cosine(base, epoch, epochs):
    return base * (1 + math.cos(math.pi * epoch / epochs)) / 2


def sgd(modules, lr):
    params = [p for m in modules for p in m.parameters()]
    return torch.optim.SGD(params, lr=lr, momentum=0.9, weight_decay=5e-4)


@torch.no_grad()
def top1(model, x, y):
    model.eval()
    correct = sum(int((model(x[i:i + 250])[0].argmax(1) == y[i:i + 250]).sum()) for i in range(0, len(y), 250))
    return 100.0 * correct / len(y)


@torch.no_grad()
def ss_accuracy(teacher, head, x):
    teacher.eval()
    head.eval()
    correct = rows = 0
    for i in range(0, x.shape[0], 250):
        emb = teacher(rotation_batch(x[i:i + 250], None, train=False))[1]
        correct += ss_head(head(emb))[2]["correct"]
        rows += 3 * min(250, x.shape[0] - i)
    return 100.0 * correct / rows


def train(name, modules, epochs, lr, x, y, step, evaluate, generator, batch):
    """`epochs` of SGD over (x, y) in batches of `batch` with a per-epoch cosine lr;
    `step(indices)` returns the loss. Each epoch's result is printed to stderr under `name`."""
    optimizer = sgd(modules, lr)
    history = []
    for epoch in range(epochs):
        for group in optimizer.param_groups:
            group["lr"] = cosine(lr, epoch, epochs)
        for m in modules:
            m.train()
        for indices in batches(len(y), batch, generator):
            loss = step(indices)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        history.append(evaluate())
        print(f"{name}: epoch {epoch + 1}/{epochs}, {history[-1]}", file=sys.stderr, flush=True)
    return history


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", default=os.path.join(ROOT, "data", "fashion-mnist"))
    parser.add_argument("--labelled", type=int, default=640)
    parser.add_argument("--test-images", type=int, default=1000)
    parser.add_argument("--epochs", type=int, default=12)
    parser.add_argument("--batch", type=int, default=16, help="student batch (images)")
    parser.add_argument("--teacher-batch", type=int, default=64)
    parser.add_argument("--teacher-images", type=int, default=8000)
    parser.add_argument("--teacher-epochs", type=int, default=6)
    parser.add_argument("--head-epochs", type=int, default=24)
    parser.add_argument("--methods", default="vanilla,kd,sskd")
    parser.add_argument("--seeds", default="0",
                        help="comma-separated; the teacher trains with the first, every student "
                             "once per seed, and the table gives mean ± std over them")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", default=None, help="JSON file for the per-epoch results")
    parser.add_argument("--teacher-cache", default=None,
                        help="a .pt file: the teacher and head are loaded from it when it exists, "
                             "else trained and saved to it")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    seeds = [int(s) for s in args.seeds.split(",")]
    test_x, test_y = fashion(args.data, "t10k", args.test_images)
    report = {"args": vars(args), "rows": []}

    started = time.time()
    teacher, head = zoo.build("resnet20", 10), zoo.SS_HEAD(64)
    if args.teacher_cache and os.path.exists(args.teacher_cache):
        state = torch.load(args.teacher_cache)
        teacher.load_state_dict(state["teacher"])
        head.load_state_dict(state["head"])
    else:
        train_teacher(teacher, head, args, seeds[0], test_x, test_y)
        if args.teacher_cache:
            os.makedirs(os.path.dirname(os.path.abspath(args.teacher_cache)), exist_ok=True)
            torch.save({"teacher": teacher.state_dict(), "head": head.state_dict()},
                       args.teacher_cache)
    teacher.eval().requires_grad_(False)
    head.eval().requires_grad_(False)
    report["teacher"] = {"top1": top1(teacher, test_x, test_y),
                         "ss_top1": ss_accuracy(teacher, head, test_x),
                         "seconds": time.time() - started}

    x, y = fashion(args.data, "train", args.labelled)
    for seed in seeds:
        for method in args.methods.split(","):
            row = train_student(method, seed, teacher, head, x, y, test_x, test_y, args)
            report["rows"].append(row)

    teacher_row = report["teacher"]
    print(f"PyTorch {torch.__version__}, {args.threads} threads; students on {len(y)} labelled "
          f"images, {args.epochs} epochs of batch {args.batch}, {len(test_y)} test images; teacher "
          f"resnet20 {teacher_row['top1']:.2f} %, SS head {teacher_row['ss_top1']:.2f} %")
    print(f"{'model':<28} {'seed':>4} {'best top-1 (ep)':>16} {'last top-1':>10} {'s':>7}")
    for row in report["rows"]:
        best = f"{row['best']:.2f} ({row['best_epoch']})"
        print(f"{row['name']:<28} {row['seed']:>4} {best:>16} {row['last']:>10.2f} "
              f"{row['seconds']:>7.1f}")
    if len(seeds) > 1:
        print(f"mean ± std over seeds {args.seeds}:")
        report["summary"] = {}
        for method in args.methods.split(","):
            rows = [r for r in report["rows"] if r["method"] == method]
            stats = {k: (float(np.mean([r[k] for r in rows])),
                         float(np.std([r[k] for r in rows], ddof=1))) for k in ("best", "last")}
            report["summary"][method] = stats
            print(f"student resnet8, {method:<11} best {stats['best'][0]:.2f} ± "
                  f"{stats['best'][1]:.2f}, last {stats['last'][0]:.2f} ± {stats['last'][1]:.2f}")
    if args.out:
        os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
        with open(args.out, "w") as f:
            json.dump(report, f, indent=1)


def train_teacher(teacher, head, args, seed, test_x, test_y):
    """Stage 1 (cross-entropy) and stage 2 (the SS head on the frozen backbone) on the first
    `--teacher-images` class-balanced training images."""
    torch.manual_seed(seed)
    generator = torch.Generator().manual_seed(seed)
    tx, ty = fashion(args.data, "train", args.teacher_images)
    train("teacher", [teacher], args.teacher_epochs, 0.05, tx, ty,
          lambda i: F.cross_entropy(teacher(plain_batch(tx[i], generator))[0], ty[i]),
          lambda: top1(teacher, test_x, test_y), generator, args.teacher_batch)
    teacher.eval().requires_grad_(False)

    def head_loss(i):
        with torch.no_grad():
            emb = teacher(rotation_batch(tx[i], generator))[1]
        terms, _, _ = ss_head(head(emb))
        return terms["head"]

    train("SS head", [head], args.head_epochs, 0.05, tx, ty, head_loss, lambda: None, generator,
          args.teacher_batch)


def train_student(method, seed, teacher, head, x, y, test_x, test_y, args):
    """One resnet8 student of `method` (vanilla, kd or sskd) from seed `seed`; its row."""
    torch.manual_seed(seed)
    generator = torch.Generator().manual_seed(seed)
    student = zoo.build("resnet8", 10)
    student_head = zoo.SS_HEAD(64)

    def step(i):
        if method == "vanilla":
            return F.cross_entropy(student(plain_batch(x[i], generator))[0], y[i])
        if method == "kd":
            rows = plain_batch(x[i], generator)
            with torch.no_grad():
                t_logits = teacher(rows)[0]
            terms, weights, _ = kd(student(rows)[0], t_logits, y[i], KD_CFG)
            return sum(weights[k] * v for k, v in terms.items())
        rows = rotation_batch(x[i], generator)
        with torch.no_grad():
            t_logits, t_emb = teacher(rows)[:2]
            t_head = head(t_emb)
        s_logits, s_emb = student(rows)[:2]
        terms, weights, _ = sskd(s_logits, t_logits, student_head(s_emb), t_head, y[i], SSKD_DEFAULT)
        return sum(weights[k] * v for k, v in terms.items())

    started = time.time()
    modules = [student] if method != "sskd" else [student, student_head]
    history = train(f"{method}, seed {seed}", modules, args.epochs, 0.05, x, y, step,
                    lambda: top1(student, test_x, test_y), generator, args.batch)
    best = max(range(len(history)), key=lambda e: history[e])
    return {"name": f"student resnet8, {method}", "method": method, "seed": seed,
            "best": history[best], "best_epoch": best, "last": history[-1], "history": history,
            "seconds": time.time() - started}


if __name__ == "__main__":
    main()
