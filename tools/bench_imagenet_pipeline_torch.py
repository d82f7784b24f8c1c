"""The torchvision twin of `data_bench --pipeline imagenet`: SSKD's four-rotation ImageNet
training pipeline over the same ImageNet-layout folder — torchvision `ImageFolder` (PIL decode),
`RandomResizedCrop(224, (0.08, 1), (3/4, 4/3))`, `RandomHorizontalFlip`, `ToTensor`,
`Normalize(ImageNet)`, the four rotations of the crop (`torch.rot90`, as SSKD's `train.py`
builds its batch) and batching — first in one process (`workers: 0`), then through a
`DataLoader` with `--workers` processes. Prints one JSON line per run, in source images per
second and per core, to compare with

    cargo run --release --example data_bench -- --pipeline imagenet --data DIR --threads N

on the same folder in the same session (`data_bench --generate` writes a synthetic one).

Usage: python tools/bench_imagenet_pipeline_torch.py --data DIR [--images 1000] [--workers 2]
"""
import argparse
import json
import os
import time

import PIL
import torch
import torchvision
import torchvision.transforms as T
from torch.utils.data import DataLoader, Subset
from torchvision.datasets import ImageFolder


class FourRotations:
    """The normalised crop and its rotations by 90, 180 and 270 degrees, `[4, 3, H, W]`."""

    def __call__(self, image):
        return torch.stack([torch.rot90(image, k, (1, 2)) for k in range(4)])


def pipeline(size):
    return T.Compose([
        T.RandomResizedCrop(size, scale=(0.08, 1.0), ratio=(3 / 4, 4 / 3)),
        T.RandomHorizontalFlip(),
        T.ToTensor(),
        T.Normalize([0.485, 0.456, 0.406], [0.229, 0.224, 0.225]),
        FourRotations(),
    ])


def spread(dataset, count):
    """The first `count` files spread over the classes, as `data_bench` picks them."""
    if len(dataset) <= count:
        return dataset
    step = len(dataset) / count
    return Subset(dataset, [int(k * step) for k in range(count)])


def stages(dataset, size, count=64):
    """Milliseconds per image of each stage on this process, over the first `count` files, as
    `data_bench`'s `stages_ms`: decode (PIL open + convert), the resized crop (window drawn and
    resized), and flip + ToTensor + Normalize + the four rotations."""
    base = dataset.dataset if isinstance(dataset, Subset) else dataset
    indices = dataset.indices[:count] if isinstance(dataset, Subset) else range(min(count, len(base)))
    crop, *after = pipeline(size).transforms
    rest = T.Compose(after)
    seconds = [0.0, 0.0, 0.0]
    for index in indices:
        path, _ = base.samples[index]
        start = time.perf_counter()
        image = base.loader(path)
        seconds[0] += time.perf_counter() - start
        start = time.perf_counter()
        cropped = crop(image)
        seconds[1] += time.perf_counter() - start
        start = time.perf_counter()
        rest(cropped)
        seconds[2] += time.perf_counter() - start
    per_image = [1e3 * s / max(len(indices), 1) for s in seconds]
    return {"decode": per_image[0], "crop_resize": per_image[1],
            "flip_rotations_normalise": per_image[2]}


def run(dataset, batch, workers):
    loader = DataLoader(dataset, batch_size=batch, shuffle=True, num_workers=workers,
                        persistent_workers=False)
    start = time.perf_counter()
    images = 0
    for images_batch, labels in loader:
        images += labels.shape[0]
    return images, time.perf_counter() - start


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--data", required=True)
    parser.add_argument("--images", type=int, default=1000)
    parser.add_argument("--workers", type=int, default=os.cpu_count())
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--size", type=int, default=224)
    args = parser.parse_args()
    torch.set_num_threads(1)
    dataset = spread(ImageFolder(os.path.join(args.data, "train"), transform=pipeline(args.size)),
                     args.images)
    stages_ms = stages(dataset, args.size)
    for workers in [0, args.workers]:
        images, seconds = run(dataset, args.batch, workers)
        cores = max(workers, 1)
        print(json.dumps({
            "pipeline": "torchvision ImageFolder + RandomResizedCrop + flip + ToTensor + "
                        "Normalize + rot90 x4, DataLoader",
            "workers": workers, "images": images, "seconds": seconds,
            "images_per_second": images / seconds,
            "images_per_second_per_core": images / seconds / cores,
            "stages_ms": stages_ms,
            "torch": torch.__version__, "torchvision": torchvision.__version__,
            "pillow": PIL.__version__,
        }))


if __name__ == "__main__":
    main()
