"""Does a find that leads MobileNetV3-Small 0.75 per millisecond win once it uses the whole budget? (issue 27)

    .venv/bin/python runs/results/frontier-1200-20261207/fill.py [JOBS]

The band run's pixel 15 ms find (trial 52, 13.20 ms: +0.28 over V3-Small 0.75 at 1200 steps, inside the spread)
with every channel count (stem, expansions, outputs, squeezes, head, hidden) multiplied by one factor α and rounded
to a multiple of 8, α the largest on a 0.01 grid whose pixel latency is within 15 ms; beside it MobileNetV3-Small
at the width multiplier that fills 15 ms the same way (the hand family's own scaling, a reference, not a published
variant). Same recipe and seeds as frontier.py (1200 steps, seeds 0-2). Writes fill.csv.
"""
import json
import sys
from pathlib import Path

import numpy as np

from mnas.compare.run import Recipe, train_table
from mnas.latency import predict
from mnas.nn.arch import ArchConfig, make_divisible
from mnas.nn.models import mobilenet_v3_small

HERE = Path(__file__).parent
RESULTS = HERE.parent
JOBS = int(sys.argv[1]) if len(sys.argv) > 1 else 2
BUDGET = 15.0


def scaled(arch: ArchConfig, alpha: float) -> ArchConfig:
    c = lambda v: make_divisible(v * alpha) if v else 0  # noqa: E731
    stem = arch.stem.replace(out=c(arch.stem.out))
    blocks = tuple(b.replace(out=c(b.out), exp=c(b.exp), se=c(b.se)) for b in arch.blocks)
    head = tuple(h.replace(out=c(h.out)) for h in arch.head)
    return arch.replace(stem=stem, blocks=blocks, head=head, hidden=c(arch.hidden))


def fill(make) -> tuple[float, ArchConfig]:
    best = None
    for alpha in np.arange(0.5, 1.6, 0.01):
        a = make(float(alpha))
        if predict(a, "pixel") <= BUDGET:
            best = (round(float(alpha), 2), a)
    return best


def main():
    find = ArchConfig.from_string(json.loads((RESULTS / "pixel-15ms-20261207-band85/best.json").read_text())["arch"])
    a_find, grown = fill(lambda al: scaled(find, al))
    a_v3, v3 = fill(lambda al: mobilenet_v3_small(al))
    rows = [dict(model=f"band find (trial 52) x{a_find}", arch=grown),
            dict(model=f"MobileNetV3-Small {a_v3}", arch=v3),
            dict(model="band find (trial 52)", arch=find),
            dict(model="MobileNetV3-Small 0.75", arch=mobilenet_v3_small(0.75))]
    recipe = Recipe(data="fmnist_cluttered", val_size=2000, test_images=5000, max_steps=1200, batch_size=64, lr=0.1)
    df = train_table(rows, recipe, 3, "pixel", jobs=JOBS, desc="1200 steps")  # pixel latency, MACs, test % per seed
    shown = ["model", "latency_ms", "macs", "test_acc", "test_std", "test_acc_per_seed"]
    df.to_csv(HERE / "fill.csv", index=False)
    print(df[shown].to_string())


if __name__ == "__main__":  # the worker processes import this file
    main()
