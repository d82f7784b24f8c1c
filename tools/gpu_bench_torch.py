"""The PyTorch twin of `examples/gpu_bench.rs`: times the same training steps, named the same
way (`sskd/wrn_40_2/wrn_16_2/64`, `kd/…`, `teacher/wrn_40_2/64`, `head/wrn_40_2/64`), on the
same synthetic CIFAR-shaped batches, and prints one JSON object per configuration with the same
fields, so that `tools/gpu_bench_table.py` can put the two side by side.

The steps are those of the reference code, in eager mode:
- sskd: frozen teacher (eval, no grad) with its SS head, student + SS head in train mode over
  4 × B rows, the SSKD loss of the released code (cosine similarity matrix by broadcasting,
  error-ranking selection; `tools/make_loss_fixtures.py`), SGD(0.05, momentum 0.9, wd 5e-4);
- kd: frozen teacher, student over B rows, 0.1 · CE + 0.9 · KD (T = 4);
- teacher: the teacher in train mode, cross-entropy;
- head: frozen teacher, SS head over 4 × B rows, cross-entropy of the similarity matrix.
Every step ends with `torch.cuda.synchronize()`; the median of `--steps` timed steps after
`--warmup` is reported. `cudnn.benchmark` is on by default, as RepDistiller/SSKD set it; cuDNN's default TF32
convolutions stay on unless `--no-tf32` (both are recorded in each line).

Usage: python tools/gpu_bench_torch.py [--device cuda] [--precision f32|bf16|f16]
           [--channels-last] [--warmup 10] [--steps 50] CONFIG [CONFIG …]
"""
import argparse
import json
import os
import sys
import time

LAUNCHED = time.perf_counter()

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

sys.path.insert(0, os.path.dirname(__file__))
import zoo_reference as zoo  # noqa: E402
from make_loss_fixtures import SSKD_DEFAULT, kd, ss_head, sskd  # noqa: E402

CLASSES, SIZE, LR = 100, 32, 0.05
KD_CFG = dict(temperature=4.0, ce_weight=0.1, kd_weight=0.9, logit_standardization=False)


def parse(name):
    parts = name.split("/")
    kind = parts[0]
    networks = 2 if kind in ("sskd", "kd") else 1
    if kind not in ("sskd", "kd", "teacher", "head") or len(parts) != networks + 2:
        raise SystemExit(f"configuration `{name}`: expected sskd|kd/TEACHER/STUDENT/BATCH or teacher|head/TEACHER/BATCH")
    if not parts[-1].isdigit() or int(parts[-1]) == 0:
        raise SystemExit(f"configuration `{name}`: batch `{parts[-1]}` is not a positive number")
    batch = int(parts[-1])
    return kind, parts[1], parts[2] if networks == 2 else None, batch


def copies(kind):
    return 4 if kind in ("sskd", "head") else 1


def sgd(params):
    return torch.optim.SGD(params, lr=LR, momentum=0.9, weight_decay=5e-4)


def weighted(terms, weights):
    return sum(weights[k] * v for k, v in terms.items())


class Step:
    """One configuration's networks, optimiser and batch; `run()` is one training step."""

    def __init__(self, name, device, args):
        self.kind, teacher_name, student_name, self.batch = parse(name)
        self.device, self.args = device, args
        generator = torch.Generator().manual_seed(0)
        rows = self.batch * copies(self.kind)
        self.x = (torch.rand(rows, 3, SIZE, SIZE, generator=generator) * 4 - 2).to(device)
        self.y = torch.randint(0, CLASSES, (self.batch,), generator=generator).to(device)
        if args.channels_last:
            self.x = self.x.contiguous(memory_format=torch.channels_last)
        self.teacher = self.prepare(zoo.build(teacher_name, CLASSES))
        t_dim = self.embedding_dim(self.teacher)
        if self.kind == "teacher":
            self.teacher.train()
            self.trained = [self.teacher]
        else:
            self.teacher.eval().requires_grad_(False)
            self.teacher_head = self.prepare(zoo.SS_HEAD(t_dim)).eval().requires_grad_(False)
        if self.kind == "head":
            self.head = self.prepare(zoo.SS_HEAD(t_dim)).train()
            self.trained = [self.head]
        if student_name is not None:
            self.student = self.prepare(zoo.build(student_name, CLASSES)).train()
            self.student_head = self.prepare(zoo.SS_HEAD(self.embedding_dim(self.student))).train()
            self.trained = [self.student, self.student_head]
        self.optimizer = sgd([p for m in self.trained for p in m.parameters()])
        self.scaler = torch.amp.GradScaler(device.type) if args.precision == "f16" else None

    def prepare(self, module):
        module = module.to(self.device)
        if self.args.channels_last:
            module = module.to(memory_format=torch.channels_last)
        return module

    def embedding_dim(self, model):
        with torch.no_grad():
            probe = torch.zeros(2, 3, SIZE, SIZE, device=self.device)
            was_training = model.training
            model.eval()
            dim = model(probe)[1].shape[1]
            model.train(was_training)
        return dim

    def autocast(self):
        dtype = {"bf16": torch.bfloat16, "f16": torch.float16}.get(self.args.precision)
        return torch.autocast(self.device.type, dtype=dtype, enabled=dtype is not None)

    def loss(self):
        x, y = self.x, self.y
        if self.kind == "teacher":
            logits = self.teacher(x)[0]
            return F.cross_entropy(logits, y), {}
        with torch.no_grad():
            t_logits, t_emb = self.teacher(x)[:2]
        if self.kind == "head":
            terms, weights, counts = ss_head(self.head(t_emb).float())
            return weighted(terms, weights), counts
        with torch.no_grad():
            t_head = self.teacher_head(t_emb)
        s_logits, s_emb = self.student(x)[:2]
        if self.kind == "kd":
            terms, weights, counts = kd(s_logits.float(), t_logits.float(), y, KD_CFG)
            return weighted(terms, weights), counts
        s_head = self.student_head(s_emb)
        terms, weights, counts = sskd(s_logits.float(), t_logits.float(), s_head.float(), t_head.float(), y, SSKD_DEFAULT)
        return weighted(terms, weights), counts

    def run(self):
        with self.autocast():
            loss, _ = self.loss()
        self.optimizer.zero_grad(set_to_none=True)
        if self.scaler is not None:
            self.scaler.scale(loss).backward()
            self.scaler.step(self.optimizer)
            self.scaler.update()
        else:
            loss.backward()
            self.optimizer.step()
        return loss.item()


def synchronize(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(step, device):
    start = time.perf_counter()
    step.run()
    synchronize(device)
    return (time.perf_counter() - start) * 1e3


def quantile(sorted_ms, q):
    return sorted_ms[round((len(sorted_ms) - 1) * q)] if sorted_ms else float("nan")


def measure(name, device, args):
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)
    started, cpu_started = time.perf_counter(), time.process_time()
    step = Step(name, device, args)
    timed(step, device)
    first_step_at = time.perf_counter()
    for _ in range(1, args.warmup):
        timed(step, device)
    steps_ms = sorted(timed(step, device) for _ in range(args.steps))
    median = quantile(steps_ms, 0.5)
    fields = {
        "warmup": max(args.warmup, 1),
        "steps": len(steps_ms),
        "step_ms": median,
        "step_ms_p10": quantile(steps_ms, 0.1),
        "step_ms_p90": quantile(steps_ms, 0.9),
        "images_per_s": step.batch / (median / 1e3),
        "first_step_s": first_step_at - started,
        "first_step_since_launch_s": first_step_at - LAUNCHED,
        "peak_memory_reserved_bytes": torch.cuda.max_memory_reserved(device) if device.type == "cuda" else None,
        "peak_memory_allocated_bytes": torch.cuda.max_memory_allocated(device) if device.type == "cuda" else None,
        # CPU seconds of the process per wall second over the configuration, as gpu_bench.
        "cpu_utilisation": (time.process_time() - cpu_started) / (time.perf_counter() - started),
    }
    del step
    return fields


def describe(name, device, args):
    kind, teacher, student, batch = parse(name)
    return {
        "impl": "torch",
        "version": f"torch {torch.__version__}",
        "backend": f"torch-{device.type}" + (f" ({torch.cuda.get_device_name(device)})" if device.type == "cuda" else ""),
        "device": str(device),
        "precision": args.precision,
        "autocast": args.precision != "f32",
        "channels_last": args.channels_last,
        "cudnn_benchmark": torch.backends.cudnn.benchmark,
        "cudnn_allow_tf32": torch.backends.cudnn.allow_tf32,
        "matmul_allow_tf32": torch.backends.cuda.matmul.allow_tf32,
        "config": name,
        "kind": kind,
        "teacher": teacher,
        "student": student,
        "batch": batch,
        "rows": batch * copies(kind),
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("configs", nargs="+")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--precision", choices=["f32", "bf16", "f16"], default="f32")
    parser.add_argument("--channels-last", action="store_true")
    parser.add_argument("--no-cudnn-benchmark", action="store_true")
    parser.add_argument("--no-tf32", action="store_true", help="strict fp32 convolutions (cuDNN uses TF32 by default)")
    parser.add_argument("--warmup", type=int, default=10)
    parser.add_argument("--steps", type=int, default=50)
    args = parser.parse_args()
    for name in args.configs:
        parse(name)
    device = torch.device(args.device)
    torch.backends.cudnn.benchmark = not args.no_cudnn_benchmark
    if args.no_tf32:
        torch.backends.cudnn.allow_tf32 = False
        torch.backends.cuda.matmul.allow_tf32 = False
    for name in args.configs:
        line = describe(name, device, args)
        try:
            line.update(measure(name, device, args))
        except Exception as error:  # a failing configuration is reported, the run goes on
            line["error"] = f"{type(error).__name__}: {error}"
        print(json.dumps(line), flush=True)


if __name__ == "__main__":
    main()
