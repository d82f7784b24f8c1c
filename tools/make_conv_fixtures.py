"""Reference values for the CPU convolution kernels (sskd-kernels, conv2d_kernels.rs) from
torch.nn.functional.conv2d in float64: for each case the output, and the gradients of the
input, weight and bias for the loss sum(out * dy) with a fixed dy.

Cases cover batch 1, stride 1 and 2, padding 0/1/3, 1×1, 3×3 and 7×7 kernels, dilation,
grouped (ShuffleNet's g = 3) and depthwise convolutions (groups = channels, and a channel
multiplier of 2), non-square maps, the zoo's 1×1 stride-2 projections, and the shapes the direct f32 kernels take
(direct_kernels.rs, direct_weight_kernels.rs).

    python tools/make_conv_fixtures.py   # -> tests/fixtures/layers/conv2d.safetensors
"""
import json
from pathlib import Path

import torch
import torch.nn.functional as F
from safetensors.torch import save_file

# name, input shape, weight shape, stride, padding, dilation, groups, bias
CASES = [
    ("conv3x3_s1_p1", (2, 3, 8, 8), (5, 3, 3, 3), 1, 1, 1, 1, True),
    ("conv3x3_s2_p1_nonsquare", (3, 4, 9, 6), (6, 4, 3, 3), 2, 1, 1, 1, False),
    ("conv3x3_p0_batch1", (1, 4, 7, 9), (3, 4, 3, 3), 1, 0, 1, 1, True),
    ("conv1x1_s1", (2, 6, 5, 7), (4, 6, 1, 1), 1, 0, 1, 1, False),
    ("conv1x1_s2_projection", (3, 4, 8, 8), (8, 4, 1, 1), 2, 0, 1, 1, False),
    ("conv7x7_s2_p3_stem", (2, 3, 15, 13), (4, 3, 7, 7), 2, 3, 1, 1, False),
    ("conv3x3_dilation2", (2, 3, 10, 9), (4, 3, 3, 3), 1, 2, 2, 1, True),
    ("grouped1x1_g3", (2, 12, 6, 6), (9, 4, 1, 1), 1, 0, 1, 3, False),
    ("grouped3x3_g2_s2", (2, 4, 7, 7), (6, 2, 3, 3), 2, 1, 1, 2, True),
    ("depthwise3x3_s1", (3, 8, 6, 5), (8, 1, 3, 3), 1, 1, 1, 8, False),
    ("depthwise3x3_s2_batch1", (1, 6, 9, 8), (6, 1, 3, 3), 2, 1, 1, 6, False),
    ("depthwise3x3_multiplier2", (2, 3, 6, 6), (6, 1, 3, 3), 1, 1, 1, 3, True),
    # Per-image pointwise products (1×1, stride 1, maps of 64 pixels or more) and wide-row
    # depthwise kernels (stride 1): appended, so the cases above keep their values.
    ("pointwise1x1_8x9_bias", (3, 6, 8, 9), (5, 6, 1, 1), 1, 0, 1, 1, True),
    ("pointwise1x1_g2_batch1", (1, 8, 9, 9), (6, 4, 1, 1), 1, 0, 1, 2, False),
    ("depthwise5x5_p2_multiplier2", (2, 3, 7, 6), (6, 1, 5, 5), 1, 2, 1, 3, False),
    ("depthwise3x3_batch1_8x8", (1, 5, 8, 8), (5, 1, 3, 3), 1, 1, 1, 5, True),
    # Direct f32 kernels (multiples of 16 output channels, ≥ 64 multiply-adds per output, rows
    # of 7 pixels, 4 blocks of output channels): appended, so the cases above keep their values.
    ("direct3x3_s1_p1_bias", (4, 16, 7, 7), (32, 16, 3, 3), 1, 1, 1, 1, True),
    ("direct3x3_s2_p1", (4, 16, 14, 14), (16, 16, 3, 3), 2, 1, 1, 1, False),
    ("direct5x5_p2_7px", (4, 8, 7, 7), (16, 8, 5, 5), 1, 2, 1, 1, True),
    ("direct3x3_dilation2_7px", (4, 16, 7, 7), (16, 16, 3, 3), 1, 2, 2, 1, False),
    # Direct f32 weight gradients (direct_weight_kernels.rs: rows of a multiple of 8 pixels,
    # input channels in a group of 4 and 2 left over, row stride 1 and 2): appended.
    ("direct_wgrad3x3_6to64_8px", (4, 6, 8, 8), (64, 6, 3, 3), 1, 1, 1, 1, True),
    ("direct_wgrad3x3_s2_8to64", (4, 8, 16, 16), (64, 8, 3, 3), 2, 1, 1, 1, False),
    # Weight-gradient tiles of two rows of 4 pixels (maps 4 wide): appended.
    ("direct3x3_4px_two_rows", (8, 16, 4, 4), (64, 16, 3, 3), 1, 1, 1, 1, True),
]

torch.manual_seed(0)
out, meta = {}, []
for name, x_shape, w_shape, stride, padding, dilation, groups, has_bias in CASES:
    x = torch.randn(x_shape, dtype=torch.float64, requires_grad=True)
    w = torch.randn(w_shape, dtype=torch.float64, requires_grad=True)
    b = torch.randn(w_shape[0], dtype=torch.float64, requires_grad=True) if has_bias else None
    y = F.conv2d(x, w, b, stride=stride, padding=padding, dilation=dilation, groups=groups)
    dy = torch.randn(y.shape, dtype=torch.float64)
    (y * dy).sum().backward()
    tensors = {"x": x, "weight": w, "output": y, "output_grad": dy,
               "x_grad": x.grad, "weight_grad": w.grad}
    if has_bias:
        tensors.update(bias=b, bias_grad=b.grad)
    for key, value in tensors.items():
        out[f"{name}.{key}"] = value.detach().contiguous()
    meta.append(dict(name=name, stride=stride, padding=padding, dilation=dilation,
                     groups=groups, bias=has_bias))

target = Path(__file__).resolve().parent.parent / "tests/fixtures/layers/conv2d.safetensors"
save_file(out, str(target), metadata={"cases": json.dumps(meta), "torch": torch.__version__})
print(f"wrote {target}: {len(CASES)} cases")
