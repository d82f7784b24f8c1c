"""PyTorch CPU twin of benches/conv_kernels.rs: times conv2d forward, input gradient and weight
gradient (torch.ops.aten.convolution_backward with one output mask each) at the same shapes,
batch 64, all CPU threads, and prints one JSON line per measurement (median of 10 after 3
warm-up calls) with the shape's sizes; then the machine's GEMM peak as PyTorch reaches it (a
square `torch.mm` of PEAK_SIZE, op "peak"), as the Rust bench's `gemm/peak`.

    python tools/bench_conv_torch.py [FILTER]
"""
import json
import statistics
import sys
import time

import torch

# name, c_in, c_out, size, kernel, stride, padding, groups (as SHAPES in benches/conv_kernels.rs)
SHAPES = [
    ("wrn_stem_3x3_3to32_32px", 3, 32, 32, 3, 1, 1, 1),
    ("wrn_3x3_32to32_32px", 32, 32, 32, 3, 1, 1, 1),
    ("wrn_3x3_s2_32to64_32px", 32, 64, 32, 3, 2, 1, 1),
    ("wrn_1x1_s2_32to64_32px", 32, 64, 32, 1, 2, 0, 1),
    ("wrn_3x3_64to64_16px", 64, 64, 16, 3, 1, 1, 1),
    ("wrn_3x3_128to128_8px", 128, 128, 8, 3, 1, 1, 1),
    ("ft_3x3_128to64_8px", 128, 64, 8, 3, 1, 1, 1),
    ("ft_3x3_64to64_8px", 64, 64, 8, 3, 1, 1, 1),
    ("resnet8x4_3x3_64to64_32px", 64, 64, 32, 3, 1, 1, 1),
    ("resnet8x4_3x3_256to256_8px", 256, 256, 8, 3, 1, 1, 1),
    ("vgg13_3x3_128to128_16px", 128, 128, 16, 3, 1, 1, 1),
    ("vgg13_3x3_512to512_4px", 512, 512, 4, 3, 1, 1, 1),
    ("vgg13_3x3_512to512_2px", 512, 512, 2, 3, 1, 1, 1),
    ("mobilenetv2_1x1_16to96_16px", 16, 96, 16, 1, 1, 0, 1),
    ("mobilenetv2_dw3x3_96_16px", 96, 96, 16, 3, 1, 1, 96),
    ("mobilenetv2_dw3x3_s2_96_16px", 96, 96, 16, 3, 2, 1, 96),
    ("shufflev1_1x1_g3_240to60_16px", 240, 60, 16, 1, 1, 0, 3),
]


def median_ms(fn, warmup=3, reps=10):
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(reps):
        start = time.perf_counter()
        fn()
        times.append((time.perf_counter() - start) * 1e3)
    return statistics.median(times)


PEAK_SIZE = 1024  # as GEMM_PEAK_SIZE in benches/conv_kernels.rs


def main():
    wanted = sys.argv[1] if len(sys.argv) > 1 else ""
    torch.manual_seed(0)
    for name, c_in, c_out, size, kernel, stride, padding, groups in SHAPES:
        if wanted not in name:
            continue
        x = torch.randn(64, c_in, size, size)
        w = torch.randn(c_out, c_in // groups, kernel, kernel)
        args = ([stride] * 2, [padding] * 2, [1, 1], False, [0, 0], groups)
        with torch.no_grad():
            y = torch.conv2d(x, w, None, stride, padding, 1, groups)
            dy = torch.randn_like(y)

            def backward(mask):
                return lambda: torch.ops.aten.convolution_backward(dy, x, w, None, *args, mask)

            ops = {
                "forward": lambda: torch.conv2d(x, w, None, stride, padding, 1, groups),
                "input_grad": backward([True, False, False]),
                "weight_grad": backward([False, True, False]),
            }
            sizes = dict(batch=64, c_in=c_in, c_out=c_out, size=size, kernel=kernel,
                         stride=stride, padding=padding, groups=groups)
            for op, fn in ops.items():
                print(json.dumps(dict(shape=name, op=op, impl="pytorch", torch=torch.__version__,
                                      threads=torch.get_num_threads(), median_ms=median_ms(fn),
                                      **sizes)))
    a, b = torch.randn(PEAK_SIZE, PEAK_SIZE), torch.randn(PEAK_SIZE, PEAK_SIZE)
    print(json.dumps(dict(shape=f"gemm_{PEAK_SIZE}", op="peak", impl="pytorch",
                          torch=torch.__version__, threads=torch.get_num_threads(),
                          median_ms=median_ms(lambda: torch.mm(a, b)), size=PEAK_SIZE)))


if __name__ == "__main__":
    main()
