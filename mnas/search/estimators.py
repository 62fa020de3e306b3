"""Accuracy estimators: `estimate(arch) -> accuracy on the proxy task's validation split` (the Estimator interface).

The proxy is a classification dataset at a small resolution (32x32 by default), while latency is always predicted
at the arch's deployment shape (224x224x3, 1000 classes).

`train`: a short stand-alone training of each candidate from scratch (small searches, and the reference the
supernet estimator is checked against).

`supernet`: a candidate's accuracy is its sub-network's, with BatchNorm statistics re-estimated.

The supernet is trained once per (space, data, settings) and cached (mnas.supernet.train); afterwards a
candidate costs an extraction (a copy of sliced weights), ~1000 training images through the network to
re-estimate BatchNorm's running mean/var (during training they averaged over every sub-network, so they fit
none), and a pass over a fixed, seeded subset of the validation split (`val_images`: fewer is faster and
noisier; the same images for every candidate).

`finetune_steps` > 0 trains each candidate's extracted sub-network that many SGD steps (seeded, the same batches
for every candidate; peak lr `finetune_lr`, cosine) before BatchNorm re-estimation and scoring: the short
fine-tune of inherited weights that one-shot NAS studies use to make weight-sharing estimates rank more like
stand-alone training, at the cost of those steps per candidate. The supernet's own weights are not touched.
"""
from __future__ import annotations

import abc
import dataclasses

import torch
from torch import nn

from mnas.data import Dataset, batches
from mnas.errors import UserError
from mnas.nn.arch import ArchConfig
from mnas.nn.models import build
from mnas.nn.proxy import proxy_arch
from mnas.nn.space import Space, load_space
from mnas.supernet.evaluate import correct, settings_from
from mnas.supernet.train import CACHE_DIR, load_or_train
from mnas.train import device_of, fit, reestimate_bn, train_from_scratch


class Estimator(abc.ABC):
    """arch -> validation accuracy on the proxy task; start_model(arch) -> the proxy network the search's pipeline
    fine-tunes (`weights` names where its weights come from); correct(arch) -> the per-image results that
    accuracy is the mean of, when the estimator has them (the search's final choice compares trials paired on
    them)."""
    weights: str

    @abc.abstractmethod
    def __call__(self, arch: ArchConfig) -> float: ...

    @abc.abstractmethod
    def start_model(self, arch: ArchConfig) -> nn.Module: ...

    def correct(self, arch: ArchConfig) -> torch.Tensor | None:
        """1.0/0.0 per validation image (the same images, in the same order, for every arch), or None."""
        return None

    def score_slimming(self, arch: ArchConfig, start: ArchConfig) -> float | None:
        """The accuracy of `arch`, which has the layers of `start` (an arch of the space) with no more channels in
        any, on the images every trial is scored on; None when this estimator cannot score it so."""
        return None


class TrainEstimator(Estimator):
    """Trains `build(arch)` for `epochs` (or `max_steps`) on data.train, returns data.val accuracy."""
    weights = "scratch"

    def __init__(self, data: Dataset, epochs: int = 1, max_steps: int | None = None, batch_size: int = 128,
                 lr: float = 0.1, resolution: int = 32, seed: int = 0, threads: int | None = None,
                 progress: bool = False, max_stride: int = 8):
        self.data, self.max_stride, self.seed = data, max_stride, seed
        self.kw = dict(epochs=epochs, max_steps=max_steps, batch_size=batch_size, lr=lr, resolution=resolution,
                       threads=threads, progress=progress)

    def proxy_arch(self, arch: ArchConfig) -> ArchConfig:
        """The arch as trained on the proxy (mnas.nn.proxy): same layers, fewer early strides, the proxy's classes."""
        return proxy_arch(arch, self.data.num_classes, self.max_stride)

    def __call__(self, arch: ArchConfig) -> float:
        return train_from_scratch(arch, self.data, self.max_stride, self.seed, **self.kw)[1]["val_acc"]

    def start_model(self, arch: ArchConfig, start: ArchConfig | None = None) -> nn.Module:
        return build(self.proxy_arch(arch))


class SupernetEstimator(Estimator):
    """arch -> validation accuracy of its sub-network of the (cached or now trained) supernet of `space`."""
    weights = "supernet"

    def __init__(self, data: Dataset, space: Space | str = "v3_small", resolution: int = 32, seed: int = 0,
                 val_images: int | None = None, calib_images: int = 1024, eval_batch: int = 256,
                 threads: int | None = None, progress: bool = True, cache_dir=CACHE_DIR, checkpoint_every: int = 100,
                 device=None, finetune_steps: int = 0, finetune_lr: float = 0.02, finetune_batch: int = 128,
                 supernet_seed: int | None = None, **schedule):
        if calib_images < 1 or (val_images is not None and val_images < 1):
            raise UserError(f"calib_images={calib_images}, val_images={val_images}: use positive counts "
                            f"(val_images null = the whole validation split)")
        if finetune_steps < 0 or finetune_batch < 1 or not finetune_lr > 0:
            raise UserError(f"finetune_steps={finetune_steps}, finetune_batch={finetune_batch}, finetune_lr="
                            f"{finetune_lr}: use steps >= 0 (0 = no fine-tune), a positive batch and lr")
        if threads:
            torch.set_num_threads(threads)
        self.space = load_space(space) if isinstance(space, str) else space
        # seed picks the calibration and validation images; supernet_seed (default: seed) the supernet's training
        self.settings = settings_from(resolution, seed if supernet_seed is None else supernet_seed, **schedule)
        self.supernet = load_or_train(self.space, data, self.settings, cache_dir, progress, checkpoint_every, device)
        dev, fmt = next(self.supernet.parameters()).device, torch.channels_last
        feed = batches(data.train, min(calib_images, 128), resolution, shuffle=True, seed=seed)  # 8 batches by default
        n = -(-calib_images // feed.batch_size)
        self.calib = [x.to(dev, memory_format=fmt) for _, (x, _) in zip(range(n), feed)]
        val = data.val
        if val_images is not None and val_images < len(val):
            val = val.take(torch.randperm(len(val), generator=torch.Generator().manual_seed(seed))[:val_images])
        self.val = [(x.to(dev, memory_format=fmt), y.to(dev)) for x, y in batches(val, eval_batch, resolution)]
        self.finetune = {"steps": finetune_steps, "lr": finetune_lr, "batch_size": finetune_batch}
        self.finetune_data = dataclasses.replace(data, val=val)  # fit() scores on the same images
        self.resolution, self.seed = resolution, seed
        self.scores: dict[ArchConfig, float] = {}
        self.vectors: dict[ArchConfig, torch.Tensor] = {}

    def start_model(self, arch: ArchConfig, start: ArchConfig | None = None) -> nn.Module:
        """The arch's sub-network; with `start` (an arch of the space that `arch` slims, e.g. a derived fill's:
        mnas.search.derive), the first channels of start's sub-network, as score_slimming scores it."""
        if start is None:
            return self.extract(arch)
        model = self.supernet.slimmings(start).extract(arch)
        return reestimate_bn(model.to(memory_format=torch.channels_last), self.calib)

    def extract(self, arch: ArchConfig) -> nn.Module:
        """The arch's sub-network as an ordinary model (build(proxy arch)), BatchNorm re-estimated, eval mode."""
        return reestimate_bn(self.supernet.extract(arch).to(memory_format=torch.channels_last), self.calib)

    def fine_tuned(self, arch: ArchConfig) -> float:
        """Validation accuracy of the arch's sub-network after `finetune_steps` steps (on the supernet's device;
        BatchNorm re-estimated by fit on 1024 training images before the evaluation)."""
        f = self.finetune
        model = self.supernet.extract(arch)
        return fit(model, self.finetune_data, epochs=None, max_steps=f["steps"], batch_size=f["batch_size"],
                   lr=f["lr"], resolution=self.resolution, seed=self.seed, progress=False,
                   device=device_of(model))["val_acc"]

    def correct(self, arch: ArchConfig) -> torch.Tensor | None:
        """The sub-network's right/wrong per validation image (kept: 10k floats per arch); None with a fine-tune,
        whose accuracy comes from fit's evaluation."""
        if self.finetune["steps"]:
            return None
        if arch not in self.vectors:
            self.vectors[arch] = correct(self.extract(arch), self.val)
        return self.vectors[arch]

    def score_slimming(self, arch: ArchConfig, start: ArchConfig) -> float | None:
        """`arch` as a slimming of `start` (the first channels of start's sub-network, as one-shot NetAdapt scores
        its proposals), BatchNorm re-estimated, on the trials' validation images: how a hand design between the
        space's width choices (a width multiplier that fills the budget) is scored beside them. None when start is
        not in the space, arch is not a slimming of it, or candidates are fine-tuned (it would not be scored alike)."""
        if self.finetune["steps"]:
            return None
        try:
            model = self.supernet.slimmings(start).extract(arch)
        except UserError:
            return None
        return _mean(correct(reestimate_bn(model.to(memory_format=torch.channels_last), self.calib), self.val))

    def __call__(self, arch: ArchConfig) -> float:
        if arch not in self.scores:  # deterministic: a repeated candidate (a re-proposed trial) costs nothing
            self.scores[arch] = self.fine_tuned(arch) if self.finetune["steps"] else _mean(self.correct(arch))
        return self.scores[arch]


def _mean(v: torch.Tensor) -> float:
    return v.sum().item() / len(v)  # exact: the count of right images over their number


ESTIMATORS = {"train": TrainEstimator, "supernet": SupernetEstimator}


def make_estimator(name: str, data: Dataset, **options) -> Estimator:
    if name not in ESTIMATORS:
        raise UserError(f"unknown estimator {name!r}: available {', '.join(ESTIMATORS)}")
    return ESTIMATORS[name](data, **options)
