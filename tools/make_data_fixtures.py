"""Builds the data shipped in the repository and the reader fixtures.

Usage (needs numpy and pillow; the Fashion-MNIST subset needs the Debian package
`dataset-fashion-mnist`, MIT licence, installed with `apt-get install dataset-fashion-mnist`):
    python tools/make_data_fixtures.py

- data/fashion-mnist/: a deterministic, class-balanced subset of Fashion-MNIST in the original
  IDX layout, gzipped: the first 800 training images of each class in file order (8,000) and
  the first 200 test images of each class (2,000).
- tests/fixtures/data/cifar100_python_p2/ and _p4/: ten random CIFAR-100 images pickled the
  way the python version is (dict with `data` N×3072 uint8 and `fine_labels`), at pickle
  protocols 2 and 4, with the same images in the binary layout (`train.bin`) to compare with.
- tests/fixtures/data/images/: a CMYK JPEG, a PNG named `.JPEG` and a grey JPEG, each with the
  RGB pixels PIL decodes (`*.rgb.png`).
"""
import gzip
import os
import pickle

import numpy as np
from PIL import Image

ROOT = os.path.join(os.path.dirname(__file__), "..")
FASHION = "/usr/share/datasets/fashion-mnist"


def read_idx(path):
    with gzip.open(path, "rb") as f:
        raw = f.read()
    dims = raw[3]
    shape = [int.from_bytes(raw[4 + 4 * i: 8 + 4 * i], "big") for i in range(dims)]
    return np.frombuffer(raw[4 + 4 * dims:], dtype=np.uint8).reshape(shape)


def write_idx(path, array):
    header = bytes([0, 0, 8, array.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in array.shape)
    with open(path, "wb") as raw, gzip.GzipFile(fileobj=raw, mode="wb", mtime=0, filename="") as f:
        f.write(header + array.tobytes())


def fashion_subset():
    out = os.path.join(ROOT, "data", "fashion-mnist")
    os.makedirs(out, exist_ok=True)
    for prefix, per_class in (("train", 800), ("t10k", 200)):
        images = read_idx(f"{FASHION}/{prefix}-images-idx3-ubyte.gz")
        labels = read_idx(f"{FASHION}/{prefix}-labels-idx1-ubyte.gz")
        keep = np.sort(np.concatenate([np.flatnonzero(labels == c)[:per_class] for c in range(10)]))
        write_idx(f"{out}/{prefix}-images-idx3-ubyte.gz", images[keep])
        write_idx(f"{out}/{prefix}-labels-idx1-ubyte.gz", labels[keep])
        print(prefix, len(keep), np.bincount(labels[keep]))


def cifar_pickles():
    rng = np.random.default_rng(100)
    data = rng.integers(0, 256, (10, 3072), dtype=np.uint8)
    fine = [int(x) for x in rng.integers(0, 100, 10)]
    coarse = [f // 5 for f in fine]
    for protocol in (2, 4):
        out = os.path.join(ROOT, "tests", "fixtures", "data", f"cifar100_python_p{protocol}")
        os.makedirs(out, exist_ok=True)
        content = {"filenames": [f"img_{i}.png" for i in range(10)], "batch_label": "training batch 1 of 1",
                   "fine_labels": fine, "coarse_labels": coarse, "data": data}
        for name in ("train", "test"):
            with open(f"{out}/{name}", "wb") as f:
                pickle.dump(content, f, protocol=protocol)
        with open(f"{out}/meta", "wb") as f:
            pickle.dump({"fine_label_names": [f"class_{i}" for i in range(100)], "coarse_label_names": [f"super_{i}" for i in range(20)]}, f, protocol=protocol)
    binary = os.path.join(ROOT, "tests", "fixtures", "data", "cifar100_binary")
    os.makedirs(binary, exist_ok=True)
    records = b"".join(bytes([c, f]) + row.tobytes() for c, f, row in zip(coarse, fine, data))
    for name in ("train.bin", "test.bin"):
        with open(f"{binary}/{name}", "wb") as f:
            f.write(records)


def special_images():
    out = os.path.join(ROOT, "tests", "fixtures", "data", "images")
    os.makedirs(out, exist_ok=True)
    rng = np.random.default_rng(7)
    smooth = np.kron(rng.integers(0, 256, (4, 4, 3), dtype=np.uint8), np.ones((4, 4, 1), dtype=np.uint8))
    rgb = Image.fromarray(smooth, "RGB")
    cmyk = rgb.convert("CMYK")
    cmyk.save(f"{out}/cmyk.JPEG", quality=95)
    Image.open(f"{out}/cmyk.JPEG").convert("RGB").save(f"{out}/cmyk.rgb.png")
    rgb.save(f"{out}/png_disguised.JPEG", format="PNG")
    rgb.save(f"{out}/png_disguised.rgb.png")
    grey = rgb.convert("L")
    grey.save(f"{out}/grey.JPEG", quality=95)
    Image.open(f"{out}/grey.JPEG").convert("RGB").save(f"{out}/grey.rgb.png")


if __name__ == "__main__":
    fashion_subset()
    cifar_pickles()
    special_images()
