"""Reference training steps of RepDistiller's baselines, for `tests/baseline_steps_match_pytorch.rs`.

For each case, in float64 on CPU torch, two SGD steps on one batch, set up as RepDistiller's
`train_student.py` sets them up and run as its `helper/loops.py::train_distill` (main stage) or
`helper/pretrain.py::init` (`init` cases: the pre-training stage of AB, FT and FSP) runs them:

- the teacher in eval mode under `no_grad`; in the main stage the student and the method's
  modules in train mode (AB's connector and FT's paraphraser in eval mode), in the pre-training
  stage the student in eval mode but for the modules it trains (`get_feat_modules()` for AB and
  FSP, which leaves e.g. a WRN's final `bn1` out), which are in train mode;
- features `feat = maps + [embedding]` as the models' `forward(x, is_feat=True, preact)` give
  them (`preact=True` for AB: a WRN then calls three of its batch norms again);
- the loss `γ·CE + α·KD + β·L_method` of `train_distill` (the weights the case's settings give;
  AB and FSP have `loss_kd = 0` there), or the pre-training loss alone;
- SGD(lr, momentum 0.9, weight decay 5e-4) over what RepDistiller optimises: the student and the
  method's trainable modules (`trainable_list`), or the pre-training's `init_trainable_list`.

Written to tests/fixtures/baseline_steps/<case>.safetensors: the batch (`x` f32, `labels` i64,
and for CRD `index` and `contrast_idx` as `CIFAR100InstanceSample` draws them: the anchor, then K
samples of other classes without replacement), and for every tensor of the student's state dict
and of the method's state (RepDistiller's names) `sample.`/`max.`/`sum.` summaries of the update
as in make_step_fixtures.py; the metadata `case` holds the setup, the keys and shapes of every
state, the method's settings (as `--set method.NAME.FIELD=VALUE` would give them) and each
step's terms under this library's names. Weights are not stored: both sides draw them with
`deterministic("<case>/<role>/<key>", shape)` (roles `teacher`, `student`, `method`), except
CRD's `contrast.params` `[K, T, -1, -1, m]`.

    python tools/make_baseline_step_fixtures.py   # -> tests/fixtures/baseline_steps/*.safetensors
"""
import json
import math
import os
import sys

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from safetensors.numpy import save_file

sys.path.insert(0, os.path.dirname(__file__))
import loss_baselines_reference as ref  # noqa: E402
import zoo_reference as zoo  # noqa: E402
from make_model_fixtures import deterministic  # noqa: E402
from make_step_fixtures import LR, MOMENTUM, SIZE, STEPS, WEIGHT_DECAY, snapshot, state_keys, summarise  # noqa: E402

OUT = os.path.join(os.path.dirname(__file__), "..", "tests", "fixtures", "baseline_steps")
CLASSES = 10
BATCH = 6
KD_T = 4.0
N_DATA, NCE_K = 64, 16

# The SSKD paper's comparison weights (γ 0.1, α 0.9) with each method's β, as the registry
# publishes them; `settings` are what a case changes (`--set method.NAME.FIELD=VALUE`).
BETA = {"kdsvd": 1.0, "hint": 100.0, "attention": 1000.0, "similarity": 3000.0, "correlation": 0.02, "vid": 1.0,
        "rkd": 1.0, "pkt": 30000.0, "abound": 0.0, "factor": 200.0, "fsp": 0.0, "nst": 50.0, "crd": 0.8}
TERM = {"kdsvd": "kdsvd", "hint": "hint", "attention": "at", "similarity": "sp", "correlation": "cc", "vid": "vid",
        "rkd": "rkd", "pkt": "pkt", "abound": "ab", "factor": "ft", "fsp": "fsp", "nst": "nst", "crd": "crd"}

# (case, method, teacher, student, init, settings)
CASES = [
    ("hint_wrn_16_2_wrn_16_1", "hint", "wrn_16_2", "wrn_16_1", False, {}),
    ("hint_repdistiller_weights_resnet20_resnet8", "hint", "resnet20", "resnet8", False, {"ce": 1.0, "kd": 0.0}),
    ("attention_wrn_16_2_wrn_16_1", "attention", "wrn_16_2", "wrn_16_1", False, {}),
    ("similarity_resnet20_resnet8", "similarity", "resnet20", "resnet8", False, {}),
    ("correlation_wrn_16_2_wrn_16_1", "correlation", "wrn_16_2", "wrn_16_1", False, {}),
    ("vid_wrn_16_2_wrn_16_1", "vid", "wrn_16_2", "wrn_16_1", False, {}),
    ("rkd_resnet20_resnet8", "rkd", "resnet20", "resnet8", False, {}),
    ("pkt_wrn_16_2_wrn_16_1", "pkt", "wrn_16_2", "wrn_16_1", False, {}),
    ("nst_resnet20_resnet8", "nst", "resnet20", "resnet8", False, {}),
    ("kdsvd_resnet56_resnet20", "kdsvd", "resnet56", "resnet20", False, {}),
    ("crd_wrn_16_2_wrn_16_1", "crd", "wrn_16_2", "wrn_16_1", False, {"nce_k": NCE_K}),
    ("factor_wrn_16_2_wrn_16_1", "factor", "wrn_16_2", "wrn_16_1", False, {}),
    ("factor_init_wrn_16_2_wrn_16_1", "factor", "wrn_16_2", "wrn_16_1", True, {}),
    ("abound_wrn_16_2_wrn_16_1", "abound", "wrn_16_2", "wrn_16_1", False, {}),
    ("abound_init_wrn_16_2_wrn_16_1", "abound", "wrn_16_2", "wrn_16_1", True, {}),
    ("abound_init_resnet20_resnet8", "abound", "resnet20", "resnet8", True, {}),
    ("fsp_resnet20_resnet8", "fsp", "resnet20", "resnet8", False, {}),
    ("fsp_init_resnet20_resnet8", "fsp", "resnet20", "resnet8", True, {}),
]


class Network(nn.Module):
    """A zoo model called as RepDistiller's `model(x, is_feat=True, preact=preact)`: `(feat,
    logits)` with `feat = maps + [embedding]`."""

    def __init__(self, arch):
        super().__init__()
        self.arch = arch
        self.model = zoo.build(arch, CLASSES)

    def forward(self, x, preact=False):
        if isinstance(self.model, zoo.WideResNet):
            logits, emb, maps, pre = self.model(x, preact=preact)
        else:
            logits, emb, maps, pre = self.model(x)
        chosen = pre if preact and pre is not None else maps
        return list(chosen) + [emb], logits

    def feat_modules(self):
        """RepDistiller's `get_feat_modules()`: every layer but the classifier, and for a WRN
        also but the final `bn1`."""
        skip = {"fc", "linear", "classifier"}
        if isinstance(self.model, zoo.WideResNet):
            skip.add("bn1")
        return nn.ModuleList([m for name, m in self.model.named_children() if name not in skip])

    def state(self):
        return self.model.state_dict()


class Embed(nn.Module):
    """RepDistiller's `Embed` / `LinearEmbed`: a linear layer, and for CRD the ℓ2 norm."""

    def __init__(self, d_in, d_out, normalise):
        super().__init__()
        self.linear = nn.Linear(d_in, d_out)
        self.normalise = normalise

    def forward(self, x):
        x = self.linear(x.view(x.shape[0], -1))
        return x.div(x.pow(2).sum(1, keepdim=True).pow(0.5)) if self.normalise else x


class Contrast(nn.Module):
    """`ContrastMemory`'s state and step: buffers `params` `[K, T, Z_v1, Z_v2, m]`, `memory_v1`
    (written with student embeddings) and `memory_v2`."""

    def __init__(self, feat_dim, n_data, k, t=0.07, m=0.5):
        super().__init__()
        self.register_buffer("params", torch.tensor([float(k), t, -1.0, -1.0, m]))
        self.register_buffer("memory_v1", torch.zeros(n_data, feat_dim))
        self.register_buffer("memory_v2", torch.zeros(n_data, feat_dim))

    def forward(self, v1, v2, y, idx):
        t, momentum = self.params[1].item(), self.params[4].item()
        b, d = v1.shape
        n = self.memory_v1.shape[0]
        w1 = torch.index_select(self.memory_v1, 0, idx.view(-1)).detach().view(b, -1, d)
        out_v2 = torch.exp(torch.bmm(w1, v2.view(b, d, 1)) / t)
        w2 = torch.index_select(self.memory_v2, 0, idx.view(-1)).detach().view(b, -1, d)
        out_v1 = torch.exp(torch.bmm(w2, v1.view(b, d, 1)) / t)
        if self.params[2].item() < 0:
            self.params[2] = out_v1.mean() * n
        if self.params[3].item() < 0:
            self.params[3] = out_v2.mean() * n
        out_v1 = out_v1 / self.params[2].item()
        out_v2 = out_v2 / self.params[3].item()
        with torch.no_grad():
            for memory, v in ((self.memory_v1, v1), (self.memory_v2, v2)):
                pos = torch.index_select(memory, 0, y.view(-1)) * momentum + v * (1 - momentum)
                memory.index_copy_(0, y, pos.div(pos.pow(2).sum(1, keepdim=True).pow(0.5)))
        return out_v1, out_v2


def kdsvd_loss(g_s, g_t, k=1):
    """`KDSVD.forward`: right singular vectors of each map read as `[B, HW, C]` (teacher top k,
    student top k + 3 aligned to them by |cos| and sign), RBF kernels between consecutive layers.
    One change: each teacher vector is signed so that its largest-magnitude entry is positive
    (RepDistiller's value follows the sign LAPACK happens to return; sskd's Kdsvd fixes it so)."""
    def svd(feat, n):
        b, c, h, w = feat.shape
        u, s, v = torch.svd(feat.view(b, c, h * w).transpose(-2, -1))
        return F.normalize(s[:, :n], dim=1), F.normalize(v[:, :, :n], dim=1)

    def fix_sign(v):
        largest = v.gather(1, v.abs().argmax(1, keepdim=True))
        return v * torch.where(largest < 0, -1.0, 1.0).to(v.dtype)

    def align(a, b):
        cosine = torch.matmul(a.transpose(-2, -1), b)
        top = torch.max(torch.abs(cosine), 1, keepdim=True)[0]
        mask = torch.where(torch.eq(top, torch.abs(cosine)), torch.sign(cosine), torch.zeros_like(cosine))
        return torch.matmul(a, mask)

    losses, v_sb, v_tb = [], None, None
    for i, (f_s, f_t) in enumerate(zip(g_s, g_t)):
        s_t, v_t = svd(f_t, k)
        v_t = fix_sign(v_t)
        _, v_s = svd(f_s, k + 3)
        v_s = align(v_s, v_t)
        s_t = s_t.unsqueeze(1)
        v_t, v_s = v_t * s_t, v_s * s_t
        if i > 0:
            s_rbf = torch.exp(-(v_s.unsqueeze(2) - v_sb.unsqueeze(1)).pow(2) / 8)
            t_rbf = torch.exp(-(v_t.unsqueeze(2) - v_tb.unsqueeze(1)).pow(2) / 8)
            l2 = (s_rbf - t_rbf.detach()).pow(2)
            losses.append(torch.where(torch.isfinite(l2), l2, torch.zeros_like(l2)).sum())
        v_tb, v_sb = v_t, v_s
    return sum(l / g_s[0].shape[0] for l in losses)


def nce(x, n_data):
    """`NCECriterion`."""
    bsz, m = x.shape[0], x.size(1) - 1
    pn = 1 / float(n_data)
    p_pos = x.select(1, 0)
    log_d1 = torch.div(p_pos, p_pos.add(m * pn + 1e-7)).log()
    p_neg = x.narrow(1, 1, m)
    log_d0 = torch.div(p_neg.clone().fill_(m * pn), p_neg.add(m * pn + 1e-7)).log()
    return -(log_d1.sum(0) + log_d0.view(-1, 1).sum(0)) / bsz


def distill_kl(y_s, y_t, t=KD_T):
    return F.kl_div(F.log_softmax(y_s / t, dim=1), F.softmax(y_t / t, dim=1), reduction="sum") * t ** 2 / y_s.shape[0]


def shapes(net):
    with torch.no_grad():
        feat, _ = net.eval()(torch.zeros(2, 3, SIZE, SIZE, dtype=torch.float64))
    return [tuple(f.shape) for f in feat]


class Method:
    """The method's modules under RepDistiller's names (`state`), which of them train in each
    stage, and its terms."""

    def __init__(self, name, student, teacher, settings):
        self.name = name
        self.settings = settings
        self.state = nn.ModuleDict()
        s_shapes, t_shapes = shapes(student), shapes(teacher)
        if name == "hint":
            self.state["regress_s"] = ref.ConvReg(s_shapes[2][1:], t_shapes[2][1:])
        elif name == "correlation":
            self.state["embed_s"] = Embed(s_shapes[-1][1], 128, False)
            self.state["embed_t"] = Embed(t_shapes[-1][1], 128, False)
        elif name == "crd":
            self.state["embed_s"] = Embed(s_shapes[-1][1], 128, True)
            self.state["embed_t"] = Embed(t_shapes[-1][1], 128, True)
            self.state["contrast"] = Contrast(128, N_DATA, settings["nce_k"])
        elif name == "vid":
            pairs = zip(s_shapes[1:-1], t_shapes[1:-1])
            self.state["criterion_kd"] = nn.ModuleList([ref.VIDLoss(s[1], t[1], t[1]) for s, t in pairs])
        elif name == "abound":
            connectors = nn.ModuleList()
            for s, t in zip(s_shapes[1:-1], t_shapes[1:-1]):
                same = s[1] == t[1] and s[2] == t[2]
                connectors.append(nn.Sequential() if same else ref.ConvReg(s[1:], t[1:], use_relu=False))
            self.state["connector"] = nn.Module()
            self.state["connector"].connectors = connectors
        elif name == "factor":
            self.state["paraphraser"] = ref.Paraphraser(t_shapes[-2][1])
            self.state["translator"] = ref.Translator(s_shapes[-2][1], t_shapes[-2][1])

    def trainable(self, init, student):
        """What the optimiser of the stage holds (besides, in the main stage, the student)."""
        if init and self.name == "abound":
            return [self.state["connector"], student.feat_modules()]
        if init and self.name == "factor":
            return [self.state["paraphraser"]]
        if init:
            return [student.feat_modules()]
        frozen = {"abound": ["connector"], "factor": ["paraphraser"]}.get(self.name, [])
        return [student] + [m for key, m in self.state.items() if key not in frozen and key != "contrast"]

    def set_modes(self, init, student, teacher):
        teacher.eval()
        if init:
            student.eval()
            for module in self.trainable(True, student):
                module.train()
            return
        student.train()
        self.state.train()
        for key in {"abound": ["connector"], "factor": ["paraphraser"]}.get(self.name, []):
            self.state[key].eval()

    def term(self, feat_s, feat_t, batch):
        """`loss_kd` of `train_distill`."""
        s = self.state
        if self.name == "hint":
            return F.mse_loss(s["regress_s"](feat_s[2]), feat_t[2])
        if self.name == "attention":
            return ref.at_loss(feat_s[1:-1], feat_t[1:-1])
        if self.name == "nst":
            return ref.nst_loss(feat_s[1:-1], feat_t[1:-1])
        if self.name == "kdsvd":
            return kdsvd_loss(feat_s[1:-1], feat_t[1:-1])
        if self.name == "similarity":
            return ref.sp_loss(feat_s[-2], feat_t[-2])
        if self.name == "rkd":
            return ref.rkd_loss(feat_s[-1], feat_t[-1])
        if self.name == "pkt":
            return ref.pkt_loss(feat_s[-1], feat_t[-1])
        if self.name == "correlation":
            delta = torch.abs(s["embed_s"](feat_s[-1]) - s["embed_t"](feat_t[-1]))
            return torch.mean((delta[:-1] * delta[1:]).sum(1))
        if self.name == "vid":
            return sum(c(f_s, f_t) for f_s, f_t, c in zip(feat_s[1:-1], feat_t[1:-1], s["criterion_kd"]))
        if self.name == "crd":
            v1, v2 = s["embed_s"](feat_s[-1]), s["embed_t"](feat_t[-1])
            out_s, out_t = s["contrast"](v1, v2, batch["index"], batch["contrast_idx"])
            n = s["contrast"].memory_v1.shape[0]
            return nce(out_s.squeeze(2), n) + nce(out_t.squeeze(2), n)
        if self.name == "factor":
            factor_s = s["translator"].encoder(feat_s[-2])
            factor_t = s["paraphraser"].encoder(feat_t[-2])
            return ref.ft_loss(factor_s, factor_t)
        if self.name in ("abound", "fsp"):
            return 0
        raise ValueError(self.name)

    def init_term(self, feat_s, feat_t):
        """The loss of `helper/pretrain.py::init`."""
        if self.name == "abound":
            connectors = self.state["connector"].connectors
            g_s = [c(f) for c, f in zip(connectors, feat_s[1:-1])]
            return ref.ab_loss(g_s, feat_t[1:-1])
        if self.name == "factor":
            paraphraser = self.state["paraphraser"]
            f_t = feat_t[-2]
            return F.mse_loss(paraphraser.decoder(paraphraser.encoder(f_t)), f_t)
        if self.name == "fsp":
            return ref.fsp_loss(feat_s[:-1], feat_t[:-1])
        raise ValueError(self.name)


def load_deterministic(module, case, role, exempt=()):
    state = {}
    for key, value in module.state_dict().items():
        if key.endswith("num_batches_tracked") or key in exempt:
            state[key] = value
        else:
            state[key] = torch.from_numpy(deterministic(f"{case}/{role}/{key}", tuple(value.shape)))
    module.load_state_dict(state)
    return module.double()


def draw_batch(rng, crd):
    noise = rng.normal(0.0, 1.0, (BATCH, 3, SIZE, SIZE))
    offset = rng.normal(0.0, 2.0, (BATCH, 3, 1, 1))
    contrast = rng.uniform(0.3, 3.0, (BATCH, 1, 1, 1))
    x = torch.from_numpy((noise * contrast + offset).astype(np.float32))
    if not crd:
        labels = rng.integers(0, CLASSES, size=BATCH)
        return {"x": x, "labels": torch.from_numpy(labels).long()}
    # A dataset of N_DATA samples (class i % CLASSES); the batch is BATCH distinct samples.
    all_labels = np.arange(N_DATA) % CLASSES
    index = rng.choice(N_DATA, BATCH, replace=False)
    rows = []
    for i in index:
        negatives = np.flatnonzero(all_labels != all_labels[i])
        rows.append(np.hstack([[i], rng.choice(negatives, NCE_K, replace=False)]))
    return {"x": x, "labels": torch.from_numpy(all_labels[index]).long(),
            "index": torch.from_numpy(index).long(), "contrast_idx": torch.from_numpy(np.stack(rows)).long()}


def weights(method, settings):
    w = {"ce": 0.1, "kd": 0.9, "beta": BETA[method]}
    w.update({k: v for k, v in settings.items() if k in w})
    return w


def run_case(case, method_name, teacher_arch, student_arch, init, settings, rng):
    # Keys are those of the bare model (RepDistiller's {"model": state_dict}).
    teacher, student = Network(teacher_arch), Network(student_arch)
    load_deterministic(teacher.model, case, "teacher")
    load_deterministic(student.model, case, "student")
    method = Method(method_name, student, teacher, settings)
    load_deterministic(method.state, case, "method", exempt=("contrast.params",))
    batch = draw_batch(rng, method_name == "crd")
    x = batch["x"].double()
    lr = 0.01 if init and method_name == "factor" else LR
    params = [p for m in method.trainable(init, student) for p in m.parameters()]
    optimizer = torch.optim.SGD(params, lr=lr, momentum=MOMENTUM, weight_decay=WEIGHT_DECAY)
    w = weights(method_name, settings)
    initial_student, initial_method = snapshot(student.model), snapshot(method.state)
    preact = method_name == "abound"
    term = TERM[method_name]
    steps = []
    for _ in range(STEPS):
        method.set_modes(init, student, teacher)
        feat_s, logit_s = student(x, preact=preact)
        with torch.no_grad():
            feat_t, logit_t = teacher(x, preact=preact)
            feat_t = [f.detach() for f in feat_t]
        if init:
            loss = method.init_term(feat_s, feat_t)
            terms = {term: loss.item(), "total": loss.item()}
        else:
            ce, kd = F.cross_entropy(logit_s, batch["labels"]), distill_kl(logit_s, logit_t)
            loss_kd = method.term(feat_s, feat_t, batch)
            loss = w["ce"] * ce + w["kd"] * kd + w["beta"] * loss_kd
            terms = {"ce": ce.item(), "kd": kd.item(), "total": loss.item()}
            if w["beta"] != 0:
                terms[term] = loss_kd.item()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        steps.append(terms)
    arrays = summarise(initial_student, snapshot(student.model))
    prefixed = lambda state: {f"method.{k}": v for k, v in state.items()}  # noqa: E731
    arrays.update(summarise(prefixed(initial_method), prefixed(snapshot(method.state))))
    meta = {
        "case": case, "method": method_name, "teacher_arch": teacher_arch, "student_arch": student_arch,
        "init": init, "settings": settings, "num_classes": CLASSES, "lr": lr, "momentum": MOMENTUM,
        "weight_decay": WEIGHT_DECAY, "teacher_keys": state_keys(teacher.model), "student_keys": state_keys(student.model),
        "method_keys": state_keys(method.state), "steps": steps,
    }
    if method_name == "crd":
        meta["contrast_params"] = [float(NCE_K), 0.07, -1.0, -1.0, 0.5]
    tensors = {k: v.numpy() for k, v in batch.items()}
    tensors["x"] = tensors["x"].astype(np.float32)
    tensors.update(arrays)
    save_file(tensors, os.path.join(OUT, f"{case}.safetensors"), metadata={"case": json.dumps(meta)})
    print(case, steps)


def main():
    torch.manual_seed(0)
    os.makedirs(OUT, exist_ok=True)
    only = set(sys.argv[1:])
    for index, (case, method, teacher, student, init, settings) in enumerate(CASES):
        if only and case not in only:
            continue
        run_case(case, method, teacher, student, init, settings, np.random.default_rng(200 + index))


if __name__ == "__main__":
    main()
