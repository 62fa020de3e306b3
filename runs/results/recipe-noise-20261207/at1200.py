"""The README comparisons' networks at 1200 steps, where MobileNetV3-Small 0.75's seed spread is 0.19 (noise.py).

    .venv/bin/python runs/results/recipe-noise-20261207/at1200.py [JOBS]

mnas.compare's `recipe=medium` at max_steps=1200 (64 images a step, lr 0.1 cosine, proxy val 2000, proxy test on
5000 images), seeds 0-2: the pixel 15 ms finds of the default search (trial 17, 13.30 ms) and of the band run
(trial 52, 13.20 ms), V3-Small widened stage by stage to 14.99 ms (a hand-made ceiling, not a find:
../pixel-15ms-20261207-grow/), and MobileNetV1 0.25, the other hand design within pixel 11 ms. Writes at1200.csv.
"""
import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd

from mnas.compare.run import Recipe, train_all
from mnas.nn.arch import ArchConfig
from mnas.nn.models import mobilenet_v1

HERE = Path(__file__).parent
RESULTS = HERE.parent
JOBS = int(sys.argv[1]) if len(sys.argv) > 1 else 2


def main():
    arch = lambda p: ArchConfig.from_string(json.loads((RESULTS / p).read_text())["arch"])  # noqa: E731
    grow = pd.read_csv(RESULTS / "pixel-15ms-20261207-grow" / "grow.csv")
    rows = [dict(model="pixel 15 ms find, default (trial 17)",
                 arch=arch("pixel-15ms-20261207-prune-surgery/best.json")),
            dict(model="pixel 15 ms find, band 0.85 (trial 52)", arch=arch("pixel-15ms-20261207-band85/best.json")),
            dict(model="V3-Small widened to 14.99 ms (hand-made)", arch=ArchConfig.from_string(grow["arch"][0])),
            dict(model="MobileNetV1 0.25", arch=mobilenet_v1(0.25))]
    for r in rows:
        r["proxy_resolution"] = 32
    recipe = Recipe(data="fmnist_cluttered", val_size=2000, test_images=5000, max_steps=1200, batch_size=64, lr=0.1)
    res, _ = train_all(rows, recipe, recipe.load_data(), 3, Path("runs/compare/cache"), jobs=JOBS, desc="1200 steps")
    out = []
    for i, r in enumerate(rows):
        acc = [100 * res[i, s]["test_acc"] for s in range(3)]
        out.append(dict(model=r["model"], steps=1200, seeds=3, test_mean=round(np.mean(acc), 2),
                        test_std=round(np.std(acc, ddof=1), 2), per_seed=";".join(f"{a:.2f}" for a in acc),
                        seconds=round(np.mean([res[i, s]["seconds"] for s in range(3)])), arch=r["arch"].to_string()))
    df = pd.DataFrame(out)
    df.to_csv(HERE / "at1200.csv", index=False)
    print(df.drop(columns="arch").to_string())


if __name__ == "__main__":  # the worker processes import this file
    main()
