"""Is MobileNetV3-Small's width line the frontier at pixel 15 ms, or does a different allocation of the same
milliseconds beat it? (issue 27)

    .venv/bin/python runs/results/pixel-15ms-20261207-allocate/allocate.py [JOBS]

Two ways of spending the 15 ms other than one width multiplier, against MobileNetV3-Small 0.88 (the multiplier that
fills 15 ms, 80.99 +- 0.21 at 1200 steps in ../frontier-1200-20261207/), with the same recipe and seeds (1200 steps
of 64, lr 0.1 cosine, proxy val 2000, proxy test on 5000 images of cluttered Fashion-MNIST at 32 px, seeds 0-2):
- NetAdapt: MobileNetV3-Small 1.0 (17.19 ms) pruned one-shot to 14.99 ms by `mnas.prune method=oneshot`
  (../prune-v3s-oneshot-pixel15/arch.txt: the last stage's expansions and the hidden layer cut), trained from scratch;
- per-stage widths: V3-Small with stages 4-5 at width 1.0 and the rest at 0.75 (14.99 ms, the mixture of
  ../pixel-15ms-20261207-grow/ with the most MACs within 15 ms).
Latency: the pixel table at the deployment shape (224 px, 1000 classes). Writes allocate.csv.
"""
import sys
from pathlib import Path

import pandas as pd

from mnas.compare.run import Recipe, train_table
from mnas.nn.arch import ArchConfig
from mnas.nn.models import mobilenet_v3_small

HERE = Path(__file__).parent
RESULTS = HERE.parent
JOBS = int(sys.argv[1]) if len(sys.argv) > 1 else 2


def main():
    pruned = ArchConfig.from_string((RESULTS / "prune-v3s-oneshot-pixel15/arch.txt").read_text().strip())
    grow = pd.read_csv(RESULTS / "pixel-15ms-20261207-grow/grow.csv")
    mix = ArchConfig.from_string(grow.loc[grow.model == "V3-Small mix ....11..", "arch"].item())
    rows = [dict(model="MobileNetV3-Small 1.0 pruned to 15 ms (one-shot NetAdapt)", arch=pruned),
            dict(model="V3-Small, stages 4-5 at 1.0 (the rest 0.75)", arch=mix),
            dict(model="MobileNetV3-Small 0.88", arch=mobilenet_v3_small(0.88)),
            dict(model="MobileNetV3-Small 0.75", arch=mobilenet_v3_small(0.75))]
    recipe = Recipe(data="fmnist_cluttered", val_size=2000, test_images=5000, max_steps=1200, batch_size=64, lr=0.1)
    df = train_table(rows, recipe, 3, "pixel", jobs=JOBS, desc="1200 steps")
    df.to_csv(HERE / "allocate.csv", index=False)
    print(df[["model", "latency_ms", "macs", "test_acc", "test_std", "test_acc_per_seed"]].to_string())


if __name__ == "__main__":  # the worker processes import this file
    main()
