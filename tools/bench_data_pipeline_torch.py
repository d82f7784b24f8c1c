"""Times the reference SSKD four-rotation CIFAR pipeline (SSKD `cifar.py` __getitem__: PIL
image, shared flip, numpy rot90 ×4, torchvision RandomCrop(32, 4) + ToTensor + Normalize per
copy, stacked) in one process, in source images per second, to compare with
`cargo run --release --example data_bench -- --threads 1`.

Usage: python tools/bench_data_pipeline_torch.py [--images 3000]
"""
import argparse
import json
import time

import numpy as np
import torch
import torchvision.transforms as T
from PIL import Image


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--images", type=int, default=3000)
    args = parser.parse_args()
    torch.set_num_threads(1)
    rng = np.random.default_rng(0)
    data = rng.integers(0, 256, (args.images, 32, 32, 3), dtype=np.uint8)
    transform = T.Compose([T.RandomCrop(32, padding=4), T.ToTensor(), T.Normalize([0.5071, 0.4866, 0.4409], [0.2675, 0.2565, 0.2761])])
    start = time.perf_counter()
    for img in data:
        if np.random.rand() < 0.5:
            img = img[:, ::-1, :]
        copies = [transform(Image.fromarray(np.ascontiguousarray(np.rot90(img, k)))) for k in range(4)]
        torch.stack(copies)
    seconds = time.perf_counter() - start
    print(json.dumps({"pipeline": "SSKD cifar.py four-rotation (PIL + torchvision), one process",
                      "images": args.images, "seconds": seconds, "images_per_second": args.images / seconds}))


if __name__ == "__main__":
    main()
