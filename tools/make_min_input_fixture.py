"""Writes tests/fixtures/models/min_input_sides.json: for every architecture of the zoo, the
smallest side of a square input its reference PyTorch model (tools/zoo_reference.py, after the
RepDistiller / SSKD / torchvision code) accepts, found by running it.

Usage (CPU torch from PyPI):
    python tools/make_min_input_fixture.py
"""
import json
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(__file__))
import zoo_reference as zoo  # noqa: E402

OUT = os.path.join(os.path.dirname(__file__), "..", "tests", "fixtures", "models", "min_input_sides.json")
NAMES = [
    "resnet8", "resnet14", "resnet20", "resnet32", "resnet44", "resnet56", "resnet110",
    "resnet8x4", "resnet32x4", "resnet14x05", "resnet20x05", "resnet20x0375",
    "wrn_16_1", "wrn_16_2", "wrn_40_1", "wrn_40_2", "vgg8", "vgg11", "vgg13", "vgg16", "vgg19",
    "MobileNetV2", "ShuffleV1", "ShuffleV2", "ResNet18", "ResNet34", "ResNet50",
    "resnet18", "resnet34", "resnet50",
]


def runs(model, side):
    try:
        with torch.no_grad():
            model(torch.zeros(2, 3, side, side))
        return True
    except RuntimeError:
        return False


def main():
    sides = {}
    for name in NAMES:
        model = zoo.build(name, 10).eval()
        side = next(s for s in range(1, 65) if runs(model, s))
        assert all(runs(model, s) for s in range(side, side + 4)), name
        sides[name] = side
        print(name, side)
    with open(OUT, "w") as f:
        json.dump(sides, f, indent=1)
        f.write("\n")


if __name__ == "__main__":
    main()
