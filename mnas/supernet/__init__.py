"""Once-for-all accuracy estimation: one weight-sharing supernet per (space, dataset, proxy, schedule), trained once
with the sandwich rule and cached under runs/supernets/<hash>/, then every candidate is a sliced sub-network whose
BatchNorm statistics are re-estimated before it is scored (seconds instead of a training run each).

    elastic    Supernet: elastic layers, set_active(arch), extract(arch) -> mnas.models.build(proxy arch)
    train      SupernetSettings, train_supernet (sandwich rule, in-place distillation, resumable, DDP), load_or_train
    evaluate   SupernetEstimator (estimator=supernet), BatchNorm re-estimation, accuracy
    rank_check python -m mnas.supernet.rank_check: does the supernet rank archs as stand-alone training does?
"""
from mnas.supernet.elastic import Supernet
from mnas.supernet.evaluate import SupernetEstimator
from mnas.supernet.train import SupernetSettings, load_or_train, train_supernet

__all__ = ["Supernet", "SupernetEstimator", "SupernetSettings", "load_or_train", "train_supernet"]
