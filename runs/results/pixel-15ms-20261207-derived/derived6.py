"""The search's derived trial "MobileNetV3-Small 1.0, no SE, fitted to the budget" (a point of v3_small, 14.90 ms on
the Pixel-1 table) trained on six seeds with the comparison's recipe, beside MobileNetV3-Small 0.88 (the width
filling 15 ms; its six seeds cached by ../width-neighbours-20261207/).

    .venv/bin/python runs/results/pixel-15ms-20261207-derived/derived6.py <search run dir> [JOBS]

Recipe: `mnas.compare recipe=medium max_steps=1200` (1200 steps of 64, lr 0.1 cosine, proxy val 2000, proxy test on
5000 images of cluttered Fashion-MNIST at 32 px), seeds 0-5. Writes derived6.csv.
"""
import sys
from pathlib import Path

import pandas as pd

from mnas.compare.run import Recipe, train_table
from mnas.nn.arch import ArchConfig
from mnas.nn.models import mobilenet_v3_small

HERE = Path(__file__).parent
RUN = Path(sys.argv[1])
JOBS = int(sys.argv[2]) if len(sys.argv) > 2 else 2


def main():
    trials = pd.read_csv(RUN / "trials.csv")
    t = trials[trials["derived"] == "MobileNetV3-Small 1.0, no SE, fitted to the budget"].iloc[0]
    rows = [dict(model=f"trial {int(t.number)} ({t.derived})", arch=ArchConfig.from_string(t.arch)),
            dict(model="MobileNetV3-Small 0.88", arch=mobilenet_v3_small(0.88))]
    recipe = Recipe(data="fmnist_cluttered", val_size=2000, test_images=5000, max_steps=1200, batch_size=64, lr=0.1)
    df = train_table(rows, recipe, 6, "pixel", jobs=JOBS, desc="1200 steps, 6 seeds")
    df.to_csv(HERE / "derived6.csv", index=False)
    print(df[["model", "latency_ms", "macs", "params", "test_acc", "test_std", "test_acc_per_seed"]].to_string())


if __name__ == "__main__":  # the worker processes import this file
    main()
