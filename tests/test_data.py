"""Tests for mnas.data: loaders on tiny hand-written fixtures, the validation carve-out, and batches."""
import gzip
import os
import pickle
import struct

import numpy as np
import pytest
import torch
from PIL import Image

from mnas import data
from mnas.errors import UserError


def unique_images(n, c, h, w):
    """n blocky random images that differ from each other (image i has pixel 0 = i): splits compare by content."""
    x = np.random.default_rng(0).integers(0, 256, (n, c, h // 4, w // 4), dtype=np.uint8).repeat(4, 2).repeat(4, 3)
    x[:, 0, 0, 0] = np.arange(n)
    return x


def write_idx(path, array, magic):
    with gzip.open(path, "wb") as f:
        f.write(struct.pack(">I", magic) + struct.pack(f">{array.ndim}I", *array.shape) + array.tobytes())


@pytest.fixture
def fmnist_root(tmp_path):
    for prefix, n in (("train", 50), ("t10k", 20)):
        write_idx(tmp_path / f"{prefix}-images-idx3-ubyte.gz", unique_images(n, 1, 28, 28)[:, 0], 0x803)
        write_idx(tmp_path / f"{prefix}-labels-idx1-ubyte.gz", np.arange(n, dtype=np.uint8) % 10, 0x801)
    return tmp_path


def test_fashion_mnist_shapes_and_classes(fmnist_root):
    d = data.load("fashion_mnist", root=str(fmnist_root), val_size=10)
    assert (len(d.train), len(d.val), len(d.test)) == (40, 10, 20)
    assert d.train.images.shape == (40, 1, 28, 28) and d.train.images.dtype == torch.uint8
    assert d.train.labels.dtype == torch.int64
    assert d.num_classes == 10 and d.classes[0] == "T-shirt/top" and d.classes[9] == "Ankle boot"
    assert d.test.labels.tolist() == [i % 10 for i in range(20)]


def test_val_split_is_seeded_and_disjoint(fmnist_root):
    a = data.load("fashion_mnist", root=str(fmnist_root), val_size=0.2, seed=3)
    b = data.load("fashion_mnist", root=str(fmnist_root), val_size=0.2, seed=3)
    c = data.load("fashion_mnist", root=str(fmnist_root), val_size=0.2, seed=4)
    ids = lambda s: s.images[:, 0, 0, 0].tolist()  # noqa: E731 - the unique id written into each image
    assert ids(a.val) == ids(b.val) and ids(a.train) == ids(b.train)
    assert ids(a.val) != ids(c.val)
    assert len(a.val) == 10 and not set(ids(a.val)) & set(ids(a.train))
    assert sorted(ids(a.val) + ids(a.train)) == list(range(50))


def test_train_subset(fmnist_root):
    d = data.load("fashion_mnist", root=str(fmnist_root), val_size=10, train_subset=15)
    assert len(d.train) == 15 and len(d.val) == 10


def test_truncated_gz_names_the_path(fmnist_root):
    path = fmnist_root / "train-images-idx3-ubyte.gz"
    path.write_bytes(path.read_bytes()[:200])
    with pytest.raises(UserError, match="train-images-idx3-ubyte.gz.*truncated or corrupt"):
        data.load("fashion_mnist", root=str(fmnist_root))


def test_wrong_magic_number(fmnist_root):
    write_idx(fmnist_root / "t10k-labels-idx1-ubyte.gz", np.zeros(20, np.uint8), 0x803)
    with pytest.raises(UserError, match="t10k-labels.*not a valid IDX"):
        data.load("fashion_mnist", root=str(fmnist_root))


def test_missing_folder_says_apt_get(tmp_path):
    with pytest.raises(UserError, match="apt-get install dataset-fashion-mnist") as e:
        data.load("fashion_mnist", root=str(tmp_path / "nowhere"))
    assert str(tmp_path / "nowhere") in str(e.value) and "\n" not in str(e.value)


def test_unknown_name_lists_names():
    with pytest.raises(UserError, match="unknown dataset 'mnist'") as e:
        data.load("mnist")
    assert all(name in str(e.value) for name in data.LOADERS) and len(data.LOADERS) >= 4


def test_digits():
    d = data.load("digits")
    assert d.num_classes == 10 and len(d.train) + len(d.val) + len(d.test) == 1797
    assert d.train.images.shape[1:] == (1, 8, 8) and d.train.images.max() == 255
    assert abs(len(d.test) - 0.2 * 1797) < 1
    with pytest.raises(UserError, match="takes no folder"):
        data.load("digits", root="/somewhere")


@pytest.fixture
def cifar_root(tmp_path):
    x = unique_images(60, 3, 32, 32).reshape(60, 3072)
    for i in range(5):
        batch = {b"data": x[i * 10:(i + 1) * 10], b"labels": list(range(10)), b"batch_label": b"training batch"}
        (tmp_path / f"data_batch_{i + 1}").write_bytes(pickle.dumps(batch, protocol=2))
    (tmp_path / "test_batch").write_bytes(pickle.dumps({b"data": x[50:], b"labels": list(range(10))}))
    names = [b"airplane", b"automobile", b"bird", b"cat", b"deer", b"dog", b"frog", b"horse", b"ship", b"truck"]
    (tmp_path / "batches.meta").write_bytes(pickle.dumps({b"label_names": names}))
    return tmp_path


def test_cifar10(cifar_root):
    d = data.load("cifar10", root=str(cifar_root), val_size=5)
    assert (len(d.train), len(d.val), len(d.test)) == (45, 5, 10)
    assert d.train.images.shape[1:] == (3, 32, 32) and d.train.images.dtype == torch.uint8
    assert d.classes[1] == "automobile" and d.num_classes == 10
    assert d.test.images[:, 0, 0, 0].tolist() == list(range(50, 60))


def test_cifar10_refuses_pickled_code(cifar_root):
    (cifar_root / "test_batch").write_bytes(pickle.dumps({b"data": os.system, b"labels": []}))
    with pytest.raises(UserError, match="test_batch.*refusing to load"):
        data.load("cifar10", root=str(cifar_root))


def write_png(path, rgb):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (20, 12), rgb).save(path)


def test_imagefolder_carves_test(tmp_path):
    for c, rgb in (("cat", (255, 0, 0)), ("dog", (0, 0, 255))):
        for i in range(10):
            write_png(tmp_path / c / f"{i}.png", rgb)
    d = data.load("imagefolder", root=str(tmp_path), val_size=2, image_size=16)
    assert d.classes == ["cat", "dog"] and d.num_classes == 2
    assert (len(d.train), len(d.val), len(d.test)) == (14, 2, 4)
    assert d.train.images.shape[1:] == (3, 16, 16)
    red = d.train.images[:, 0, 8, 8] > 128  # cat images are red, dog images are blue
    assert red.tolist() == (d.train.labels == 0).tolist()


def test_imagefolder_train_test_folders(tmp_path):
    for split, n in (("train", 6), ("test", 3)):
        for c in ("a", "b", "c"):
            for i in range(n):
                write_png(tmp_path / split / c / f"{i}.png", (i * 20, 0, 0))
    d = data.load("imagefolder", root=str(tmp_path), val_size=3)
    assert d.classes == ["a", "b", "c"] and (len(d.train), len(d.val), len(d.test)) == (15, 3, 9)
    assert d.test.images.shape[1:] == (3, 64, 64)


def test_imagefolder_corrupt_image(tmp_path):
    write_png(tmp_path / "a" / "0.png", (0, 0, 0))
    (tmp_path / "a" / "1.png").write_bytes(b"not a png")
    with pytest.raises(UserError, match="1.png"):
        data.load("imagefolder", root=str(tmp_path))


def test_batches_shape_and_normalisation(fmnist_root):
    d = data.load("fashion_mnist", root=str(fmnist_root), val_size=10)
    b = data.batches(d.train, batch_size=16, resolution=32)
    xs = list(b)
    assert len(b) == len(xs) == 3
    x, y = xs[0]
    assert x.shape == (16, 3, 32, 32) and x.dtype == torch.float32 and y.dtype == torch.int64
    assert xs[-1][0].shape[0] == 8
    allx = torch.cat([x for x, _ in xs])
    assert abs(allx.mean()) < 0.2 and 0.8 < allx.std() < 1.2
    assert torch.equal(x[:, 0], x[:, 2])  # grayscale repeated to 3 channels


def test_batches_shrink_and_one_channel(fmnist_root):
    d = data.load("fashion_mnist", root=str(fmnist_root), val_size=10)
    x, _ = next(iter(data.batches(d.val, batch_size=4, resolution=14, channels=1)))
    assert x.shape == (4, 1, 14, 14)


def test_batches_shuffle_changes_per_epoch_and_is_seeded(fmnist_root):
    d = data.load("fashion_mnist", root=str(fmnist_root), val_size=10)
    labels = lambda b: torch.cat([y for _, y in b]).tolist()  # noqa: E731
    b = data.batches(d.train, batch_size=8, shuffle=True, seed=1)
    e0, e1 = labels(b), labels(b)
    assert e0 != e1 and sorted(e0) == sorted(e1) == sorted(d.train.labels.tolist())
    assert labels(data.batches(d.train, batch_size=8, shuffle=True, seed=1)) == e0
    assert labels(data.batches(d.train, batch_size=8, shuffle=False)) == d.train.labels.tolist()
    assert len(data.batches(d.train, batch_size=16, drop_last=True)) == 2


def test_augment_is_seeded_and_changes_pixels(fmnist_root):
    d = data.load("fashion_mnist", root=str(fmnist_root), val_size=10)
    first = lambda **kw: next(iter(data.batches(d.train, batch_size=40, resolution=32, **kw)))[0]  # noqa: E731
    plain, a1, a2 = first(), first(augment=True, seed=5), first(augment=True, seed=5)
    assert a1.shape == plain.shape and torch.equal(a1, a2)
    assert not torch.equal(a1, plain)
    assert not torch.equal(a1, first(augment=True, seed=6))


def test_val_size_too_large(fmnist_root):
    with pytest.raises(UserError, match="val_size"):
        data.load("fashion_mnist", root=str(fmnist_root), val_size=50)
