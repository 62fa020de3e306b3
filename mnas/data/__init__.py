"""Data: datasets held in memory as uint8 tensors, served as normalised float batches at a proxy resolution.

    sets       Split, Dataset, the loaders of each raw dataset, batches (the training/evaluation feed)
    cluttered  cluttered Fashion-MNIST (fmnist_cluttered), the default proxy task, generated offline
    (here)     LOADERS (name -> loader), load (a Dataset with its validation carve-out), load_cached, config_args
"""
import json

import torch

from mnas.data.cluttered import load_fmnist_cluttered
from mnas.data.sets import (
    Dataset,
    Split,
    batches,
    carve,
    load_cifar10,
    load_digits,
    load_fashion_mnist,
    load_imagefolder,
    mean_std,
    prepare_image,
)
from mnas.errors import UserError

__all__ = ["LOADERS", "Dataset", "Split", "batches", "config_args", "load", "load_cached", "prepare_image"]

LOADERS = {"fashion_mnist": load_fashion_mnist, "digits": load_digits,
           "cifar10": load_cifar10, "imagefolder": load_imagefolder,
           "fmnist_cluttered": load_fmnist_cluttered}


def load(name, root=None, val_size=0.1, seed=0, train_subset=None, **options):
    """Load dataset `name` (a key of LOADERS). The validation split is a seeded carve-out of the training set;
    `train_subset` keeps that many (seeded, random) training images. `options` go to the loader
    (e.g. image_size=64 for imagefolder)."""
    if name not in LOADERS:
        raise UserError(f"unknown dataset {name!r}: choose one of {', '.join(sorted(LOADERS))}")
    train, test, classes = LOADERS[name](**({} if root is None else {"root": root}), **options)
    train, val = carve(train, val_size, seed)
    if train_subset is not None and train_subset < len(train):
        train = train.take(torch.randperm(len(train), generator=torch.Generator().manual_seed(seed))[:train_subset])
    mean, std = mean_std(train.images)
    for s in (train, val, test):
        s.mean, s.std = mean, std
    return Dataset(name, train, val, test, len(classes), list(classes))


_LOADED: dict = {}  # load_cached: this process's datasets, by their load() arguments


def config_args(d: dict, seed: int) -> dict:
    """load()'s arguments from a Hydra data group (conf/data/<name>.yaml) and the run's seed."""
    return dict(name=d["name"], root=d.get("root"), val_size=d.get("val_size", 0.1), seed=seed,
                train_subset=d.get("train_subset"), **({"image_size": d["image_size"]} if d.get("image_size") else {}),
                **({"cache_dir": d["cache_dir"]} if d.get("cache_dir") else {}))


def load_cached(name, **kw):
    """load(name, **kw), once per process for the same arguments (benchmarks train many runs on one dataset,
    in this process or in worker processes)."""
    key = json.dumps([name, kw], sort_keys=True, default=str)
    if key not in _LOADED:
        _LOADED[key] = load(name, **kw)
    return _LOADED[key]
