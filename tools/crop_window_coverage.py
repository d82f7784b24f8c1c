#!/usr/bin/env python3
"""How much of an image `RandomResizedCrop(scale=(0.08, 1), ratio=(3/4, 4/3))` reads: over
many draws (torchvision's `get_params`, re-implemented with `random` so that it runs without
torch), the average share of the image's area inside the window and the average position of
the window's last row — the rows a region decoder must read — for ImageNet's common sizes.
The prediction for region decoding in docs/data.md comes from it.

Usage: python3 tools/crop_window_coverage.py [--draws 200000]
"""
import argparse
import math
import random


def window(width, height, rng):
    """torchvision's RandomResizedCrop.get_params: (top, left, h, w)."""
    area = width * height
    log_ratio = (math.log(3 / 4), math.log(4 / 3))
    for _ in range(10):
        target_area = area * rng.uniform(0.08, 1.0)
        aspect = math.exp(rng.uniform(*log_ratio))
        w = int(round(math.sqrt(target_area * aspect)))
        h = int(round(math.sqrt(target_area / aspect)))
        if 0 < w <= width and 0 < h <= height:
            return rng.randint(0, height - h), rng.randint(0, width - w), h, w
    in_ratio = width / height
    if in_ratio < 3 / 4:
        w, h = width, int(round(width / (3 / 4)))
    elif in_ratio > 4 / 3:
        h, w = height, int(round(height * 4 / 3))
    else:
        w, h = width, height
    return (height - h) // 2, (width - w) // 2, h, w


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--draws", type=int, default=200_000)
    args = parser.parse_args()
    rng = random.Random(0)
    for width, height in [(500, 375), (375, 500), (500, 333)]:
        area = last_row = 0.0
        for _ in range(args.draws):
            top, _, h, w = window(width, height, rng)
            area += h * w / (width * height)
            last_row += (top + h) / height
        print(f"{width}x{height}: window area {area / args.draws:.3f} of the image, "
              f"last row at {last_row / args.draws:.3f} of the height")


if __name__ == "__main__":
    main()
