"""Datasets as uint8 images (in memory, or for an image folder decoded once into a file on disk and read batch by
batch), served as normalised float batches at a proxy or deployment resolution."""
import gzip
import hashlib
import json
import math
import os
import pickle
import zlib
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from mnas.errors import UserError


@dataclass
class Split:
    images: torch.Tensor  # uint8, N x C x H x W
    labels: torch.Tensor  # int64, N
    mean: tuple = (0.5,)  # per stored channel, in [0, 1]; load() sets both from the training split
    std: tuple = (0.25,)

    def __len__(self):
        return len(self.labels)

    def take(self, idx):
        images = self.images.subset(idx) if isinstance(self.images, DiskImages) else self.images[idx]
        return Split(images, self.labels[idx], self.mean, self.std)


class DiskImages:
    """uint8 images (N x C x H x W) in a file (a numpy memmap), read when indexed: an image set larger than memory,
    and decoded once for every later run. `images[idx]` (tensor, slice) is a uint8 tensor; subset(idx) a view."""

    def __init__(self, path, shape, index=None):
        self.path, self.full = str(path), tuple(shape)
        self.index = torch.arange(self.full[0]) if index is None else index
        self._mm = None

    @property
    def shape(self):
        return (len(self.index),) + self.full[1:]

    def __len__(self):
        return len(self.index)

    def __getitem__(self, idx):
        if self._mm is None:
            self._mm = np.memmap(self.path, np.uint8, "r", shape=self.full)
        return torch.from_numpy(np.array(self._mm[self.index[idx].reshape(-1).numpy()]))

    def subset(self, idx):
        return DiskImages(self.path, self.full, self.index[idx])

    def __getstate__(self):  # a worker process maps the file itself
        return dict(self.__dict__, _mm=None)

    def digest(self) -> bytes:
        """Identifies the images: the file (its name is a hash of the folder listing and size) and the view."""
        return f"{os.path.basename(self.path)} {os.path.getsize(self.path)}".encode() + self.index.numpy().tobytes()


@dataclass
class Dataset:
    name: str
    train: Split
    val: Split
    test: Split
    num_classes: int
    classes: list


# ---------------------------------------------------------------------------------------------- loaders
# Each loader returns (train Split, test Split, class names); load() carves the validation split.

FMNIST_CLASSES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
                  "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"]
FMNIST_FIX = ("install it with 'sudo apt-get install dataset-fashion-mnist' "
              "or pass data.root=<folder with the IDX .gz files>")


def _read_idx(path, magic):
    """One gzipped IDX file (LeCun's MNIST format) as a numpy array; `magic` is 0x801 (labels) or 0x803."""
    if not os.path.isfile(path):
        raise UserError(f"Fashion-MNIST not found at {path}: {FMNIST_FIX}")
    try:
        with gzip.open(path, "rb") as f:
            raw = f.read()
    except (OSError, EOFError, zlib.error) as e:
        raise UserError(f"Fashion-MNIST file {path} is truncated or corrupt ({e}): {FMNIST_FIX}") from None
    n = 4 + 4 * (magic & 0xFF)  # the magic number, then one big-endian uint32 per dimension
    head = np.frombuffer(raw[:n], ">u4") if len(raw) >= n else None
    if head is None or head[0] != magic or len(raw) != n + int(np.prod(head[1:])):
        raise UserError(f"Fashion-MNIST file {path} is not a valid IDX file (bad magic number or size): {FMNIST_FIX}")
    return np.frombuffer(raw, np.uint8, offset=n).reshape(head[1:].astype(int))


def load_fashion_mnist(root="/usr/share/datasets/fashion-mnist"):
    def split(prefix):
        x = _read_idx(os.path.join(root, f"{prefix}-images-idx3-ubyte.gz"), 0x803)
        y = _read_idx(os.path.join(root, f"{prefix}-labels-idx1-ubyte.gz"), 0x801)
        if len(x) != len(y):
            raise UserError(f"Fashion-MNIST in {root}: {len(x)} {prefix} images but {len(y)} labels: {FMNIST_FIX}")
        return Split(torch.from_numpy(x.copy()).unsqueeze(1), torch.from_numpy(y.astype(np.int64)))
    return split("train"), split("t10k"), FMNIST_CLASSES


def load_digits(root=None):
    """scikit-learn's bundled 8x8 digits (1797 images): tiny, for tests."""
    if root is not None:
        raise UserError(f"digits ships with scikit-learn and takes no folder: leave data.root unset (got {root})")
    from sklearn.datasets import load_digits as sk_digits
    d = sk_digits()
    x = torch.from_numpy(np.round(d.images * (255 / 16)).astype(np.uint8)).unsqueeze(1)
    train, test = carve(Split(x, torch.from_numpy(d.target.astype(np.int64))), 0.2, seed=0)
    return train, test, [str(c) for c in range(10)]


class _ArraysOnly(pickle.Unpickler):
    """Unpickles the CIFAR batches (dicts, lists, numpy arrays) and refuses anything else."""
    ALLOWED = {("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
               ("numpy", "ndarray"), ("numpy", "dtype"), ("_codecs", "encode")}

    def find_class(self, module, name):
        if (module, name) not in self.ALLOWED:
            raise pickle.UnpicklingError(f"refusing to load {module}.{name}")
        return super().find_class(module, name)


def _read_cifar(path):
    fix = "pass data.root=<the 'cifar-10-batches-py' folder from https://www.cs.toronto.edu/~kriz/cifar.html>"
    if not os.path.isfile(path):
        raise UserError(f"CIFAR-10 file not found: {path}: {fix}")
    try:
        with open(path, "rb") as f:
            return _ArraysOnly(f, encoding="bytes").load()
    except Exception as e:  # any of a dozen unpickling errors: the message is what matters
        raise UserError(f"CIFAR-10 file {path} is truncated or corrupt ({e}): {fix}") from None


def load_cifar10(root="data/cifar-10-batches-py"):
    """The CIFAR-10 "python version" folder. Pickles are restricted to plain data and arrays, but still:
    only pass folders you trust."""
    def split(names):
        batches = [_read_cifar(os.path.join(root, n)) for n in names]
        x = np.concatenate([np.asarray(b[b"data"], np.uint8) for b in batches]).reshape(-1, 3, 32, 32)
        y = np.concatenate([np.asarray(b[b"labels"], np.int64) for b in batches])
        return Split(torch.from_numpy(x), torch.from_numpy(y))
    meta = _read_cifar(os.path.join(root, "batches.meta"))
    classes = [c.decode() for c in meta[b"label_names"]]
    return split([f"data_batch_{i}" for i in range(1, 6)]), split(["test_batch"]), classes


IMAGE_EXTS = (".png", ".jpg", ".jpeg", ".bmp", ".webp")


def read_image(path, image_size):
    """An image file as uint8 RGB, 3 x image_size x image_size (bilinear, aspect not kept): how an image folder is
    stored, and the first step of preparing an image for an exported model (prepare_image)."""
    from PIL import Image
    try:
        with Image.open(path) as im:
            im = im.convert("RGB").resize((image_size, image_size), Image.BILINEAR)
    except OSError as e:
        raise UserError(f"cannot read image {path} ({e}): fix or remove it") from None
    return np.ascontiguousarray(np.asarray(im).transpose(2, 0, 1))


def prepare_image(path, preprocess: dict) -> np.ndarray:
    """An image file as an exported network's input (1 x 3 x res x res float32), prepared exactly as the trainer
    evaluated its test split: `preprocess` is export.json's (or a trained checkpoint's) record of it: stored
    side `image_size`, central `crop` of each side, `resolution`, per-channel `mean` and `std` of [0, 1] values."""
    missing = {"image_size", "crop", "resolution", "mean", "std"} - set(preprocess or {})
    if missing:
        raise UserError(f"the preprocessing record lacks {sorted(missing)}: re-export a run trained by "
                        "python -m mnas.train (runs trained before 2026-12-07 did not record it)")
    img = torch.from_numpy(read_image(path, preprocess["image_size"]))[None]
    split = Split(img, torch.zeros(1, dtype=torch.int64), tuple(preprocess["mean"]), tuple(preprocess["std"]))
    x, _ = next(iter(batches(split, 1, preprocess["resolution"], channels=3, crop=preprocess["crop"])))
    return x.numpy()


def _read_folder(root, classes, image_size, cache_dir=None):
    """The images of root/<class>/ as a Split, RGB at image_size; with cache_dir, decoded once into
    cache_dir/imagefolder-<hash of the listing, file sizes and times, image_size>.u8 and read from there."""
    files = []
    for label, c in enumerate(classes):
        folder = os.path.join(root, c)
        names = os.listdir(folder) if os.path.isdir(folder) else []  # a test split may lack a class
        files += [(os.path.join(folder, f), label) for f in sorted(f for f in names if f.lower().endswith(IMAGE_EXTS))]
    if not files:
        raise UserError(f"no images in {root}: expected {root}/<class>/<image>.png|jpg")
    labels = torch.tensor([y for _, y in files], dtype=torch.int64)
    shape = (len(files), 3, image_size, image_size)

    if cache_dir is None:
        return Split(torch.from_numpy(np.stack([read_image(f, image_size) for f, _ in files])), labels)
    listing = [(os.path.relpath(f, root), y, st.st_size, st.st_mtime_ns) for f, y in files for st in [os.stat(f)]]
    key = hashlib.blake2b(json.dumps([os.path.abspath(root), image_size, listing]).encode(), digest_size=8)
    path = os.path.join(cache_dir, f"imagefolder-{key.hexdigest()}.u8")
    if not os.path.exists(path):
        from tqdm import tqdm
        tmp = f"{path}.{os.getpid()}.tmp"
        try:
            os.makedirs(cache_dir, exist_ok=True)
            out = np.memmap(tmp, np.uint8, "w+", shape=shape)
        except OSError as e:
            raise UserError(f"cannot write the decoded images to {cache_dir} ({e.strerror or e}): pass a writable "
                            "data.cache_dir, or data.cache_dir=null to decode into memory") from None
        for i, (f, _) in enumerate(tqdm(files, desc=f"decoding {root} once into {path}", unit="img",
                                        disable=len(files) < 1000)):
            out[i] = read_image(f, image_size)
        out.flush()
        del out
        os.replace(tmp, path)  # whole or absent: a killed decode starts again
    return Split(DiskImages(path, shape), labels)


def load_imagefolder(root=None, image_size=64, cache_dir=None):
    """root/<class>/<images>, or root/train/<class>/... plus root/test/ (or root/val/) as the test split.
    Images are stored RGB at image_size x image_size: in memory, or with cache_dir (e.g. runs/data) in a file
    there, decoded once and read batch by batch (a data set larger than memory; the page cache keeps it fast)."""
    if root is None or not os.path.isdir(root):
        raise UserError(f"image folder not found: {root}: pass data.root=<folder with one sub-folder per class>")
    test_dir = next((os.path.join(root, s) for s in ("test", "val") if os.path.isdir(os.path.join(root, s))), None)
    train_dir = os.path.join(root, "train") if test_dir and os.path.isdir(os.path.join(root, "train")) else root
    classes = sorted(d for d in os.listdir(train_dir) if os.path.isdir(os.path.join(train_dir, d)))
    if train_dir != root:
        extra = {d for d in os.listdir(test_dir) if os.path.isdir(os.path.join(test_dir, d))} - set(classes)
        if extra:
            raise UserError(f"{test_dir} has classes {sorted(extra)} that {train_dir} lacks: use the same folders")
        return (_read_folder(train_dir, classes, image_size, cache_dir),
                _read_folder(test_dir, classes, image_size, cache_dir), classes)
    train, test = carve(_read_folder(root, classes, image_size, cache_dir), 0.2, seed=0)
    return train, test, classes


# ---------------------------------------------------------------------------------------------- load
def carve(split, size, seed):
    """Deterministically split off `size` (a fraction or a count) random images: returns (rest, carved)."""
    n = round(size * len(split)) if isinstance(size, float) else int(size)
    if not 0 < n < len(split):
        raise UserError(f"cannot carve {size} of {len(split)} images off as a split: use a val_size that is a "
                        f"fraction in (0, 1) or a count in 1..{len(split) - 1} (or more images)")
    perm = torch.randperm(len(split), generator=torch.Generator().manual_seed(seed))
    return split.take(perm[n:].sort().values), split.take(perm[:n].sort().values)


def mean_std(images):
    """Per-channel mean and std in [0, 1], from up to ~2000 evenly spaced images (plenty for normalising)."""
    x = images[::max(1, len(images) // 2000)].float().div_(255).transpose(0, 1).flatten(1)
    return tuple(x.mean(1).tolist()), tuple(x.std(1).clamp_min(1e-3).tolist())


# ---------------------------------------------------------------------------------------------- batches
AUGMENT = (False, True, "none", "crop", "rrc")  # False/none | True/crop: pad, crop, flip | rrc: resized crop, flip


class batches:
    """Re-iterable batches of (x float32 N x channels x res x res, normalised; y int64). Each pass over it
    is a new epoch with a new shuffle and augmentation, derived from (seed, epoch).

    augment: False (none), True or "crop" (reflect-pad by res/8, random crop, horizontal flip: the proxy
    recipe) or "rrc" (a random crop of 25-100% of the stored image's area at aspect 3/4-4/3, resized to res,
    and a horizontal flip: the usual recipe for training a network at its deployment resolution).
    crop < 1 (evaluation of such a network): the central `crop` of each side, resized to res (0.875: the usual
    "resize to 256, centre-crop 224"; images stored at 8/7 of res are cropped to exactly res, no resampling)."""

    def __init__(self, split, batch_size, resolution=32, shuffle=False, augment=False, seed=0, channels=3,
                 drop_last=False, crop=1.0):
        stored = split.images.shape[1]  # 1 -> any count by repetition; any count -> 1 by averaging
        if not (stored == channels or stored == 1 or channels == 1):
            raise UserError(f"cannot serve {stored}-channel images as {channels} channels: use 1 or {stored}")
        if augment not in AUGMENT:
            raise UserError(f"augment={augment!r} is invalid: use none, crop or rrc")
        augment = {"none": False, "crop": True}.get(augment, augment) if isinstance(augment, str) else augment
        if not 0 < crop <= 1:
            raise UserError(f"crop={crop!r} is invalid: use a fraction of the image side in (0, 1]")
        self.crop = crop
        self.split, self.batch_size, self.resolution, self.channels = split, batch_size, resolution, channels
        self.shuffle, self.augment, self.seed, self.drop_last = shuffle, augment, seed, drop_last
        self.epoch = 0

    def __len__(self):
        n = len(self.split) / self.batch_size
        return math.floor(n) if self.drop_last else math.ceil(n)

    def __iter__(self):
        g = torch.Generator().manual_seed(int(np.random.SeedSequence([self.seed, self.epoch]).generate_state(1)[0]))
        self.epoch += 1
        order = torch.randperm(len(self.split), generator=g) if self.shuffle else torch.arange(len(self.split))
        mean = torch.tensor(self.split.mean).view(1, -1, 1, 1)
        std = torch.tensor(self.split.std).view(1, -1, 1, 1)
        for i in range(len(self)):
            idx = order[i * self.batch_size:(i + 1) * self.batch_size]
            x = (self.split.images[idx].float().div_(255) - mean) / std
            if self.augment == "rrc":
                x = resized_crop_flip(x, self.resolution, g)
            else:
                if self.crop < 1:
                    h, w = x.shape[-2:]
                    ch, cw = max(1, round(h * self.crop)), max(1, round(w * self.crop))
                    x = x[..., (h - ch) // 2:(h - ch) // 2 + ch, (w - cw) // 2:(w - cw) // 2 + cw]
                if x.shape[-1] != self.resolution or x.shape[-2] != self.resolution:
                    x = F.interpolate(x, size=(self.resolution, self.resolution), mode="bilinear",
                                      align_corners=False, antialias=self.resolution < x.shape[-1])
                if self.augment:
                    x = _crop_flip(x, self.resolution // 8, g)
            if x.shape[1] != self.channels:
                x = x.expand(-1, self.channels, -1, -1) if x.shape[1] == 1 else x.mean(1, keepdim=True)
            yield x.contiguous(), self.split.labels[idx]


def _crop_flip(x, pad, g):
    """Random crop after reflect padding by `pad`, then random horizontal flip; one draw per image."""
    n, c, h, w = x.shape
    if pad > 0:
        xp = F.pad(x, (pad, pad, pad, pad), mode="reflect")
        dy, dx = torch.randint(0, 2 * pad + 1, (2, n, 1), generator=g)
        rows = (dy + torch.arange(h))[:, None, :, None]
        cols = (dx + torch.arange(w))[:, None, None, :]
        x = xp[torch.arange(n)[:, None, None, None], torch.arange(c)[None, :, None, None], rows, cols]
    flip = torch.rand(n, generator=g) < 0.5
    return torch.where(flip[:, None, None, None], x.flip(3), x)


def resized_crop_flip(x, out, g, scale=(0.25, 1.0), ratio=(3 / 4, 4 / 3)):
    """Random-resized crop and horizontal flip of each image of batch x, resampled (bilinear) to out x out in one
    grid_sample: per image a crop of `scale` of the area at an aspect ratio in `ratio` (log-uniform), clipped to
    the image, at a uniform position; one draw per image from generator g."""
    n = x.shape[0]
    area = torch.rand(n, generator=g) * (scale[1] - scale[0]) + scale[0]
    aspect = torch.exp(torch.rand(n, generator=g) * math.log(ratio[1] / ratio[0]) + math.log(ratio[0]))
    w, h = (area * aspect).sqrt().clamp(max=1.0), (area / aspect).sqrt().clamp(max=1.0)  # fractions of the sides
    cx, cy = (torch.rand(2, n, generator=g) * 2 - 1) * torch.stack([1 - w, 1 - h])  # centre, in [-1, 1] units
    flip = torch.where(torch.rand(n, generator=g) < 0.5, -1.0, 1.0)
    theta = torch.zeros(n, 2, 3)
    theta[:, 0, 0], theta[:, 0, 2], theta[:, 1, 1], theta[:, 1, 2] = w * flip, cx, h, cy
    grid = F.affine_grid(theta, [n, x.shape[1], out, out], align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)
