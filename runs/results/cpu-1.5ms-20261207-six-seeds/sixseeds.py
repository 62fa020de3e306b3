"""The cpu 1.5 ms find (trial 21 of ../cpu-1.5ms-20261207-alone/) beat MobileNetV3-Small 0.75 and 0.87 at 1200
steps on seeds 0-2 by +0.45 and +0.61, but V3-Small 0.87 and 0.88 swap places between seeds 0-2 and 3-5
(../width-neighbours-20261207/): does the find's lead hold on six seeds?

    .venv/bin/python runs/results/cpu-1.5ms-20261207-six-seeds/sixseeds.py [JOBS]

The find and V3-Small 0.75 trained again on seeds 3-5 with the comparison's recipe (`mnas.compare recipe=medium
max_steps=1200`: 1200 steps of 64, lr 0.1 cosine, proxy val 2000, proxy test on 5000 images of cluttered
Fashion-MNIST at 32 px); seeds 0-2, and V3-Small 0.87's six seeds, come from the comparison cache. V3-Small 1.0
(over the budget; seeds 0-2 from ../frontier-1200-20261207/) shows how far the accuracy rises past it. Writes
sixseeds.csv: per network and seed set, the per-seed accuracies, mean and std.
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
JOBS = int(sys.argv[1]) if len(sys.argv) > 1 else 2


def main():
    found = json.loads((HERE.parent / "cpu-1.5ms-20261207-alone" / "best.json").read_text())["arch"]
    rows = [dict(model="found (trial 21)", arch=ArchConfig.from_string(found), proxy_resolution=32)]
    rows += [dict(model=f"MobileNetV3-Small {w}", arch=mobilenet_v3_small(w), proxy_resolution=32) for w in (0.75, 0.87, 1.0)]
    recipe = Recipe(data="fmnist_cluttered", val_size=2000, test_images=5000, max_steps=1200, batch_size=64, lr=0.1)
    data, cache = recipe.load_data(), Path("runs/compare/cache")
    first, _ = train_all(rows, recipe, data, 3, cache, jobs=JOBS, desc="seeds 0-2 (cached)")
    more, _ = train_all(rows, recipe, data, 3, cache, jobs=JOBS, first_seed=3, desc="seeds 3-5")
    out = []
    for i, r in enumerate(rows):
        for name, seeds in (("0-2", range(3)), ("3-5", range(3, 6)), ("0-5", range(6))):
            accs = [100 * (first if s < 3 else more)[i, s]["test_acc"] for s in seeds]
            out.append(dict(model=r["model"], seeds=name, per_seed=";".join(f"{a:.2f}" for a in accs),
                            mean=round(float(np.mean(accs)), 2), std=round(float(np.std(accs, ddof=1)), 2)))
    df = pd.DataFrame(out)
    df.to_csv(HERE / "sixseeds.csv", index=False)
    print(df.to_string())


if __name__ == "__main__":  # the worker processes import this file
    main()
