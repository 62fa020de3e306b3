"""NetAdapt settings (mnas.prune.netadapt.netadapt): the schedule, and how a proposal is fine-tuned and scored."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from mnas.errors import UserError
from mnas.train import evaluate, fit, recalibrate_bn

SELECT = ("ratio", "accuracy")


@dataclass
class Settings:
    delta: float = 0.05           # first iteration's latency reduction, a fraction of the start latency
    delta_decay: float = 0.96     # delta shrinks by this factor per iteration
    select: str = "ratio"         # ratio: best ΔAcc/|ΔLat| (MobileNetV3) | accuracy: best accuracy (NetAdapt)
    finetune_steps: int = 200     # short fine-tune of every proposal (0: scored right after the surgery, with
                                  # BatchNorm statistics re-estimated: far cheaper, so smaller deltas are affordable)
    chosen_steps: int = 0         # fine-tune of the chosen proposal before the next iteration
    finetune_lr: float = 0.01     # fine-tune peak lr (batch 128)
    batch_size: int = 128
    proxy_resolution: int = 32    # training and evaluation resolution (data.proxy_resolution)
    eval_images: int | None = 2000  # validation images that rank the proposals (None = all)
    bn_recalibration: bool = True   # re-estimate BatchNorm statistics before each evaluation (see mnas.train)
    min_channels: int = 8
    step: int = 8                 # channels are removed in multiples of this
    importance_p: int = 1         # importance norm: 1 = L1, 2 = L2
    max_iterations: int = 100
    seed: int = 0
    threads: int | None = None
    jobs: int = 1                 # proposals scored side by side in this many 1-thread worker processes

    def fit_options(self, steps: int, lr: float | None = None, progress: bool = False) -> dict:
        """mnas.train.fit's options for `steps` steps with these settings (lr defaults to the fine-tune lr)."""
        return dict(epochs=None, max_steps=steps, batch_size=self.batch_size, lr=lr or self.finetune_lr,
                    resolution=self.proxy_resolution, threads=self.threads, progress=progress,
                    bn_recalibration=self.bn_recalibration)

    def fit(self, model, data, steps: int, lr: float | None = None, seed: int = 0, progress: bool = False) -> dict:
        """mnas.train.fit for `steps` steps with these settings, data order from self.seed + seed."""
        return fit(model, data, seed=self.seed + seed, **self.fit_options(steps, lr, progress))

    def check(self):
        if self.select not in SELECT:
            raise UserError(f"select={self.select!r} is invalid: use one of {', '.join(SELECT)}")
        if not (0 < self.delta < 1 and 0 < self.delta_decay <= 1):
            raise UserError(f"delta={self.delta}, delta_decay={self.delta_decay}: use 0 < delta < 1 and "
                            "0 < delta_decay <= 1")
        if self.min_channels < 1 or self.step < 1 or self.max_iterations < 1:
            raise UserError("min_channels, step and max_iterations must be positive")
        if self.finetune_steps < 0 or self.chosen_steps < 0:
            raise UserError(f"finetune_steps={self.finetune_steps}, chosen_steps={self.chosen_steps}: use counts >= 0")
        if not isinstance(self.jobs, int) or isinstance(self.jobs, bool) or self.jobs < 1:
            raise UserError(f"jobs={self.jobs!r} is invalid: use a whole number of worker processes >= 1")

    @classmethod
    def from_config(cls, c: dict, **given) -> Settings:
        """Settings from a prune config (conf/prune.yaml keys are its field names; null keeps the default) and
        `given` (e.g. proxy_resolution, from the data group)."""
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in c.items() if k in names and v is not None}, **given)

    def steps_per_iteration(self) -> int:
        """Training steps an iteration adds to the network it keeps."""
        return self.finetune_steps + self.chosen_steps

    def score(self, model, data, steps: int, seed: int) -> float:
        """Validation accuracy of `model` after `steps` of fine-tuning (0: after re-estimating BatchNorm only)."""
        if steps:
            return self.fit(model, data, steps, seed=seed)["val_acc"]
        if self.bn_recalibration:
            recalibrate_bn(model, data.train, self.proxy_resolution, seed=self.seed + seed)
        return evaluate(model, data.val, self.proxy_resolution)[0]
