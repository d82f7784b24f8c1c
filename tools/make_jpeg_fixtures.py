#!/usr/bin/env python3
"""JPEG fixtures of forks/sskd-jpeg's region tests, written by Pillow (libjpeg-turbo) and
OpenCV (for the subsamplings Pillow does not write) from the photographs of
tests/fixtures/augment: every chroma subsampling the region decoder handles (4:4:4, 4:2:2,
4:2:0, 4:4:0), sizes that are and are not multiples of the MCU, a width under 16 pixels, restart
markers every few MCUs and every MCU row, and layouts it decodes whole (progressive, greyscale,
4:1:1).

Usage: python3 tools/make_jpeg_fixtures.py   (from the repository's root; needs Pillow and
opencv-python-headless)
"""
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
PHOTOS = ROOT / "tests" / "fixtures" / "augment"
OUT = ROOT / "forks" / "sskd-jpeg" / "tests" / "fixtures"

# name: (photograph, crop box (left, top, right, bottom), mode, Pillow's save options)
FIXTURES = {
    "coffee_444_301x203.jpg": ("coffee", (150, 90, 451, 293), "RGB", {"subsampling": 0}),
    "coffee_422_301x203.jpg": ("coffee", (150, 90, 451, 293), "RGB", {"subsampling": 1}),
    "coffee_420_301x203.jpg": ("coffee", (150, 90, 451, 293), "RGB", {"subsampling": 2}),
    "coffee_420_256x160.jpg": ("coffee", (40, 20, 296, 180), "RGB", {"subsampling": 2}),
    "coffee_420_13x29.jpg": ("coffee", (300, 200, 313, 229), "RGB", {"subsampling": 2}),
    "cat_420_restart5_451x300.jpg": (
        "cat", None, "RGB", {"subsampling": 2, "restart_marker_blocks": 5}),
    "cat_422_restart_rows_227x150.jpg": (
        "cat", (100, 60, 327, 210), "RGB", {"subsampling": 1, "restart_marker_rows": 1}),
    "cat_444_restart7_97x61.jpg": (
        "cat", (200, 100, 297, 161), "RGB", {"subsampling": 0, "restart_marker_blocks": 7}),
    "coffee_420_progressive_200x120.jpg": (
        "coffee", (0, 0, 200, 120), "RGB", {"subsampling": 2, "progressive": True}),
    "coffee_grey_150x100.jpg": ("coffee", (300, 100, 450, 200), "L", {}),
}


# name: (photograph, crop box, OpenCV's sampling factor) — quality 90.
OPENCV_FIXTURES = {
    "coffee_440_301x203.jpg": ("coffee", (150, 90, 451, 293), cv2.IMWRITE_JPEG_SAMPLING_FACTOR_440),
    "coffee_411_301x203.jpg": ("coffee", (150, 90, 451, 293), cv2.IMWRITE_JPEG_SAMPLING_FACTOR_411),
}


def main():
    OUT.mkdir(parents=True, exist_ok=True)
    for name, (photo, box, mode, options) in FIXTURES.items():
        image = Image.open(PHOTOS / f"{photo}.png").convert("RGB")
        if box is not None:
            image = image.crop(box)
        image.convert(mode).save(OUT / name, "JPEG", quality=90, **options)
        print(f"{name}: {(OUT / name).stat().st_size} bytes")
    for name, (photo, box, sampling) in OPENCV_FIXTURES.items():
        rgb = np.asarray(Image.open(PHOTOS / f"{photo}.png").convert("RGB").crop(box))
        params = [cv2.IMWRITE_JPEG_QUALITY, 90, cv2.IMWRITE_JPEG_SAMPLING_FACTOR, sampling]
        assert cv2.imwrite(str(OUT / name), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), params)
        print(f"{name}: {(OUT / name).stat().st_size} bytes")


if __name__ == "__main__":
    main()
