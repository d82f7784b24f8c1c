"""PyTorch references of the CRD-codebase baselines (spec §3.2), written in the style of
RepDistiller's `distiller_zoo/*.py`, `models/util.py` and `crd/*.py`, with the same parameter
names, for tools/make_loss_fixtures.py."""
import math

import torch
import torch.nn as nn
import torch.nn.functional as F


def match(f_s, f_t):
    s_h, t_h = f_s.shape[2], f_t.shape[2]
    if s_h > t_h:
        f_s = F.adaptive_avg_pool2d(f_s, (t_h, t_h))
    elif s_h < t_h:
        f_t = F.adaptive_avg_pool2d(f_t, (s_h, s_h))
    return f_s, f_t


def at_map(f, p=2):
    return F.normalize(f.pow(p).mean(1).view(f.size(0), -1))


def at_loss(g_s, g_t):
    total = 0
    for f_s, f_t in zip(g_s, g_t):
        f_s, f_t = match(f_s, f_t)
        total = total + (at_map(f_s) - at_map(f_t)).pow(2).mean()
    return total


def sp_loss(f_s, f_t):
    b = f_s.shape[0]
    g_s = F.normalize(torch.mm(f_s.view(b, -1), f_s.view(b, -1).t()))
    g_t = F.normalize(torch.mm(f_t.view(b, -1), f_t.view(b, -1).t()))
    return (g_t - g_s).pow(2).view(-1, 1).sum(0)[0] / (b * b)


def pkt_loss(output_net, target_net, eps=1e-7):
    output_net = output_net / (torch.sqrt(torch.sum(output_net ** 2, dim=1, keepdim=True)) + eps)
    target_net = target_net / (torch.sqrt(torch.sum(target_net ** 2, dim=1, keepdim=True)) + eps)
    model_similarity = (torch.mm(output_net, output_net.t()) + 1.0) / 2.0
    target_similarity = (torch.mm(target_net, target_net.t()) + 1.0) / 2.0
    model_similarity = model_similarity / model_similarity.sum(1, keepdim=True)
    target_similarity = target_similarity / target_similarity.sum(1, keepdim=True)
    return torch.mean(target_similarity * torch.log((target_similarity + eps) / (model_similarity + eps)))


def pdist(e, eps=1e-12):
    e_square = e.pow(2).sum(dim=1)
    prod = e @ e.t()
    res = (e_square.unsqueeze(1) + e_square.unsqueeze(0) - 2 * prod).clamp(min=eps).sqrt().clone()
    res[range(len(e)), range(len(e))] = 0
    return res


def rkd_loss(f_s, f_t, w_d=25, w_a=50):
    student, teacher = f_s.view(f_s.shape[0], -1), f_t.view(f_t.shape[0], -1)
    with torch.no_grad():
        t_d = pdist(teacher)
        t_d = t_d / t_d[t_d > 0].mean()
    d = pdist(student)
    d = d / d[d > 0].mean()
    loss_d = F.smooth_l1_loss(d, t_d)
    with torch.no_grad():
        td = F.normalize(teacher.unsqueeze(0) - teacher.unsqueeze(1), p=2, dim=2)
        t_angle = torch.bmm(td, td.transpose(1, 2)).view(-1)
    sd = F.normalize(student.unsqueeze(0) - student.unsqueeze(1), p=2, dim=2)
    s_angle = torch.bmm(sd, sd.transpose(1, 2)).view(-1)
    return w_d * loss_d + w_a * F.smooth_l1_loss(s_angle, t_angle)


def nst_loss(g_s, g_t):
    def poly(a, b):
        return (a.unsqueeze(1) * b.unsqueeze(2)).sum(-1).pow(2)

    total = 0
    for f_s, f_t in zip(g_s, g_t):
        f_s, f_t = match(f_s, f_t)
        f_s = F.normalize(f_s.view(f_s.shape[0], f_s.shape[1], -1), dim=2)
        f_t = F.normalize(f_t.view(f_t.shape[0], f_t.shape[1], -1), dim=2)
        total = total + poly(f_t, f_t).mean().detach() + poly(f_s, f_s).mean() - 2 * poly(f_s, f_t).mean()
    return total


def fsp_loss(g_s, g_t):
    def fsp(g):
        out = []
        for bot, top in zip(g[:-1], g[1:]):
            bot, top = match(bot, top)
            bot = bot.unsqueeze(1).view(bot.shape[0], 1, bot.shape[1], -1)
            top = top.unsqueeze(2).view(top.shape[0], top.shape[1], 1, -1)
            out.append((bot * top).mean(-1))
        return out

    return sum((s - t).pow(2).mean() for s, t in zip(fsp(g_s), fsp(g_t)))


class ConvReg(nn.Module):
    def __init__(self, s_shape, t_shape, use_relu=True):
        super().__init__()
        self.use_relu = use_relu
        s_c, s_h, s_w = s_shape
        t_c, t_h, t_w = t_shape
        if s_h == 2 * t_h:
            self.conv = nn.Conv2d(s_c, t_c, kernel_size=3, stride=2, padding=1)
        elif s_h * 2 == t_h:
            self.conv = nn.ConvTranspose2d(s_c, t_c, kernel_size=4, stride=2, padding=1)
        else:
            self.conv = nn.Conv2d(s_c, t_c, kernel_size=(1 + s_h - t_h, 1 + s_w - t_w))
        self.bn = nn.BatchNorm2d(t_c)

    def forward(self, x):
        x = self.bn(self.conv(x))
        return F.relu(x) if self.use_relu else x


class Correlation(nn.Module):
    def __init__(self, d_s, d_t, dim=128):
        super().__init__()
        self.embed_s = nn.Module()
        self.embed_s.linear = nn.Linear(d_s, dim)
        self.embed_t = nn.Module()
        self.embed_t.linear = nn.Linear(d_t, dim)

    def forward(self, f_s, f_t):
        delta = torch.abs(self.embed_s.linear(f_s) - self.embed_t.linear(f_t))
        return torch.mean((delta[:-1] * delta[1:]).sum(1))


class VIDLoss(nn.Module):
    def __init__(self, c_in, c_mid, c_out, init_pred_var=5.0, eps=1e-5):
        super().__init__()
        conv = lambda i, o: nn.Conv2d(i, o, kernel_size=1, padding=0, bias=False)
        self.regressor = nn.Sequential(conv(c_in, c_mid), nn.ReLU(), conv(c_mid, c_mid), nn.ReLU(), conv(c_mid, c_out))
        self.log_scale = nn.Parameter(math.log(math.exp(init_pred_var - eps) - 1.0) * torch.ones(c_out))
        self.eps = eps

    def forward(self, x, target):
        x, target = match(x, target)
        pred_mean = self.regressor(x)
        pred_var = (torch.log(1.0 + torch.exp(self.log_scale)) + self.eps).view(1, -1, 1, 1)
        return torch.mean(0.5 * ((pred_mean - target) ** 2 / pred_var + torch.log(pred_var)))


def ab_loss(g_s, g_t, margin=1.0):
    n = len(g_s)
    b = g_s[0].shape[0]
    total = 0
    for i, (s, t) in enumerate(zip(g_s, g_t)):
        l = ((s + margin) ** 2 * ((s > -margin) & (t <= 0)).float() + (s - margin) ** 2 * ((s <= margin) & (t > 0)).float())
        total = total + 2 ** (i - n + 1) * torch.abs(l).sum() / b / 1000 * 3
    return total


class Paraphraser(nn.Module):
    def __init__(self, c, k=0.5):
        super().__init__()
        o = int(c * k)
        act = lambda: nn.LeakyReLU(0.1)
        self.encoder = nn.Sequential(nn.Conv2d(c, c, 3, 1, 1), nn.Sequential(), act(), nn.Conv2d(c, o, 3, 1, 1), nn.Sequential(), act(),
                                     nn.Conv2d(o, o, 3, 1, 1), nn.Sequential(), act())
        self.decoder = nn.Sequential(nn.ConvTranspose2d(o, o, 3, 1, 1), nn.Sequential(), act(), nn.ConvTranspose2d(o, c, 3, 1, 1),
                                     nn.Sequential(), act(), nn.ConvTranspose2d(c, c, 3, 1, 1), nn.Sequential(), act())


class Translator(nn.Module):
    def __init__(self, c_s, c_t, k=0.5):
        super().__init__()
        o = int(c_t * k)
        act = lambda: nn.LeakyReLU(0.1)
        self.encoder = nn.Sequential(nn.Conv2d(c_s, c_s, 3, 1, 1), nn.BatchNorm2d(c_s), act(), nn.Conv2d(c_s, o, 3, 1, 1), nn.BatchNorm2d(o), act(),
                                     nn.Conv2d(o, o, 3, 1, 1), nn.BatchNorm2d(o), act())


def ft_loss(factor_s, factor_t):
    factor_s, factor_t = match(factor_s, factor_t)
    return (at_map(factor_s) - at_map(factor_t)).abs().mean()


class CRD(nn.Module):
    def __init__(self, d_s, d_t, feat_dim, n_data, k, t=0.07, m=0.5):
        super().__init__()
        self.embed_s = nn.Module()
        self.embed_s.linear = nn.Linear(d_s, feat_dim)
        self.embed_t = nn.Module()
        self.embed_t.linear = nn.Linear(d_t, feat_dim)
        stdv = 1.0 / math.sqrt(feat_dim / 3)
        self.register_buffer("memory_v1", torch.rand(n_data, feat_dim).mul_(2 * stdv).add_(-stdv))
        self.register_buffer("memory_v2", torch.rand(n_data, feat_dim).mul_(2 * stdv).add_(-stdv))
        self.register_buffer("normalizers", torch.tensor([-1.0, -1.0]))
        self.k, self.t, self.m, self.n_data = k, t, m, n_data

    @staticmethod
    def embed(layer, x):
        x = layer.linear(x.view(x.shape[0], -1))
        return x.div(x.pow(2).sum(1, keepdim=True).pow(0.5))

    def nce(self, x):
        bsz, m = x.shape[0], x.size(1) - 1
        pn = 1 / float(self.n_data)
        p_pos = x.select(1, 0)
        log_d1 = torch.div(p_pos, p_pos.add(m * pn + 1e-7)).log()
        p_neg = x.narrow(1, 1, m)
        log_d0 = torch.div(p_neg.clone().fill_(m * pn), p_neg.add(m * pn + 1e-7)).log()
        return -(log_d1.sum(0) + log_d0.view(-1, 1).sum(0)) / bsz

    def forward(self, f_s, f_t, y, idx):
        v1, v2 = self.embed(self.embed_s, f_s), self.embed(self.embed_t, f_t)
        b, d = v1.shape
        w1 = torch.index_select(self.memory_v1, 0, idx.view(-1)).detach().view(b, -1, d)
        out_v2 = torch.exp(torch.bmm(w1, v2.view(b, d, 1)) / self.t)
        w2 = torch.index_select(self.memory_v2, 0, idx.view(-1)).detach().view(b, -1, d)
        out_v1 = torch.exp(torch.bmm(w2, v1.view(b, d, 1)) / self.t)
        if self.normalizers[0] < 0:
            self.normalizers[0] = (out_v1.mean() * self.n_data).detach()
            self.normalizers[1] = (out_v2.mean() * self.n_data).detach()
        out_v1 = out_v1 / self.normalizers[0].item()
        out_v2 = out_v2 / self.normalizers[1].item()
        with torch.no_grad():
            for memory, v in ((self.memory_v1, v1), (self.memory_v2, v2)):
                pos = torch.index_select(memory, 0, y.view(-1)) * self.m + v.detach() * (1 - self.m)
                memory.index_copy_(0, y, pos.div(pos.pow(2).sum(1, keepdim=True).pow(0.5)))
        return self.nce(out_v1.squeeze(2)) + self.nce(out_v2.squeeze(2))
