"""Supernet training speed by precision and memory format: what a step of the sandwich rule costs on this machine.

    python -m mnas.bench.supernet_speed steps=20 threads=2

Builds the supernet of the space at the proxy's shape (32 px, 10 classes, the proxy strides) and times `steps`
training steps (after `warmup` untimed ones) of the supernet's own `train_step` (the largest sub-network and
`n_random` random ones, in-place distillation) for each combination of precision (fp32; bf16 autocast) and
memory format (channels_last, the training default; contiguous), on random batches, so no data set is needed.
The same seed draws the same sub-networks in every combination. Writes, under out_dir (default
runs/supernet_speed/<timestamp>/): speed.csv (one row per combination: sub-network img/s, seconds per step,
speed-up over fp32 channels_last, the steps' mean losses) and speed.png (bars).
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import pandas as pd
import torch

from mnas.cli import new_run_dir, register_schema, to_plain
from mnas.errors import UserError
from mnas.nn.space import load_space
from mnas.supernet.elastic import Supernet
from mnas.supernet.train import PRECISIONS, SupernetSettings, make_optimizer, sandwich, train_step

FORMATS = {"channels_last": torch.channels_last, "contiguous": torch.contiguous_format}
COLUMNS = ["precision", "memory_format", "steps", "batch_size", "subnets_per_step", "seconds_per_step",
           "subnet_img_per_s", "speedup", "loss_largest", "loss_others"]


def time_steps(space, settings: SupernetSettings, fmt, steps: int, warmup: int, num_classes: int = 10) -> dict:
    """Seconds per step and mean losses of `steps` timed sandwich steps (after `warmup`) from a fresh supernet."""
    torch.manual_seed(settings.seed)
    net = Supernet(space, num_classes, settings.max_stride).to(memory_format=fmt).train()
    opt = make_optimizer(net, settings)
    g = torch.Generator().manual_seed(settings.seed)
    shape = (settings.batch_size, 3, settings.resolution, settings.resolution)
    largest = space.extreme(largest=True)
    losses, seconds = [], 0.0
    for step in range(warmup + steps):
        x = torch.randn(shape, generator=g).contiguous(memory_format=fmt)
        y = torch.randint(0, num_classes, (settings.batch_size,), generator=g)
        archs = sandwich(space, step, settings.n_random, settings.seed, largest)
        t0 = time.perf_counter()
        out = train_step(net, opt, archs, x, y, settings)
        if step >= warmup:
            seconds += time.perf_counter() - t0
            losses.append(out)
    return {"seconds_per_step": seconds / steps, "subnets_per_step": len(archs),
            "loss_largest": sum(v[0] for v in losses) / steps,
            "loss_others": sum(sum(v[1:]) / max(1, len(v) - 1) for v in losses) / steps}


def run(space, steps: int = 20, warmup: int = 3, batch_size: int = 128, n_random: int = 3, resolution: int = 32,
        precisions=PRECISIONS, formats=tuple(FORMATS), out_dir=None, seed: int = 0) -> pd.DataFrame:
    if steps < 1 or warmup < 0:
        raise UserError(f"steps={steps}, warmup={warmup}: steps >= 1 and warmup >= 0")
    if unknown := [f for f in formats if f not in FORMATS]:
        raise UserError(f"unknown memory format(s) {unknown}: use {', '.join(FORMATS)}")
    rows = []
    for precision in precisions:
        s = SupernetSettings(batch_size=batch_size, n_random=n_random, smallest=False, resolution=resolution,
                             seed=seed, precision=precision)  # an unknown precision is the settings' UserError
        for name in formats:
            r = time_steps(space, s, FORMATS[name], steps, warmup)
            rows.append(dict(precision=precision, memory_format=name, steps=steps, batch_size=batch_size,
                             subnet_img_per_s=r["subnets_per_step"] * batch_size / r["seconds_per_step"], **r))
            print(f"{precision:5s} {name:14s} {r['seconds_per_step']:.3f} s/step, "
                  f"{rows[-1]['subnet_img_per_s']:.0f} sub-network img/s, loss {r['loss_largest']:.3f}", flush=True)
    df = pd.DataFrame(rows)
    base = df[(df.precision == df.precision.iloc[0]) & (df.memory_format == df.memory_format.iloc[0])]
    df["speedup"] = df.subnet_img_per_s / float(base.subnet_img_per_s.iloc[0])
    df = df[COLUMNS]
    out = Path(out_dir) if out_dir else new_run_dir("supernet_speed")
    out.mkdir(parents=True, exist_ok=True)
    df.to_csv(out / "speed.csv", index=False, float_format="%.6g")
    plot(df, out / "speed.png", f"{space.name} supernet, batch {batch_size}, {resolution} px, {torch.get_num_threads()}"
         f" thread(s)")
    print(f"-> {out}")
    return df


def plot(df: pd.DataFrame, path: Path, title: str) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(6, 3.2))
    labels = [f"{p}\n{f}" for p, f in zip(df.precision, df.memory_format)]
    bars = ax.bar(labels, df.subnet_img_per_s, color="tab:blue")
    for b, s in zip(bars, df.speedup):
        ax.annotate(f"{s:.2f}x", (b.get_x() + b.get_width() / 2, b.get_height()), ha="center", va="bottom")
    ax.set_ylabel("sub-network img/s (training)")
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


@dataclass
class SupernetSpeedConfig:
    """The schema of `python -m mnas.bench.supernet_speed` (conf/supernet_speed.yaml lists it first)."""
    space: Any = None
    steps: int = 20
    warmup: int = 3
    batch_size: int = 128
    n_random: int = 3
    resolution: int = 32
    precisions: Any = field(default_factory=lambda: ["fp32", "bf16"])
    formats: Any = field(default_factory=lambda: ["channels_last", "contiguous"])
    seed: int = 0
    threads: Optional[int] = None
    out_dir: Optional[str] = None


register_schema("supernet_speed", SupernetSpeedConfig)


def main(cfg):
    c = to_plain(cfg)
    if c["threads"]:
        torch.set_num_threads(c["threads"])
    return run(load_space(c["space"]["name"]), c["steps"], c["warmup"], c["batch_size"], c["n_random"],
               c["resolution"], tuple(c["precisions"]), tuple(c["formats"]), c["out_dir"], c["seed"])


if __name__ == "__main__":
    from mnas.cli import hydra_main
    hydra_main("supernet_speed", main)

