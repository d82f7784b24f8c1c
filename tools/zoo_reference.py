"""PyTorch reference implementations of the sskd model zoo.

Written from the CRD / SSKD codebases' models/*.py with the parameter names of the reference code
(RepDistiller `models/*.py`, identical in SSKD; torchvision for the ImageNet ResNets), so that
their `state_dict()` keys are the keys users' checkpoints carry.
"""
import torch
import torch.nn as nn
import torch.nn.functional as F


# ---------------------------------------------------------------- CIFAR ResNet (resnet.py)
class BasicBlock(nn.Module):
    expansion = 1

    def __init__(self, inplanes, planes, stride=1, downsample=None, shortcut_name="downsample"):
        super().__init__()
        self.shortcut_name = shortcut_name
        self.conv1 = nn.Conv2d(inplanes, planes, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        setattr(self, shortcut_name, downsample)

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        projection = getattr(self, self.shortcut_name)
        residual = x if projection is None else projection(x)
        preact = out + residual
        return F.relu(preact), preact


class Bottleneck(nn.Module):
    expansion = 4

    def __init__(self, inplanes, planes, stride=1, downsample=None, shortcut_name="downsample"):
        super().__init__()
        self.shortcut_name = shortcut_name
        self.conv1 = nn.Conv2d(inplanes, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, planes * 4, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(planes * 4)
        setattr(self, shortcut_name, downsample)

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        out = F.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        projection = getattr(self, self.shortcut_name)
        residual = x if projection is None else projection(x)
        preact = out + residual
        return F.relu(preact), preact


def run_stage(stage, x):
    preact = None
    for block in stage:
        x, preact = block(x)
    return x, preact


class ResNetBase(nn.Module):
    """Shared by resnet.py (3 stages), resnetv2.py (4 stages) and torchvision (ImageNet stem)."""

    def __init__(self, block, blocks, widths, stem_width, num_classes, imagenet_stem, shortcut_name,
                 pool_window=None):
        super().__init__()
        # resnet.py pools with nn.AvgPool2d(8); resnetv2.py and torchvision adaptively.
        self.pool_window = pool_window
        if imagenet_stem:
            self.conv1 = nn.Conv2d(3, stem_width, 7, 2, 3, bias=False)
        else:
            self.conv1 = nn.Conv2d(3, stem_width, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(stem_width)
        self.maxpool = nn.MaxPool2d(3, 2, 1) if imagenet_stem else None
        self.inplanes = stem_width
        self.stage_names = []
        for index, (width, count) in enumerate(zip(widths, blocks)):
            stride = 1 if index == 0 else 2
            layers = []
            for b in range(count):
                s = stride if b == 0 else 1
                down = None
                if s != 1 or self.inplanes != width * block.expansion:
                    down = nn.Sequential(
                        nn.Conv2d(self.inplanes, width * block.expansion, 1, s, bias=False),
                        nn.BatchNorm2d(width * block.expansion),
                    )
                layers.append(block(self.inplanes, width, s, down, shortcut_name))
                self.inplanes = width * block.expansion
            name = f"layer{index + 1}"
            setattr(self, name, nn.Sequential(*layers))
            self.stage_names.append(name)
        self.classifier_name = "fc" if shortcut_name == "downsample" else "linear"
        setattr(self, self.classifier_name, nn.Linear(self.inplanes, num_classes))

    def forward(self, x):
        x = F.relu(self.bn1(self.conv1(x)))
        if self.maxpool is not None:
            x = self.maxpool(x)
        feats, preacts = [x], [x]
        for name in self.stage_names:
            x, pre = run_stage(getattr(self, name), x)
            feats.append(x)
            preacts.append(pre)
        if self.pool_window is None:
            emb = F.adaptive_avg_pool2d(x, 1).flatten(1)
        else:
            emb = F.avg_pool2d(x, self.pool_window).flatten(1)
        return getattr(self, self.classifier_name)(emb), emb, feats, preacts


def cifar_resnet(depth, widths, num_classes):
    n = (depth - 2) // 6
    return ResNetBase(BasicBlock, [n] * 3, widths[1:], widths[0], num_classes, False, "downsample",
                      pool_window=8)


# ---------------------------------------------------------------- WRN (wrn.py)
class WrnBlock(nn.Module):
    def __init__(self, in_planes, out_planes, stride):
        super().__init__()
        self.bn1 = nn.BatchNorm2d(in_planes)
        self.conv1 = nn.Conv2d(in_planes, out_planes, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_planes)
        self.conv2 = nn.Conv2d(out_planes, out_planes, 3, 1, 1, bias=False)
        self.equal = in_planes == out_planes
        self.convShortcut = None if self.equal else nn.Conv2d(in_planes, out_planes, 1, stride, 0, bias=False)

    def forward(self, x):
        if not self.equal:
            x = F.relu(self.bn1(x))
            out = x
        else:
            out = F.relu(self.bn1(x))
        out = F.relu(self.bn2(self.conv1(out)))
        out = self.conv2(out)
        return (x if self.equal else self.convShortcut(x)) + out


class NetworkBlock(nn.Module):
    def __init__(self, n, in_planes, out_planes, stride):
        super().__init__()
        self.layer = nn.Sequential(*[WrnBlock(in_planes if i == 0 else out_planes, out_planes, stride if i == 0 else 1) for i in range(n)])

    def forward(self, x):
        return self.layer(x)


class WideResNet(nn.Module):
    def __init__(self, depth, k, num_classes):
        super().__init__()
        c = [16, 16 * k, 32 * k, 64 * k]
        n = (depth - 4) // 6
        self.conv1 = nn.Conv2d(3, 16, 3, 1, 1, bias=False)
        self.block1 = NetworkBlock(n, c[0], c[1], 1)
        self.block2 = NetworkBlock(n, c[1], c[2], 2)
        self.block3 = NetworkBlock(n, c[2], c[3], 2)
        self.bn1 = nn.BatchNorm2d(c[3])
        self.fc = nn.Linear(c[3], num_classes)

    def forward(self, x, preact=True):
        # RepDistiller computes the pre-activation features (a second call of three BN layers,
        # which in train mode updates their running statistics again) only with preact=True.
        f0 = self.conv1(x)
        f1 = self.block1(f0)
        f2 = self.block2(f1)
        f3 = self.block3(f2)
        out = F.relu(self.bn1(f3))
        emb = F.avg_pool2d(out, 8).flatten(1)
        if not preact:
            return self.fc(emb), emb, [f0, f1, f2, f3], None
        pre = [f0, self.block2.layer[0].bn1(f1), self.block3.layer[0].bn1(f2), self.bn1(f3)]
        return self.fc(emb), emb, [f0, f1, f2, f3], pre


# ---------------------------------------------------------------- VGG (vgg.py)
VGG_CFG = {
    8: [[64], [128], [256], [512], [512]],
    11: [[64], [128], [256, 256], [512, 512], [512, 512]],
    13: [[64, 64], [128, 128], [256, 256], [512, 512], [512, 512]],
    16: [[64, 64], [128, 128], [256, 256, 256], [512, 512, 512], [512, 512, 512]],
    19: [[64, 64], [128, 128], [256] * 4, [512] * 4, [512] * 4],
}


class VGG(nn.Module):
    def __init__(self, depth, num_classes):
        super().__init__()
        cin = 3
        for b, widths in enumerate(VGG_CFG[depth]):
            layers = []
            for w in widths:
                layers += [nn.Conv2d(cin, w, 3, padding=1), nn.BatchNorm2d(w), nn.ReLU(inplace=True)]
                cin = w
            setattr(self, f"block{b}", nn.Sequential(*layers[:-1]))
        self.pool = nn.MaxPool2d(2, 2)
        self.classifier = nn.Linear(512, num_classes)

    def forward(self, x):
        h = x.shape[2]
        x = F.relu(self.block0(x))
        feats, pres = [x], [x]
        for b in range(1, 5):
            if b < 4 or h == 64:
                x = self.pool(x)
            pre = getattr(self, f"block{b}")(x)
            x = F.relu(pre)
            feats.append(x)
            pres.append(pre)
        emb = F.adaptive_avg_pool2d(x, 1).flatten(1)
        return self.classifier(emb), emb, feats, pres


# ---------------------------------------------------------------- MobileNetV2 (mobilenetv2.py)
class InvertedResidual(nn.Module):
    def __init__(self, inp, oup, stride, t):
        super().__init__()
        self.use_res = stride == 1 and inp == oup
        h = inp * t
        self.conv = nn.Sequential(
            nn.Conv2d(inp, h, 1, 1, 0, bias=False), nn.BatchNorm2d(h), nn.ReLU(inplace=True),
            nn.Conv2d(h, h, 3, stride, 1, groups=h, bias=False), nn.BatchNorm2d(h), nn.ReLU(inplace=True),
            nn.Conv2d(h, oup, 1, 1, 0, bias=False), nn.BatchNorm2d(oup),
        )

    def forward(self, x):
        return x + self.conv(x) if self.use_res else self.conv(x)


class MobileNetV2(nn.Module):
    """RepDistiller's `mobile_half` (T=6, width 0.5); classifier in a Sequential (`classifier.0`)."""

    def __init__(self, num_classes, T=6, width=0.5):
        super().__init__()
        setting = [[1, 16, 1, 1], [T, 24, 2, 1], [T, 32, 3, 2], [T, 64, 4, 2], [T, 96, 3, 1], [T, 160, 3, 2], [T, 320, 1, 1]]
        cin = int(32 * width)
        self.conv1 = nn.Sequential(nn.Conv2d(3, cin, 3, 2, 1, bias=False), nn.BatchNorm2d(cin), nn.ReLU(inplace=True))
        self.blocks = nn.ModuleList()
        for t, c, n, s in setting:
            cout = int(c * width)
            layers = []
            for i in range(n):
                layers.append(InvertedResidual(cin, cout, s if i == 0 else 1, t))
                cin = cout
            self.blocks.append(nn.Sequential(*layers))
        last = int(1280 * width) if width > 1.0 else 1280
        self.conv2 = nn.Sequential(nn.Conv2d(cin, last, 1, 1, 0, bias=False), nn.BatchNorm2d(last), nn.ReLU(inplace=True))
        self.avgpool = nn.AvgPool2d(2, ceil_mode=True)
        self.classifier = nn.Sequential(nn.Linear(last, num_classes))

    def forward(self, x):
        f0 = self.conv1(x)
        f1 = self.blocks[1](self.blocks[0](f0))
        f2 = self.blocks[2](f1)
        f3 = self.blocks[4](self.blocks[3](f2))
        f4 = self.blocks[6](self.blocks[5](f3))
        emb = self.avgpool(self.conv2(f4)).flatten(1)
        return self.classifier(emb), emb, [f0, f1, f2, f3, f4], None


# ---------------------------------------------------------------- ShuffleNetV1 (ShuffleNetv1.py)
def shuffle(x, g):
    n, c, h, w = x.shape
    return x.view(n, g, c // g, h, w).permute(0, 2, 1, 3, 4).reshape(n, c, h, w)


class ShuffleUnitV1(nn.Module):
    def __init__(self, in_planes, out_planes, stride, groups):
        super().__init__()
        mid = int(out_planes / 4)
        g = 1 if in_planes == 24 else groups
        self.g = g
        self.stride = stride
        self.conv1 = nn.Conv2d(in_planes, mid, 1, groups=g, bias=False)
        self.bn1 = nn.BatchNorm2d(mid)
        self.conv2 = nn.Conv2d(mid, mid, 3, stride, 1, groups=mid, bias=False)
        self.bn2 = nn.BatchNorm2d(mid)
        self.conv3 = nn.Conv2d(mid, out_planes, 1, groups=groups, bias=False)
        self.bn3 = nn.BatchNorm2d(out_planes)
        self.shortcut = nn.Sequential(nn.AvgPool2d(3, stride=2, padding=1)) if stride == 2 else nn.Sequential()

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        out = shuffle(out, self.g)
        out = F.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        res = self.shortcut(x)
        preact = torch.cat([out, res], 1) if self.stride == 2 else out + res
        return F.relu(preact), preact


class ShuffleNetV1(nn.Module):
    def __init__(self, num_classes, out_planes=(240, 480, 960), num_blocks=(4, 8, 4), groups=3):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 24, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(24)
        self.in_planes = 24
        for s in range(3):
            layers = []
            for i in range(num_blocks[s]):
                stride = 2 if i == 0 else 1
                cat = self.in_planes if i == 0 else 0
                layers.append(ShuffleUnitV1(self.in_planes, out_planes[s] - cat, stride, groups))
                self.in_planes = out_planes[s]
            setattr(self, f"layer{s + 1}", nn.Sequential(*layers))
        self.linear = nn.Linear(out_planes[2], num_classes)

    def forward(self, x):
        x = F.relu(self.bn1(self.conv1(x)))
        feats, pres = [x], [x]
        for s in range(3):
            x, pre = run_stage(getattr(self, f"layer{s + 1}"), x)
            feats.append(x)
            pres.append(pre)
        emb = F.avg_pool2d(x, 4).flatten(1)
        return self.linear(emb), emb, feats, pres


# ---------------------------------------------------------------- ShuffleNetV2 (ShuffleNetv2.py)
class SplitBlock(nn.Module):
    def __init__(self, c):
        super().__init__()
        h = c // 2
        self.conv1 = nn.Conv2d(h, h, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(h)
        self.conv2 = nn.Conv2d(h, h, 3, 1, 1, groups=h, bias=False)
        self.bn2 = nn.BatchNorm2d(h)
        self.conv3 = nn.Conv2d(h, h, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(h)

    def forward(self, x):
        c = x.size(1) // 2
        x1, x2 = x[:, :c], x[:, c:]
        out = F.relu(self.bn1(self.conv1(x2)))
        out = self.bn2(self.conv2(out))
        pre = self.bn3(self.conv3(out))
        out = torch.cat([x1, F.relu(pre)], 1)
        return shuffle(out, 2), torch.cat([x1, pre], 1)


class DownBlock(nn.Module):
    def __init__(self, cin, cout):
        super().__init__()
        mid = cout // 2
        self.conv1 = nn.Conv2d(cin, cin, 3, 2, 1, groups=cin, bias=False)
        self.bn1 = nn.BatchNorm2d(cin)
        self.conv2 = nn.Conv2d(cin, mid, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(mid)
        self.conv3 = nn.Conv2d(cin, mid, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(mid)
        self.conv4 = nn.Conv2d(mid, mid, 3, 2, 1, groups=mid, bias=False)
        self.bn4 = nn.BatchNorm2d(mid)
        self.conv5 = nn.Conv2d(mid, mid, 1, bias=False)
        self.bn5 = nn.BatchNorm2d(mid)

    def forward(self, x):
        out1 = self.bn1(self.conv1(x))
        out1 = F.relu(self.bn2(self.conv2(out1)))
        out2 = F.relu(self.bn3(self.conv3(x)))
        out2 = self.bn4(self.conv4(out2))
        out2 = F.relu(self.bn5(self.conv5(out2)))
        out = shuffle(torch.cat([out1, out2], 1), 2)
        return out, out


class ShuffleNetV2(nn.Module):
    def __init__(self, num_classes, out_channels=(116, 232, 464, 1024), num_blocks=(3, 7, 3)):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 24, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(24)
        cin = 24
        for s in range(3):
            layers = [DownBlock(cin, out_channels[s])] + [SplitBlock(out_channels[s]) for _ in range(num_blocks[s])]
            setattr(self, f"layer{s + 1}", nn.Sequential(*layers))
            cin = out_channels[s]
        self.conv2 = nn.Conv2d(cin, out_channels[3], 1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_channels[3])
        self.linear = nn.Linear(out_channels[3], num_classes)

    def forward(self, x):
        x = F.relu(self.bn1(self.conv1(x)))
        feats, pres = [x], [x]
        for s in range(3):
            x, pre = run_stage(getattr(self, f"layer{s + 1}"), x)
            feats.append(x)
            pres.append(pre)
        out = F.relu(self.bn2(self.conv2(x)))
        emb = F.avg_pool2d(out, 4).flatten(1)
        return self.linear(emb), emb, feats, pres


# ---------------------------------------------------------------- registry
def build(name, num_classes=100):
    cifar = {
        "resnet8": (8, [16, 16, 32, 64]), "resnet14": (14, [16, 16, 32, 64]), "resnet20": (20, [16, 16, 32, 64]),
        "resnet32": (32, [16, 16, 32, 64]), "resnet44": (44, [16, 16, 32, 64]), "resnet56": (56, [16, 16, 32, 64]),
        "resnet110": (110, [16, 16, 32, 64]), "resnet8x4": (8, [32, 64, 128, 256]), "resnet32x4": (32, [32, 64, 128, 256]),
        "resnet14x05": (14, [8, 8, 16, 32]), "resnet20x05": (20, [8, 8, 16, 32]), "resnet20x0375": (20, [6, 6, 12, 24]),
    }
    if name in cifar:
        return cifar_resnet(*cifar[name], num_classes)
    if name.startswith("wrn_"):
        _, d, k = name.split("_")
        return WideResNet(int(d), int(k), num_classes)
    if name.startswith("vgg"):
        return VGG(int(name[3:]), num_classes)
    four = {"18": (BasicBlock, [2, 2, 2, 2]), "34": (BasicBlock, [3, 4, 6, 3]), "50": (Bottleneck, [3, 4, 6, 3])}
    if name.startswith("ResNet"):
        block, blocks = four[name[6:]]
        return ResNetBase(block, blocks, [64, 128, 256, 512], 64, num_classes, False, "shortcut")
    if name in ("resnet18", "resnet34", "resnet50"):
        block, blocks = four[name[6:]]
        return ResNetBase(block, blocks, [64, 128, 256, 512], 64, num_classes, True, "downsample")
    return {"MobileNetV2": MobileNetV2, "ShuffleV1": ShuffleNetV1, "ShuffleV2": ShuffleNetV2}[name](num_classes)


SS_HEAD = lambda d: nn.Sequential(nn.Linear(d, d), nn.ReLU(inplace=True), nn.Linear(d, d))
