"""Accuracy estimators: `estimate(arch) -> accuracy on the proxy task's validation split`.

`train`: a short stand-alone training of each candidate from scratch (small searches, and the reference the
supernet estimator is checked against). The proxy is a classification dataset at a small resolution (32x32 by
default), while latency is always predicted at the arch's deployment shape (224x224x3, 1000 classes).
"""
from mnas import data as datasets
from mnas.arch import ArchConfig
from mnas.errors import UserError
from mnas.models import build
from mnas.proxy import proxy_arch
from mnas.supernet.evaluate import SupernetEstimator
from mnas.train import fit


class TrainEstimator:
    """Trains `build(arch)` for `epochs` (or `max_steps`) on data.train, returns data.val accuracy."""

    def __init__(self, data: datasets.Dataset, epochs: int = 1, max_steps: int | None = None, batch_size: int = 128,
                 lr: float = 0.1, resolution: int = 32, seed: int = 0, threads: int | None = None,
                 progress: bool = False, max_stride: int = 8):
        self.data, self.resolution, self.max_stride = data, resolution, max_stride
        self.kw = dict(epochs=epochs, max_steps=max_steps, batch_size=batch_size, lr=lr, resolution=resolution,
                       seed=seed, threads=threads, progress=progress)

    def proxy_arch(self, arch: ArchConfig) -> ArchConfig:
        """The arch as trained on the proxy (mnas.proxy rule): same layers, fewer early strides, the proxy's classes."""
        return proxy_arch(arch, self.data.num_classes, self.max_stride)

    def __call__(self, arch: ArchConfig) -> float:
        return fit(build(self.proxy_arch(arch), seed=self.kw["seed"]), self.data, **self.kw)["val_acc"]


ESTIMATORS = {"train": TrainEstimator, "supernet": SupernetEstimator}


def make_estimator(name: str, data: datasets.Dataset, **options):
    if name not in ESTIMATORS:
        raise UserError(f"unknown estimator {name!r}: available {', '.join(ESTIMATORS)}")
    return ESTIMATORS[name](data, **options)
