"""Scoring helpers of the supernet estimator (mnas.search.estimators.SupernetEstimator): per-image correctness over
prepared batches, and SupernetSettings from config keys."""
from __future__ import annotations

import dataclasses

import torch
from torch import nn

from mnas.errors import UserError
from mnas.supernet.train import SupernetSettings

SCHEDULE_KEYS = [f.name for f in dataclasses.fields(SupernetSettings) if f.name not in ("resolution", "seed")]
FINETUNE_KEYS = ("finetune_steps", "finetune_lr", "finetune_batch")  # SupernetEstimator's scoring options


@torch.inference_mode()
def correct(model: nn.Module, val) -> torch.Tensor:
    """1.0 where `model` classifies the image right, else 0.0: one float per image of the (x, y) batches val, in
    their order (on the CPU). Two models' vectors on the same images give a paired comparison."""
    model.eval()
    return torch.cat([(model(x).argmax(1) == y).float().cpu() for x, y in val])


def settings_from(resolution: int = 32, seed: int = 0, **schedule) -> SupernetSettings:
    """SupernetSettings from config keys; an unknown key is a UserError listing the known ones."""
    if unknown := set(schedule) - set(SCHEDULE_KEYS):
        raise UserError(f"unknown supernet option(s) {sorted(unknown)}: allowed {', '.join(SCHEDULE_KEYS)}")
    return SupernetSettings(resolution=resolution, seed=seed, **schedule)
