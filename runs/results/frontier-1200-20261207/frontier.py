"""How much a slower network buys at 1200 steps: MobileNetV3-Small 1.0 (17.19 ms on the pixel table) beside 0.75.

    .venv/bin/python runs/results/frontier-1200-20261207/frontier.py [JOBS]

Same recipe and seeds as ../recipe-noise-20261207/at1200.py (mnas.compare recipe=medium at max_steps=1200: 64
images a step, lr 0.1 cosine, proxy val 2000, proxy test on 5000 images, seeds 0-2); V3-Small 0.5 and 0.75 come
from the comparison cache when it holds them. Writes frontier.csv.
"""
import sys
from pathlib import Path

import numpy as np
import pandas as pd

from mnas.compare.run import Recipe, train_all
from mnas.latency import predict
from mnas.nn.models import mobilenet_v3_small
from mnas.nn.stats import count

HERE = Path(__file__).parent
JOBS = int(sys.argv[1]) if len(sys.argv) > 1 else 2


def main():
    rows = [dict(model=f"MobileNetV3-Small {w}", arch=mobilenet_v3_small(w), proxy_resolution=32)
            for w in (0.5, 0.75, 1.0)]
    recipe = Recipe(data="fmnist_cluttered", val_size=2000, test_images=5000, max_steps=1200, batch_size=64, lr=0.1)
    res, _ = train_all(rows, recipe, recipe.load_data(), 3, Path("runs/compare/cache"), jobs=JOBS, desc="1200 steps")
    out = []
    for i, r in enumerate(rows):
        acc = [100 * res[i, s]["test_acc"] for s in range(3)]
        out.append(dict(model=r["model"], pixel_ms=round(predict(r["arch"], "pixel"), 2),
                        mmacs=round(count(r["arch"]).macs / 1e6, 1), steps=1200, seeds=3,
                        test_mean=round(np.mean(acc), 2), test_std=round(np.std(acc, ddof=1), 2),
                        per_seed=";".join(f"{a:.2f}" for a in acc),
                        seconds=round(np.mean([res[i, s]["seconds"] for s in range(3)]))))
    df = pd.DataFrame(out)
    df.to_csv(HERE / "frontier.csv", index=False)
    print(df.to_string())


if __name__ == "__main__":  # the worker processes import this file
    main()
