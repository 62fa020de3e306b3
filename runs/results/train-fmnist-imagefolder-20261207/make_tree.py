"""Fashion-MNIST (Debian's dataset-fashion-mnist) written out as an ImageFolder tree, the shape a user's own data
set has: OUT/train/<class>/<n>.png (60000) and OUT/test/<class>/<n>.png (10000), 28x28 grey PNGs.

    .venv/bin/python runs/results/train-fmnist-imagefolder-20261207/make_tree.py runs/data/fmnist-tree
"""
import gzip
import sys
from pathlib import Path

import numpy as np
from PIL import Image

SRC = Path("/usr/share/datasets/fashion-mnist")
CLASSES = ["t-shirt", "trouser", "pullover", "dress", "coat", "sandal", "shirt", "sneaker", "bag", "ankle-boot"]


def idx(path, offset):
    with gzip.open(path) as f:
        return np.frombuffer(f.read(), np.uint8, offset=offset)


def main(out: Path):
    for split, prefix in (("train", "train"), ("test", "t10k")):
        images = idx(SRC / f"{prefix}-images-idx3-ubyte.gz", 16).reshape(-1, 28, 28)
        labels = idx(SRC / f"{prefix}-labels-idx1-ubyte.gz", 8)
        for c in CLASSES:
            (out / split / c).mkdir(parents=True, exist_ok=True)
        for n, (img, lab) in enumerate(zip(images, labels)):
            Image.fromarray(img).save(out / split / CLASSES[lab] / f"{n:05d}.png")
        print(f"{split}: {len(images)} images")


if __name__ == "__main__":
    main(Path(sys.argv[1]))
