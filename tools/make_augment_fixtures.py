"""Writes torchvision reference outputs for the augmentations to tests/fixtures/augment/.

Usage (CPU torch, torchvision, pillow, numpy, scikit-image for its sample photos):
    python tools/make_augment_fixtures.py

Inputs are real photographs shipped with scikit-image (`chelsea.png`, `coffee.png`; public
domain / CC0 per scikit-image's data README) and an image of the shipped Fashion-MNIST subset.
Every random parameter is fixed here and written to `cases.json`; the Rust test applies the same
parameters and compares pixels (PNG outputs) or floats (`normalize.bin`, little-endian f32).
"""
import gzip
import json
import os

import numpy as np
import skimage.data
import torch
import torchvision.transforms.functional as F
from PIL import Image

OUT = os.path.join(os.path.dirname(__file__), "..", "tests", "fixtures", "augment")


def save(image, name):
    image.save(os.path.join(OUT, name))
    return name


def fashion_image():
    path = os.path.join(os.path.dirname(__file__), "..", "data", "fashion-mnist", "train-images-idx3-ubyte.gz")
    with gzip.open(path) as f:
        raw = f.read()
    return Image.fromarray(np.frombuffer(raw[16:16 + 784], np.uint8).reshape(28, 28)).convert("RGB")


def main():
    os.makedirs(OUT, exist_ok=True)
    cat = Image.fromarray(skimage.data.chelsea())  # 300×451 RGB
    coffee = Image.fromarray(skimage.data.coffee())  # 400×600 RGB
    small = cat.resize((32, 32), Image.BILINEAR)
    cases = {"inputs": {"cat": save(cat, "cat.png"), "coffee": save(coffee, "coffee.png"), "small": save(small, "small.png"),
                        "fashion": save(fashion_image(), "fashion.png")}, "cases": []}

    def case(kind, source, result, **params):
        name = f"{len(cases['cases']):02d}_{kind}.png"
        save(result, name)
        cases["cases"].append({"kind": kind, "input": source, "expected": name, **params})

    # CIFAR: pad 4 (zeros), crop at (top, left), optional flip.
    for top, left, flip in ((0, 8, False), (5, 2, True), (8, 0, True)):
        out = F.crop(F.pad(small, 4, fill=0), top, left, 32, 32)
        case("pad_crop_flip", "small", F.hflip(out) if flip else out, top=top, left=left, flip=flip)
    # numpy rot90 (counter-clockwise) of the H×W×C array.
    for k in (1, 2, 3):
        case("rot90", "fashion", Image.fromarray(np.ascontiguousarray(np.rot90(np.array(fashion_image()), k))), k=k)
    # RandomResizedCrop with fixed windows, PIL bilinear (antialiased when shrinking).
    for top, left, h, w, size in ((20, 40, 250, 300, 224), (0, 0, 300, 451, 224), (100, 200, 60, 40, 224), (50, 60, 120, 90, 32)):
        case("resized_crop", "cat", F.resized_crop(cat, top, left, h, w, [size, size], F.InterpolationMode.BILINEAR),
             top=top, left=left, height=h, width=w, size=size)
    # ImageNet validation: Resize(256) + CenterCrop(224).
    case("imagenet_val", "coffee", F.center_crop(F.resize(coffee, 256, F.InterpolationMode.BILINEAR), 224))
    case("imagenet_val", "cat", F.center_crop(F.resize(cat, 256, F.InterpolationMode.BILINEAR), 224))
    # Colour dropping.
    case("grayscale", "cat", F.rgb_to_grayscale(cat, num_output_channels=3))
    # Colour jitter pieces and a full jitter in a given order.
    for factor in (0.6, 1.3):
        case("brightness", "cat", F.adjust_brightness(cat, factor), factor=factor)
        case("contrast", "cat", F.adjust_contrast(cat, factor), factor=factor)
        case("saturation", "cat", F.adjust_saturation(cat, factor), factor=factor)
    for factor in (-0.1, 0.05, 0.1):
        case("hue", "cat", F.adjust_hue(cat, factor), factor=factor)
    params = dict(brightness=1.2, contrast=0.8, saturation=1.35, hue=-0.07, order=[3, 0, 2, 1])
    out = cat
    for step in params["order"]:
        out = [F.adjust_brightness, F.adjust_contrast, F.adjust_saturation, F.adjust_hue][step](
            out, [params["brightness"], params["contrast"], params["saturation"], params["hue"]][step])
    case("jitter", "cat", out, **params)
    # ToTensor + Normalize (CIFAR-100 statistics), written as raw f32.
    tensor = F.normalize(F.to_tensor(small), [0.5071, 0.4866, 0.4409], [0.2675, 0.2565, 0.2761])
    tensor.numpy().astype("<f4").tofile(os.path.join(OUT, "normalize.bin"))
    with open(os.path.join(OUT, "cases.json"), "w") as f:
        json.dump(cases, f, indent=1)
    print(len(cases["cases"]), "cases")


if __name__ == "__main__":
    main()
