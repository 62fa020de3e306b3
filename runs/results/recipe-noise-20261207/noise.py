"""How much of the 600-step comparison's seed spread is undertraining? The same recipe at STEPS steps.

    .venv/bin/python runs/results/recipe-noise-20261207/noise.py STEPS [JOBS]

mnas.compare's `recipe=medium` (64 images a step, lr 0.1 cosine, proxy val 2000, proxy test on 5000 images) at
STEPS steps instead of 600: MobileNetV3-Small 0.75 on seeds 0-4 (its 600-step spread on this host is 1.20 over 5
seeds), MobileNetV3-Small 0.5 and the pixel 11 ms find (runs/search/pixel/11ms-20261207, trial 38) on seeds 0-2,
with their 600-step trainings (cached) beside them. Writes noise_<STEPS>.csv and prints it.
"""
import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd

from mnas.compare.run import Recipe, train_all
from mnas.nn.arch import ArchConfig
from mnas.nn.models import mobilenet_v3_small

HERE = Path(__file__).parent
STEPS = int(sys.argv[1])
JOBS = int(sys.argv[2]) if len(sys.argv) > 2 else 2


def main():
    find = json.loads((HERE / "find-pixel-11ms.json").read_text())["arch"]
    rows = [dict(model="MobileNetV3-Small 0.75", arch=mobilenet_v3_small(0.75), proxy_resolution=32, seeds=5),
            dict(model="MobileNetV3-Small 0.5", arch=mobilenet_v3_small(0.5), proxy_resolution=32, seeds=3),
            dict(model="found (pixel 11 ms, trial 38)", arch=ArchConfig.from_string(find), proxy_resolution=32,
                 seeds=3)]
    out = []
    for steps in (600, STEPS):
        recipe = Recipe(data="fmnist_cluttered", val_size=2000, test_images=5000, max_steps=steps, batch_size=64,
                        lr=0.1)
        data = recipe.load_data()
        for r in rows:
            res, _ = train_all([r], recipe, data, r["seeds"], Path("runs/compare/cache"), jobs=JOBS,
                               desc=f"{r['model']}, {steps} steps")
            acc = [100 * res[0, s]["test_acc"] for s in range(r["seeds"])]
            out.append(dict(model=r["model"], steps=steps, seeds=r["seeds"], test_mean=round(np.mean(acc), 2),
                            test_std=round(np.std(acc, ddof=1), 2), per_seed=";".join(f"{a:.2f}" for a in acc),
                            seconds=round(np.mean([res[0, s]["seconds"] for s in range(r["seeds"])]))))
    df = pd.DataFrame(out)
    df.to_csv(HERE / f"noise_{STEPS}.csv", index=False)
    print(df.to_string())


if __name__ == "__main__":  # the worker processes import this file
    main()
