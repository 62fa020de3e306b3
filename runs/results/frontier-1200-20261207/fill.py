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
import pandas as pd

from mnas.compare.run import Recipe, train_all
from mnas.latency import predict
from mnas.nn.arch import ArchConfig, make_divisible
from mnas.nn.models import mobilenet_v3_small
from mnas.nn.stats import count

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
    for r in rows:
        r["proxy_resolution"] = 32
    recipe = Recipe(data="fmnist_cluttered", val_size=2000, test_images=5000, max_steps=1200, batch_size=64, lr=0.1)
    res, _ = train_all(rows, recipe, recipe.load_data(), 3, Path("runs/compare/cache"), jobs=JOBS, desc="1200 steps")
    out = []
    for i, r in enumerate(rows):
        acc = [100 * res[i, s]["test_acc"] for s in range(3)]
        out.append(dict(model=r["model"], pixel_ms=round(predict(r["arch"], "pixel"), 2),
                        mmacs=round(count(r["arch"]).macs / 1e6, 1), test_mean=round(np.mean(acc), 2),
                        test_std=round(np.std(acc, ddof=1), 2), per_seed=";".join(f"{a:.2f}" for a in acc),
                        seconds=round(np.mean([res[i, s]["seconds"] for s in range(3)])),
                        arch=r["arch"].to_string()))
    df = pd.DataFrame(out)
    df.to_csv(HERE / "fill.csv", index=False)
    print(df.drop(columns="arch").to_string())


if __name__ == "__main__":  # the worker processes import this file
    main()
