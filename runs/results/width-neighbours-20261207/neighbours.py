"""MobileNetV3-Small 0.87 and 0.88 differ by 0.68 points at 1200 steps (seeds 0-2), beyond their combined seed
spread (0.39), though they differ in four layers by 8-16 channels. Is that the networks, or the three seeds?

    .venv/bin/python runs/results/width-neighbours-20261207/neighbours.py [JOBS]

Both trained again on seeds 3-5 with the same recipe (`mnas.compare recipe=medium max_steps=1200`: 1200 steps of
64, lr 0.1 cosine, proxy val 2000, proxy test on 5000 images of cluttered Fashion-MNIST at 32 px); seeds 0-2 come
from the comparison cache (../frontier-1200-20261207/fill.csv, ../cpu-1.5ms-20261207-alone/compare1200/).
Writes neighbours.csv: per network and seed set, the per-seed accuracies, mean and std.
"""
import sys
from pathlib import Path

import numpy as np
import pandas as pd

from mnas.compare.run import Recipe, train_all
from mnas.nn.models import mobilenet_v3_small

HERE = Path(__file__).parent
JOBS = int(sys.argv[1]) if len(sys.argv) > 1 else 2


def main():
    rows = [dict(model=f"MobileNetV3-Small {w}", arch=mobilenet_v3_small(w), proxy_resolution=32) for w in (0.87, 0.88)]
    recipe = Recipe(data="fmnist_cluttered", val_size=2000, test_images=5000, max_steps=1200, batch_size=64, lr=0.1)
    data, cache = recipe.load_data(), Path("runs/compare/cache")
    first, _ = train_all(rows, recipe, data, 3, cache, jobs=JOBS, desc="seeds 0-2 (cached)")
    more, _ = train_all(rows, recipe, data, 3, cache, jobs=JOBS, first_seed=3, desc="seeds 3-5")
    out = []
    for i, r in enumerate(rows):
        for name, res, seeds in (("0-2", first, range(3)), ("3-5", more, range(3, 6)), ("0-5", None, range(6))):
            accs = [100 * (first if s < 3 else more)[i, s]["test_acc"] for s in seeds]
            out.append(dict(model=r["model"], seeds=name, per_seed=";".join(f"{a:.2f}" for a in accs),
                            mean=round(float(np.mean(accs)), 2), std=round(float(np.std(accs, ddof=1)), 2)))
    df = pd.DataFrame(out)
    df.to_csv(HERE / "neighbours.csv", index=False)
    print(df.to_string())


if __name__ == "__main__":  # the worker processes import this file
    main()
