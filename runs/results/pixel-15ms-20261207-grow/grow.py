"""Can width alone beat MobileNetV3-Small 0.75 at pixel 15 ms? A ceiling probe for issue 27.

    .venv/bin/python runs/results/pixel-15ms-20261207-grow/grow.py [JOBS]

MobileNetV3-Small with each stage (stem, 5 stages, head, hidden) at width 0.75 or 1.0 (2^8 mixtures, the V3 layer
table unchanged otherwise); the two mixtures with the most MACs within 15 ms on the pixel table are trained with the
recipe of the README's pixel comparison (`mnas.compare recipe=medium max_steps=600`: 600 steps of 64, lr 0.1, proxy
val 2000, test on 5000 images), seeds 0-2, so V3-Small 0.75's three cached trainings are the same draws; V3-Small
0.75 gets seeds 3 and 4 as well, and V3-Small 1.0 (17.2 ms, over the budget) seeds 0-2 as the family's ceiling.
Writes grow.csv (per model: latency, MACs, per-seed proxy test accuracy, mean, std) and prints it.
"""
import itertools
import sys
from pathlib import Path

import numpy as np
import pandas as pd

from mnas.compare.run import Recipe, train_all
from mnas.latency.predict import predict
from mnas.nn.arch import ArchConfig, BlockConfig, make_divisible
from mnas.nn.models import _V3_SMALL, mobilenet_v3_small, v3_block
from mnas.nn.stats import count

HERE = Path(__file__).parent
JOBS = int(sys.argv[1]) if len(sys.argv) > 1 else 2
GROUPS = [[0], [1, 2], [3, 4, 5], [6, 7], [8, 9, 10]]  # V3-Small's stages (blocks sharing an output width)


def mixture(ws) -> ArchConfig:
    """V3-Small with width ws[0] for the stem, ws[1..5] per stage, ws[6] head, ws[7] hidden."""
    c = lambda v, w: make_divisible(v * w)  # noqa: E731
    stem = BlockConfig("conv", 3, 2, c(16, ws[0]), "hswish")
    blocks, cin = [], stem.out
    for g, idx in enumerate(GROUPS):
        for i in idx:
            k, exp, out, se, act, s = _V3_SMALL[i]
            blocks.append(v3_block(cin, k, c(exp, ws[1 + g]), c(out, ws[1 + g]), bool(se), act, s))
            cin = blocks[-1].out
    head = (BlockConfig("conv", 1, 1, c(576, ws[6]), "hswish"),)
    return ArchConfig(stem=stem, blocks=tuple(blocks), head=head, hidden=c(1024, ws[7]), hidden_act="hswish",
                      dropout=0.2)


def main():
    seen, fits = set(), []
    for ws in itertools.product([0.75, 1.0], repeat=8):
        a = mixture(ws)
        if a.to_string() in seen:
            continue
        seen.add(a.to_string())
        if predict(a, "pixel") <= 15.0:
            fits.append((count(a).macs, ws, a))
    fits.sort(key=lambda f: -f[0])
    rows = [dict(model=f"V3-Small mix {''.join('1' if w == 1.0 else '.' for w in ws)}", arch=a, proxy_resolution=32)
            for _, ws, a in fits[:2]]
    rows += [dict(model="MobileNetV3-Small 0.75", arch=mobilenet_v3_small(0.75), proxy_resolution=32),
             dict(model="MobileNetV3-Small 1.0", arch=mobilenet_v3_small(1.0), proxy_resolution=32)]
    recipe = Recipe(data="fmnist_cluttered", val_size=2000, test_images=5000, max_steps=600, batch_size=64, lr=0.1)
    data = recipe.load_data()
    res, _ = train_all(rows, recipe, data, 3, Path("runs/compare/cache"), jobs=JOBS, desc="grow probe")
    more, _ = train_all(rows[2:3], recipe, data, 2, Path("runs/compare/cache"), jobs=JOBS, first_seed=3,
                        desc="V3-Small 0.75 seeds 3-4")
    out = []
    for i, r in enumerate(rows):
        accs = [res[i, s]["test_acc"] for s in range(3)] + ([more[0, s]["test_acc"] for s in (3, 4)] if i == 2 else [])
        out.append(dict(model=r["model"], latency_ms=round(predict(r["arch"], "pixel"), 2),
                        mmacs=round(count(r["arch"]).macs / 1e6, 1), params_m=round(count(r["arch"]).params / 1e6, 2),
                        per_seed=";".join(f"{100 * a:.2f}" for a in accs), mean_0_2=round(100 * np.mean(accs[:3]), 2),
                        std_0_2=round(100 * np.std(accs[:3], ddof=1), 2), mean_all=round(100 * np.mean(accs), 2),
                        std_all=round(100 * np.std(accs, ddof=1), 2), arch=r["arch"].to_string()))
    df = pd.DataFrame(out)
    df.to_csv(HERE / "grow.csv", index=False)
    print(df.drop(columns="arch").to_string())


if __name__ == "__main__":  # the worker processes import this file
    main()
