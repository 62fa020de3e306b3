"""Once-for-all accuracy estimation: one weight-sharing supernet per (space, dataset, proxy, schedule), trained once
with the sandwich rule and cached under runs/supernets/<hash>/, then every candidate is a sliced sub-network whose
BatchNorm statistics are re-estimated before it is scored (seconds instead of a training run each: the estimator
is mnas.search.estimators.SupernetEstimator).

    elastic    Supernet: elastic layers, set_active(arch), extract(arch) -> mnas.nn.models.build(proxy arch)
    slimmable  Slimming (one network's narrower widths, a space of them) and Slimmable (all of them in one network),
               trained the same way; scores one-shot NetAdapt's proposals (mnas.prune.oneshot)
    train      SupernetSettings, train_supernet (sandwich rule, in-place distillation, resumable, DDP), load_or_train
    evaluate   correct (per-image results over prepared batches), settings_from (SupernetSettings from config keys)
"""
from mnas.supernet.elastic import Supernet
from mnas.supernet.train import SupernetSettings, load_or_train, train_supernet

__all__ = ["Supernet", "SupernetSettings", "load_or_train", "train_supernet"]
