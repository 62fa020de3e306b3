"""Scoring helpers of the supernet estimator (mnas.search.estimators.SupernetEstimator): top-1 accuracy over
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
def accuracy(model: nn.Module, val) -> float:
    """Top-1 accuracy over the (x, y) batches val."""
    model.eval()
    correct = sum((model(x).argmax(1) == y).sum().item() for x, y in val)
    return correct / sum(len(y) for _, y in val)


def settings_from(resolution: int = 32, seed: int = 0, **schedule) -> SupernetSettings:
    """SupernetSettings from config keys; an unknown key is a UserError listing the known ones."""
    if unknown := set(schedule) - set(SCHEDULE_KEYS):
        raise UserError(f"unknown supernet option(s) {sorted(unknown)}: allowed {', '.join(SCHEDULE_KEYS)}")
    return SupernetSettings(resolution=resolution, seed=seed, **schedule)
