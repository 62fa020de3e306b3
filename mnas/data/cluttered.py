"""Cluttered Fashion-MNIST: a harder proxy task, generated offline and deterministically from the real images.

Each 28x28 Fashion-MNIST item is placed at a random position on a larger black canvas (64x64 by default), over
`pieces` random `piece_size` x `piece_size` crops of other items of the same split (the clutter), composed with
a pixel-wise maximum; the label is the placed item's. It follows the cluttered MNIST of Mnih et al. 2014
("Recurrent Models of Visual Attention") and Jaderberg et al. 2015 ("Spatial Transformer Networks"): the net
must find the item and tell it from fragments of others, so receptive field, kernel size and depth matter,
unlike on centred 28x28 items. The canvas is served at the proxy resolution by `mnas.data.batches` (64 -> 32
halves everything). Registered as `fmnist_cluttered` in `mnas.data.LOADERS`:

    data.load("fmnist_cluttered")                          # defaults below
    data.load("fmnist_cluttered", canvas=48, pieces=8)     # a variant (its own cache file)

Same parameters and source -> same bytes (numpy PCG64 seeded from `seed`, one stream per split); ~1 s for the
60k+10k images. The result is cached as runs/data/fmnist_cluttered-<hash of parameters and source>.npz.
"""
import hashlib
import json
import os

import numpy as np
import torch

from mnas.data.sets import Split, load_fashion_mnist
from mnas.errors import UserError

CACHE_DIR = os.path.join("runs", "data")


def _paste(canvas, patches, top, left):
    """canvas[i, top[i]:+h, left[i]:+w] = max(itself, patches[i]) for every i at once (N x H x W uint8)."""
    n, h, w = patches.shape
    rows = (top[:, None] + np.arange(h))[:, :, None]
    cols = (left[:, None] + np.arange(w))[:, None, :]
    idx = np.arange(n)[:, None, None], rows, cols
    canvas[idx] = np.maximum(canvas[idx], patches)


def clutter(images, canvas=64, pieces=4, piece_size=8, seed=0):
    """Place each of `images` (uint8 N x h x w, h, w <= canvas) at a uniformly random position on a
    canvas x canvas black image, over `pieces` random piece_size-square crops of *other* images of the array
    (uniform crop and paste positions). Returns (uint8 N x canvas x canvas, int64 N x 2 top-left corners of
    the placed items)."""
    images = np.asarray(images, np.uint8)
    n, h, w = images.shape
    if not (h <= canvas and w <= canvas and 0 < piece_size <= min(h, w) and pieces >= 0 and n >= 2):
        raise UserError(f"clutter: canvas={canvas}, piece_size={piece_size}, pieces={pieces} for {n} images of "
                        f"{h}x{w}: need canvas >= {max(h, w)}, 1 <= piece_size <= {min(h, w)}, pieces >= 0, "
                        "and at least 2 images")
    rng = np.random.Generator(np.random.PCG64(seed))
    out = np.zeros((n, canvas, canvas), np.uint8)
    s, span = piece_size, np.arange(piece_size)
    for _ in range(pieces):
        other = (np.arange(n) + rng.integers(1, n, n)) % n  # never the item itself
        y, x = rng.integers(0, h - s + 1, n), rng.integers(0, w - s + 1, n)
        crops = images[other[:, None, None], (y[:, None] + span)[:, :, None], (x[:, None] + span)[:, None, :]]
        _paste(out, crops, rng.integers(0, canvas - s + 1, n), rng.integers(0, canvas - s + 1, n))
    top, left = rng.integers(0, canvas - h + 1, n), rng.integers(0, canvas - w + 1, n)
    _paste(out, images, top, left)
    return out, np.stack([top, left], 1)


def cluttered_split(split, canvas, pieces, piece_size, seed):
    """A Split (N x 1 x h x w) cluttered onto canvas x canvas images; labels are kept."""
    x, _ = clutter(split.images[:, 0].numpy(), canvas, pieces, piece_size, seed)
    return Split(torch.from_numpy(x).unsqueeze(1), split.labels.clone())


def _digest(*splits):
    h = hashlib.sha1()
    for s in splits:
        h.update(s.images.numpy().tobytes())
        h.update(s.labels.numpy().tobytes())
    return h.hexdigest()[:12]


def load_fmnist_cluttered(root=None, canvas=64, pieces=4, piece_size=8, seed=0, cache_dir=CACHE_DIR):
    """Loader for mnas.data.load: Fashion-MNIST (from `root`, default Debian's folder) cluttered as above,
    training and test splits with independent streams of `seed`. Cached in cache_dir (None = no cache)."""
    train, test, classes = load_fashion_mnist(**({} if root is None else {"root": root}))
    params = dict(canvas=canvas, pieces=pieces, piece_size=piece_size, seed=seed)
    key = hashlib.sha1(json.dumps(dict(params, source=_digest(train, test)), sort_keys=True).encode()).hexdigest()
    path = cache_dir and os.path.join(cache_dir, f"fmnist_cluttered-{key[:12]}.npz")
    if path and os.path.isfile(path):
        with np.load(path) as f:
            return (Split(torch.from_numpy(f["train"]), train.labels), Split(torch.from_numpy(f["test"]), test.labels),
                    classes)
    seeds = np.random.SeedSequence(seed).generate_state(2)
    train, test = (cluttered_split(s, canvas, pieces, piece_size, int(k)) for s, k in zip((train, test), seeds))
    if path:
        os.makedirs(cache_dir, exist_ok=True)
        tmp = path + ".tmp.npz"
        np.savez(tmp, train=train.images.numpy(), test=test.images.numpy(), params=json.dumps(params))
        os.replace(tmp, path)
    return train, test, classes

