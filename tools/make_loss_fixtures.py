"""Writes the PyTorch reference fixtures of the distillation losses to tests/fixtures/losses/
(logit methods and SSKD) and tests/fixtures/baselines/ (the CRD-codebase baselines, whose
references live in tools/loss_baselines_reference.py).

Usage (CPU torch from PyPI, plus numpy and safetensors):
    python tools/make_loss_fixtures.py

Each formula below is written from the SSKD paper and its released code (SSKD's objective; KD as
Hinton et al. 2015) and the papers (DKD: Zhao et al. 2022, mdistiller; logit standardisation: Sun et al. 2024),
in the reference code's style (log-softmax / softmax, kl_div "batchmean", cosine_similarity with
eps 1e-8). Inputs are drawn in float32; the reference values and the gradients of the weighted
total with respect to the student's inputs are computed in float64 from those exact values.

The selection rank is "number of entries strictly larger than the target entry" and rows are
ordered by a stable sort, the deterministic reading of the released code's argsort (spec §1.6).
"""
import json
import os

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from safetensors.numpy import save_file

OUT = os.path.join(os.path.dirname(__file__), "..", "tests", "fixtures", "losses")
OUT_BASELINES = os.path.join(os.path.dirname(__file__), "..", "tests", "fixtures", "baselines")


def kl_batchmean(t, s, temperature):
    if s.shape[0] == 0:
        return s.sum() * 0.0
    return F.kl_div(F.log_softmax(s / temperature, 1), F.softmax(t / temperature, 1), reduction="batchmean")


def rank_of_target(scores, targets):
    target_scores = scores.gather(1, targets.view(-1, 1))
    return (scores > target_scores).sum(1)


def select(rank, ratio):
    wrong = int((rank != 0).sum())
    keep = rank.numel() - wrong + int(wrong * ratio)
    order = torch.argsort(rank, stable=True)
    return torch.sort(order[:keep])[0]


def cos_matrix(aug, nor):
    return F.cosine_similarity(aug.unsqueeze(2), nor.unsqueeze(2).transpose(0, 2), dim=1, eps=1e-8)


def split(rows):
    b = rows.shape[0] // 4
    grouped = rows.view(b, 4, -1)
    return grouped[:, 0], grouped[:, 1:].reshape(3 * b, -1)


def sskd(s_logits, t_logits, s_head, t_head, labels, cfg):
    b = labels.numel()
    s_nor, s_aug = split(s_logits)
    t_nor, t_aug = split(t_logits)
    ce = F.cross_entropy(s_nor, labels)
    kd = kl_batchmean(t_nor, s_nor, cfg["kd_temperature"]) * cfg["kd_temperature"] ** 2
    aug_labels = labels.unsqueeze(1).expand(-1, 3).reshape(-1)
    keep_tf = select(rank_of_target(t_aug, aug_labels), cfg["ratio_tf"])
    tf = kl_batchmean(t_aug[keep_tf], s_aug[keep_tf], cfg["tf_temperature"]) * cfg["tf_temperature"] ** 2
    if cfg.get("ss_knowledge", "Contrastive") == "Contrastive":
        sh_nor, sh_aug = split(s_head)
        th_nor, th_aug = split(t_head)
        s_sim = cos_matrix(sh_aug, sh_nor)
        t_sim = cos_matrix(th_aug, th_nor)
        sources = torch.arange(3 * b) // 3
    else:  # classification SS task (rotation): logits on all 4B rows, label = rotation index
        s_sim, t_sim = s_head, t_head
        sources = torch.arange(4 * b) % 4
    keep_ss = select(rank_of_target(t_sim, sources), cfg["ratio_ss"])
    ss = kl_batchmean(t_sim[keep_ss], s_sim[keep_ss], cfg["ss_temperature"]) * cfg["ss_temperature"] ** 2
    terms = {"ce": ce, "kd": kd, "tf": tf, "ss": ss}
    weights = {"ce": cfg["ce_weight"], "kd": cfg["kd_weight"], "tf": cfg["tf_weight"], "ss": cfg["ss_weight"]}
    return terms, weights, {"kept_tf": int(keep_tf.numel()), "kept_ss": int(keep_ss.numel())}


def standardize(logits):
    mean = logits.mean(dim=-1, keepdim=True)
    std = logits.std(dim=-1, keepdim=True)
    return (logits - mean) / (1e-7 + std)


def kd(s_logits, t_logits, labels, cfg):
    s, t = s_logits, t_logits
    if cfg["logit_standardization"]:
        s, t = standardize(s), standardize(t)
    temperature = cfg["temperature"]
    terms = {"ce": F.cross_entropy(s_logits, labels), "kd": kl_batchmean(t, s, temperature) * temperature ** 2}
    return terms, {"ce": cfg["ce_weight"], "kd": cfg["kd_weight"]}, {}


def dkd(s_logits, t_logits, labels, cfg):
    """mdistiller's dkd_loss, with the warm-up of DKD.forward_train (epoch counted from 1)."""
    temperature = cfg["temperature"]
    gt = F.one_hot(labels, s_logits.shape[1]).double()
    other = 1.0 - gt

    def cat_mask(p):
        return torch.cat([(p * gt).sum(1, keepdim=True), (p * other).sum(1, keepdim=True)], 1)

    p_s = cat_mask(F.softmax(s_logits / temperature, 1))
    p_t = cat_mask(F.softmax(t_logits / temperature, 1))
    b = s_logits.shape[0]
    tckd = F.kl_div(torch.log(p_s), p_t, reduction="sum") * temperature ** 2 / b
    log_s2 = F.log_softmax(s_logits / temperature - 1000.0 * gt, 1)
    p_t2 = F.softmax(t_logits / temperature - 1000.0 * gt, 1)
    nckd = F.kl_div(log_s2, p_t2, reduction="sum") * temperature ** 2 / b
    warm = min((cfg["epoch"] + 1) / cfg["warmup_epochs"], 1.0)
    terms = {"ce": F.cross_entropy(s_logits, labels), "tckd": tckd, "nckd": nckd}
    return terms, {"ce": cfg["ce_weight"], "tckd": cfg["alpha"] * warm, "nckd": cfg["beta"] * warm}, {}


def ss_head(head):
    b = head.shape[0] // 4
    nor, aug = split(head)
    sim = cos_matrix(aug, nor)
    sources = torch.arange(3 * b) // 3
    correct = int((rank_of_target(sim, sources) == 0).sum())
    return {"head": F.cross_entropy(sim, sources)}, {"head": 1.0}, {"correct": correct}


SSKD_DEFAULT = dict(ce_weight=0.1, kd_weight=0.9, tf_weight=2.7, ss_weight=10.0, kd_temperature=4.0,
                    tf_temperature=4.0, ss_temperature=0.5, ratio_tf=1.0, ratio_ss=0.75)


def sskd_inputs(rng, b, classes, dim, kind):
    labels = rng.integers(0, classes, size=b)
    rows_labels = np.repeat(labels, 4)
    s_logits = rng.normal(0, 2, (4 * b, classes)).astype(np.float32)
    t_logits = rng.normal(0, 2, (4 * b, classes))
    s_head = rng.normal(0, 1, (4 * b, dim)).astype(np.float32)
    base = rng.normal(0, 1, (b, dim))
    t_head = np.repeat(base, 4, axis=0) + rng.normal(0, 1.2, (4 * b, dim))
    if kind == "plausible":
        boost = rng.random(4 * b) < 0.5
        t_logits[np.arange(4 * b), rows_labels] += 6.0 * boost
    elif kind == "all_correct":
        t_logits[np.arange(4 * b), rows_labels] += 50.0
        t_head = np.repeat(base, 4, axis=0) + rng.normal(0, 0.01, (4 * b, dim))
    elif kind == "all_wrong":
        t_logits[np.arange(4 * b), rows_labels] -= 50.0
        t_head = np.repeat(-base, 4, axis=0)
        t_head[0::4] = base
    elif kind == "ties":
        t_logits = np.round(t_logits)
        t_logits[np.arange(4 * b), rows_labels] = 1.0
        t_head = np.round(t_head)
    elif kind == "zero_rows":
        s_head[1] = 0.0
        s_head[4] = 0.0
        t_head[2] = 0.0
        t_head[8] = 0.0
    return s_logits, t_logits.astype(np.float32), s_head, t_head.astype(np.float32), labels


def run(name, method, cfg, arrays, labels, fn):
    """Evaluates `fn` in float64 and saves inputs, terms, total and gradients."""
    tensors = {k: torch.from_numpy(v.astype(np.float64)).requires_grad_(k.startswith("s_")) for k, v in arrays.items()}
    lab = torch.from_numpy(np.asarray(labels, dtype=np.int64)) if labels is not None else None
    terms, weights, counts = fn(tensors, lab)
    total = sum(weights[k] * v for k, v in terms.items())
    total.backward()
    out = {k: np.ascontiguousarray(v.astype(np.float32)) for k, v in arrays.items()}
    if lab is not None:
        out["labels"] = lab.numpy()
    for k, v in terms.items():
        out[f"expected.{k}"] = np.array([v.item()], dtype=np.float32)
    out["expected.total"] = np.array([total.item()], dtype=np.float32)
    for k, t in tensors.items():
        if t.requires_grad:
            out[f"grad.{k}"] = t.grad.numpy().astype(np.float32)
    meta = {"method": method, "config": cfg, "counts": counts, "weights": weights}
    save_file(out, os.path.join(OUT, f"{name}.safetensors"), metadata={"case": json.dumps(meta)})
    print(name, {k: round(v.item(), 6) for k, v in terms.items()}, counts)


def main():
    os.makedirs(OUT, exist_ok=True)
    rng = np.random.default_rng(2020)
    sskd_cases = [
        ("sskd_paper_shapes", 64, 100, 128, "plausible", SSKD_DEFAULT),
        ("sskd_all_correct", 8, 20, 16, "all_correct", SSKD_DEFAULT),
        ("sskd_all_wrong", 8, 20, 16, "all_wrong", SSKD_DEFAULT),
        ("sskd_ties_at_cutoff", 8, 10, 8, "ties", dict(SSKD_DEFAULT, ratio_tf=0.5)),
        ("sskd_batch_of_one", 1, 10, 8, "plausible", SSKD_DEFAULT),
        ("sskd_zero_head_rows", 6, 10, 8, "zero_rows", SSKD_DEFAULT),
        ("sskd_supplementary_weights", 16, 100, 64, "plausible", dict(SSKD_DEFAULT, tf_weight=5.0, ss_weight=3.0)),
        ("sskd_rotation_task", 16, 100, 4, "plausible", dict(SSKD_DEFAULT, ss_temperature=4.0, ss_knowledge="Classification")),
    ]
    for name, b, classes, dim, kind, cfg in sskd_cases:
        s_logits, t_logits, s_head, t_head, labels = sskd_inputs(rng, b, classes, dim, kind)
        arrays = {"s_logits": s_logits, "t_logits": t_logits, "s_head": s_head, "t_head": t_head}
        run(name, "sskd", cfg, arrays, labels,
            lambda x, y, cfg=cfg: sskd(x["s_logits"], x["t_logits"], x["s_head"], x["t_head"], y, cfg))

    kd_cfg = dict(temperature=4.0, ce_weight=0.1, kd_weight=0.9, logit_standardization=False)
    ls_cfg = dict(temperature=2.0, ce_weight=1.0, kd_weight=9.0, logit_standardization=True)
    dkd_cfg = dict(temperature=4.0, alpha=1.0, beta=8.0, ce_weight=1.0, warmup_epochs=20, epoch=4)
    for name, method, cfg, b, fn in [
        ("kd_paper_shapes", "kd", kd_cfg, 64, kd),
        ("kd_batch_of_one", "kd", kd_cfg, 1, kd),
        ("kd_logit_standardization", "kd", ls_cfg, 64, kd),
        ("dkd_paper_shapes", "dkd", dkd_cfg, 64, dkd),
    ]:
        labels = rng.integers(0, 100, size=b)
        s_logits = rng.normal(0, 3, (b, 100)).astype(np.float32)
        t_logits = rng.normal(0, 3, (b, 100)).astype(np.float32)
        t_logits[np.arange(b), labels] += 5.0
        run(name, method, cfg, {"s_logits": s_logits, "t_logits": t_logits}, labels,
            lambda x, y, cfg=cfg, fn=fn: fn(x["s_logits"], x["t_logits"], y, cfg))

    head = rng.normal(0, 1, (64, 32))
    head = (head + np.repeat(head[0::4], 4, axis=0)).astype(np.float32)
    run("ss_head_stage2", "ss_head", {}, {"s_head": head}, None, lambda x, y: ss_head(x["s_head"]))


SHAPE_SETS = {
    # per-sample [c, h, w] of feat[0..3] for student and teacher
    "same_size": ([[4, 8, 8], [4, 8, 8], [8, 4, 4], [16, 2, 2]], [[8, 8, 8], [16, 8, 8], [32, 4, 4], [64, 2, 2]]),
    "teacher_larger": ([[4, 8, 8], [4, 8, 8], [8, 4, 4], [16, 2, 2]], [[8, 16, 16], [16, 16, 16], [32, 8, 8], [64, 4, 4]]),
    "student_larger": ([[4, 16, 16], [4, 16, 16], [8, 8, 8], [16, 4, 4]], [[8, 8, 8], [16, 8, 8], [32, 4, 4], [64, 2, 2]]),
    "equal_channels": ([[4, 8, 8], [4, 8, 8], [8, 4, 4], [16, 2, 2]], [[4, 16, 16], [4, 16, 16], [8, 8, 8], [16, 4, 4]]),
}


def feature_inputs(rng, shapes, batch=4, d_s=32, d_t=64):
    s_shapes, t_shapes = SHAPE_SETS[shapes]
    arrays = {}
    for side, side_shapes in (("s", s_shapes), ("t", t_shapes)):
        for i, shape in enumerate(side_shapes):
            pre = rng.normal(0, 1, (batch, *shape)).astype(np.float32)
            arrays[f"{side}_preact.{i}"] = pre
            arrays[f"{side}_feat.{i}"] = np.maximum(pre, 0).astype(np.float32)
        arrays[f"{side}_emb"] = rng.normal(0, 1, (batch, d_s if side == "s" else d_t)).astype(np.float32)
    return arrays


def run_feature(name, method, shapes, rng, compute, module=None, extra=None, uses=("feat",)):
    """`compute(tensors, module)` returns the term; saves inputs, module state, term and the
    gradients with respect to the student's features, pre-activations and embedding."""
    import loss_baselines_reference as ref  # noqa: F401
    arrays = feature_inputs(rng, shapes)
    arrays = {k: v for k, v in arrays.items() if k.split(".")[0][2:] in uses}
    arrays.update(extra or {})
    tensors = {k: torch.from_numpy(v.astype(np.float64)).requires_grad_(k.startswith("s_"))
               for k, v in arrays.items() if v.dtype == np.float32}
    out = {k: np.ascontiguousarray(v) for k, v in arrays.items()}
    if module is not None:
        for k, v in module.state_dict().items():
            if not k.endswith("num_batches_tracked"):
                out[f"module.{k}"] = v.float().numpy()
        module = module.double().train()
    term = compute(tensors, module)
    term.backward()
    out["expected.term"] = np.array([term.item()], dtype=np.float32)
    for k, t in tensors.items():
        if t.requires_grad and t.grad is not None:
            out[f"grad.{k}"] = t.grad.numpy().astype(np.float32)
    if module is not None:
        for k, v in module.state_dict().items():
            if k.startswith("memory") or k == "normalizers":
                out[f"after.{k}"] = v.float().numpy()
    meta = {"method": method, "shapes": shapes}
    save_file(out, os.path.join(OUT_BASELINES, f"{name}.safetensors"), metadata={"case": json.dumps(meta)})
    print(name, round(term.item(), 6))


def maps(t, side, kind="feat"):
    return [t[f"{side}_{kind}.{i}"] for i in range(4)]


def baseline_cases():
    import loss_baselines_reference as ref
    rng = np.random.default_rng(2019)
    torch.manual_seed(0)
    for shapes in ("same_size", "teacher_larger"):
        run_feature(f"at_{shapes}", "at", shapes, rng, lambda t, m: ref.at_loss(maps(t, "s")[1:], maps(t, "t")[1:]))
        run_feature(f"nst_{shapes}", "nst", shapes, rng, lambda t, m: ref.nst_loss(maps(t, "s")[1:], maps(t, "t")[1:]))
    run_feature("sp", "sp", "same_size", rng, lambda t, m: ref.sp_loss(t["s_feat.3"], t["t_feat.3"]))
    run_feature("pkt", "pkt", "same_size", rng, lambda t, m: ref.pkt_loss(t["s_emb"], t["t_emb"]), uses=("emb",))
    run_feature("rkd", "rkd", "same_size", rng, lambda t, m: ref.rkd_loss(t["s_emb"], t["t_emb"]), uses=("emb",))
    run_feature("fsp", "fsp", "equal_channels", rng, lambda t, m: ref.fsp_loss(maps(t, "s"), maps(t, "t")))
    for shapes in ("same_size", "teacher_larger", "student_larger"):
        s_shapes, t_shapes = SHAPE_SETS[shapes]
        reg = ref.ConvReg(s_shapes[2], t_shapes[2])
        run_feature(f"fitnet_{shapes}", "fitnet", shapes, rng,
                    lambda t, m: F.mse_loss(m(t["s_feat.2"]), t["t_feat.2"]), module=reg)
    s_shapes, t_shapes = SHAPE_SETS["teacher_larger"]
    vid = nn.ModuleList([ref.VIDLoss(s[0], t[0], t[0]) for s, t in zip(s_shapes[1:], t_shapes[1:])])
    run_feature("vid", "vid", "teacher_larger", rng,
                lambda t, m: sum(layer(s, tt) for layer, s, tt in zip(m, maps(t, "s")[1:], maps(t, "t")[1:])), module=vid)
    cc = ref.Correlation(32, 64)
    run_feature("cc", "cc", "same_size", rng, lambda t, m: m(t["s_emb"], t["t_emb"]), module=cc, uses=("emb",))
    s_shapes, t_shapes = SHAPE_SETS["same_size"]
    connectors = nn.Module()
    connectors.connectors = nn.ModuleList([nn.Sequential() if s[0] == tt[0] and s[1] == tt[1] else ref.ConvReg(s, tt, use_relu=False)
                                           for s, tt in zip(s_shapes[1:], t_shapes[1:])])
    run_feature("ab", "ab", "same_size", rng,
                lambda t, m: ref.ab_loss([c(x) for c, x in zip(m.connectors, maps(t, "s", "preact")[1:])], maps(t, "t", "preact")[1:]),
                module=connectors, uses=("preact",))
    ft = nn.Module()
    ft.paraphraser = ref.Paraphraser(64)
    ft.translator = ref.Translator(16, 64)
    run_feature("ft", "ft", "same_size", rng,
                lambda t, m: ref.ft_loss(m.translator.encoder(t["s_feat.3"]), m.paraphraser.encoder(t["t_feat.3"]).detach()), module=ft)
    n_data, k = 48, 10
    crd = ref.CRD(32, 64, 16, n_data, k)
    y = torch.tensor([3, 17, 25, 40])
    labels = np.arange(n_data) % 6
    idx = np.stack([np.concatenate([[i], rng.choice(np.flatnonzero(labels != labels[i]), k, replace=False)]) for i in y.numpy()])
    extra = {"sample_indices": y.numpy().astype(np.int64), "contrast_indices": idx.astype(np.int64)}

    def crd_two_steps(t, m):
        first = m(t["s_emb"], t["t_emb"], torch.from_numpy(extra["sample_indices"]), torch.from_numpy(extra["contrast_indices"]))
        second = m(t["s_emb"] * 0.5, t["t_emb"], torch.from_numpy(extra["sample_indices"]), torch.from_numpy(extra["contrast_indices"]))
        return first + second
    run_feature("crd_two_steps", "crd", "same_size", rng, crd_two_steps, module=crd, extra=extra, uses=("emb",))


if __name__ == "__main__":
    os.makedirs(OUT_BASELINES, exist_ok=True)
    main()
    baseline_cases()
