#!/usr/bin/env python3
"""Re-encodes an ImageNet-layout folder of JPEGs with Pillow (libjpeg-turbo) at a given chroma
subsampling and quality, keeping the layout: `data_bench --generate` writes 4:4:4 files (the
`image` crate's encoder has no subsampling), ImageNet's own are mostly 4:2:0 at quality ~90.

Usage: python3 tools/reencode_jpeg_folder.py SRC DST [--subsampling 4:2:0] [--quality 90]
"""
import argparse
from pathlib import Path

from PIL import Image

SUBSAMPLING = {"4:4:4": 0, "4:2:2": 1, "4:2:0": 2}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("src", type=Path)
    parser.add_argument("dst", type=Path)
    parser.add_argument("--subsampling", choices=sorted(SUBSAMPLING), default="4:2:0")
    parser.add_argument("--quality", type=int, default=90)
    args = parser.parse_args()
    files = sorted(p for p in args.src.rglob("*") if p.suffix.lower() in (".jpeg", ".jpg"))
    for path in files:
        target = args.dst / path.relative_to(args.src)
        target.parent.mkdir(parents=True, exist_ok=True)
        with Image.open(path) as image:
            image.convert("RGB").save(target, "JPEG", quality=args.quality,
                                      subsampling=SUBSAMPLING[args.subsampling])
    print(f"{len(files)} files re-encoded {args.subsampling} at quality {args.quality} in {args.dst}")


if __name__ == "__main__":
    main()
