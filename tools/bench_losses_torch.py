"""Times the PyTorch (CPU) reference of each loss, forward + backward, at the shapes of
`sskd::loss_workloads` (batch 64, 100 classes; SSKD on 4 × 64 rows with d = 128 / 1280; feature
methods on wrn_40_2 → wrn_16_2 maps; CRD with K = 16384, N = 50000), and prints one JSON object
per workload, like `cargo run --release --example loss_bench`.

Usage: python tools/bench_losses_torch.py [--runs 20]
"""
import argparse
import json
import os
import sys
import time

import torch
import torch.nn as nn
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(__file__))
import loss_baselines_reference as ref  # noqa: E402
from make_loss_fixtures import SSKD_DEFAULT, dkd, kd, sskd  # noqa: E402

B, C, N, K = 64, 100, 50_000, 16_384
MAPS = [[16, 32, 32], [32, 32, 32], [64, 16, 16], [128, 8, 8]]


def side(rows, grad):
    feats = [torch.randn(rows, *m).abs().requires_grad_(grad) for m in MAPS]
    pre = [torch.randn(rows, *m).requires_grad_(grad) for m in MAPS]
    return {"logits": torch.randn(rows, C, requires_grad=grad), "emb": torch.randn(rows, 128, requires_grad=grad), "feat": feats, "pre": pre}


def with_ce_kd(s, t, y, term, beta):
    ce = F.cross_entropy(s["logits"], y)
    kd_term = ref_kd(s["logits"], t["logits"])
    return 0.1 * ce + 0.9 * kd_term + beta * term


def ref_kd(s, t, T=4.0):
    return F.kl_div(F.log_softmax(s / T, 1), F.softmax(t / T, 1), reduction="batchmean") * T * T


def workloads():
    y = torch.arange(B) % C
    s, t = side(B, True), side(B, False)
    out = {}
    for dim in (128, 1280):
        sl, tl = torch.randn(4 * B, C, requires_grad=True), torch.randn(4 * B, C)
        sh, th = torch.randn(4 * B, dim, requires_grad=True), torch.randn(4 * B, dim)

        def run_sskd(sl=sl, tl=tl, sh=sh, th=th):
            terms, weights, _ = sskd(sl, tl, sh, th, y, SSKD_DEFAULT)
            return sum(weights[k] * v for k, v in terms.items())
        out[f"sskd_d{dim}"] = run_sskd
    kd_cfg = dict(temperature=4.0, ce_weight=0.1, kd_weight=0.9, logit_standardization=False)
    for name, cfg, fn in (("kd", kd_cfg, kd), ("kd_ls", dict(kd_cfg, logit_standardization=True), kd),
                          ("dkd", dict(temperature=4.0, alpha=1.0, beta=8.0, ce_weight=1.0, warmup_epochs=20, epoch=30), dkd)):
        def run(cfg=cfg, fn=fn):
            terms, weights, _ = fn(s["logits"], t["logits"], y, cfg)
            return sum(weights[k] * v for k, v in terms.items())
        out[name] = run
    reg = ref.ConvReg(MAPS[2], MAPS[2])
    vid = nn.ModuleList([ref.VIDLoss(m[0], m[0], m[0]) for m in MAPS[1:]])
    cc = ref.Correlation(128, 128)
    conn = [nn.Sequential() for _ in MAPS[1:]]
    para, trans = ref.Paraphraser(128), ref.Translator(128, 128)
    crd = ref.CRD(128, 128, 128, N, K)
    idx = torch.randint(0, N, (B, K + 1))
    yi = torch.arange(B) * 700
    terms = {
        "hint": (lambda: F.mse_loss(reg(s["feat"][2]), t["feat"][2]), 100.0),
        "attention": (lambda: ref.at_loss(s["feat"][1:], t["feat"][1:]), 1000.0),
        "similarity": (lambda: ref.sp_loss(s["feat"][3], t["feat"][3]), 3000.0),
        "correlation": (lambda: cc(s["emb"], t["emb"]), 0.02),
        "vid": (lambda: sum(l(a, b) for l, a, b in zip(vid, s["feat"][1:], t["feat"][1:])), 1.0),
        "rkd": (lambda: ref.rkd_loss(s["emb"], t["emb"]), 1.0),
        "pkt": (lambda: ref.pkt_loss(s["emb"], t["emb"]), 30000.0),
        "abound": (lambda: ref.ab_loss([c(x) for c, x in zip(conn, s["pre"][1:])], t["pre"][1:]), 0.0),
        "factor": (lambda: ref.ft_loss(trans.encoder(s["feat"][3]), para.encoder(t["feat"][3]).detach()), 200.0),
        "fsp": (lambda: ref.fsp_loss(s["feat"], t["feat"]), 0.0),
        "nst": (lambda: ref.nst_loss(s["feat"][1:], t["feat"][1:]), 50.0),
        "crd": (lambda: crd(s["emb"], t["emb"], yi, idx), 0.8),
    }
    for name, (term, beta) in terms.items():
        out[name] = lambda term=term, beta=beta: with_ce_kd(s, t, y, term(), beta)
    return out


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=3)
    args = parser.parse_args()
    for name, fn in workloads().items():
        for _ in range(args.warmup):
            fn().backward()
        times = []
        for _ in range(args.runs):
            start = time.perf_counter()
            fn().backward()
            times.append((time.perf_counter() - start) * 1e3)
        times.sort()
        print(json.dumps({"workload": name, "backend": f"torch {torch.__version__} cpu, {torch.get_num_threads()} threads",
                          "median_ms": times[len(times) // 2], "runs": len(times)}))


if __name__ == "__main__":
    main()
