"""One-shot NetAdapt (AutoSlim-style scoring): the start network is trained once as a slimmable network
(mnas.supernet.slimmable, the sandwich rule with in-place distillation, cached under runs/supernets/<hash>/ and
resumable), then NetAdapt's loop scores every proposal as a sub-network of it (its first channels, BatchNorm
re-estimated), with no surgery and no fine-tune per proposal. The chosen widths are then either fine-tuned from
the slimmable weights (`final_init="finetune"`) or trained from scratch (`"scratch"`: Liu et al. 2019 found pruned
widths worth most retrained from scratch, and AutoSlim retrains its result).

Training cost, stated beside every accuracy: the slimmable network's steps (each a forward and backward of the
largest, the smallest and `n_random` random slimmings) plus the final network's own steps.
"""
from __future__ import annotations

from dataclasses import dataclass

from mnas.errors import UserError
from mnas.nn.arch import ArchConfig
from mnas.supernet.slimmable import Slimmable, Slimming
from mnas.supernet.train import CACHE_DIR, CLASSIFIER_LRS, SupernetSettings, cache_dir, train_supernet

METHODS = ("surgery", "oneshot")
FINAL_INITS = ("finetune", "scratch")


@dataclass(frozen=True)
class OneShot:
    epochs: int = 1             # slimmable training epochs over the proxy task's training split
    min_width: float = 0.25     # no unit is trained, or pruned, below this fraction of its width
    n_random: int = 2           # random slimmings per step, besides the largest and the smallest
    final_init: str = "scratch"  # the chosen widths: "finetune" from the slimmable weights | "scratch"
    lr: float = 0.1             # the slimmable training's peak lr (batch 128); its passes' gradients add up
    classifier_lr: str = "auto"  # "auto": the final linear layer's lr scaled down by its input's size
    #                              (mnas.supernet.train.FC_REF; MobileNetV2 at lr 0.1 diverges without) | "same"

    def __post_init__(self):
        if self.final_init not in FINAL_INITS:
            raise UserError(f"final_init={self.final_init!r} is invalid: use one of {', '.join(FINAL_INITS)}")
        if not isinstance(self.epochs, int) or self.epochs < 1 or self.n_random < 0:
            raise UserError(f"slim_epochs={self.epochs!r}, slim_n_random={self.n_random!r}: use epochs >= 1 and "
                            "n_random >= 0")
        if not (isinstance(self.lr, (int, float)) and self.lr > 0):
            raise UserError(f"slim_lr={self.lr!r} is invalid: use a positive learning rate")
        if self.classifier_lr not in CLASSIFIER_LRS:
            raise UserError(f"slim_classifier_lr={self.classifier_lr!r} is invalid: use one of "
                            f"{', '.join(CLASSIFIER_LRS)}")
        if not 0 < self.min_width <= 1:
            raise UserError(f"slim_min_width={self.min_width!r} is invalid: use a fraction in (0, 1]")


def slimming(deploy: ArchConfig, label: str, o: OneShot, step: int = 8, min_channels: int = 8) -> Slimming:
    return Slimming(deploy, label, o.min_width, step, min_channels)


def train_slimmable(deploy: ArchConfig, label: str, data, o: OneShot, seed: int, proxy_resolution: int,
                    max_stride: int, step: int = 8, min_channels: int = 8, progress: bool = True,
                    root=CACHE_DIR) -> tuple[Slimmable, dict]:
    """The slimmable network of `deploy` trained (or resumed, or loaded from the cache) with the supernet recipe
    (mnas.supernet.train defaults but the lr: batch 128, cosine, label smoothing, augmentation): (network, start
    info for start.json: source, steps, sub-network passes, cache dir)."""
    sl = slimming(deploy, label, o, step, min_channels)
    settings = SupernetSettings(epochs=o.epochs, n_random=o.n_random, smallest=True, resolution=proxy_resolution,
                                max_stride=max_stride, seed=seed, lr=float(o.lr),
                                classifier_lr=o.classifier_lr)
    out = cache_dir(sl, data, settings, root)
    if progress and not (out / "checkpoint.pt").exists():
        print(f"training {sl.name} on {data.name} ({o.epochs} epoch(s) at {proxy_resolution}px, largest + smallest "
              f"+ {o.n_random} random per step; cached in {out})")
    net, info = train_supernet(sl, data, settings, out, progress=progress)
    return net, {"source": f"slimmable {out}", "steps": info["step"], "subnet_passes": info["step"] * (2 + o.n_random),
                 "dir": str(out)}
