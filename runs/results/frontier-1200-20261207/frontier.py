"""How much a slower network buys at 1200 steps: MobileNetV3-Small 1.0 (17.19 ms on the pixel table) beside 0.75.

    .venv/bin/python runs/results/frontier-1200-20261207/frontier.py [JOBS]

Same recipe and seeds as ../recipe-noise-20261207/at1200.py (mnas.compare recipe=medium at max_steps=1200: 64
images a step, lr 0.1 cosine, proxy val 2000, proxy test on 5000 images, seeds 0-2); V3-Small 0.5 and 0.75 come
from the comparison cache when it holds them. Writes frontier.csv.
"""
import sys
from pathlib import Path

from mnas.compare.run import Recipe, train_table
from mnas.nn.models import mobilenet_v3_small

HERE = Path(__file__).parent
JOBS = int(sys.argv[1]) if len(sys.argv) > 1 else 2


def main():
    rows = [dict(model=f"MobileNetV3-Small {w}", arch=mobilenet_v3_small(w))
            for w in (0.5, 0.75, 1.0)]
    recipe = Recipe(data="fmnist_cluttered", val_size=2000, test_images=5000, max_steps=1200, batch_size=64, lr=0.1)
    df = train_table(rows, recipe, 3, "pixel", jobs=JOBS, desc="1200 steps")  # pixel latency, MACs, test % per seed
    shown = ["model", "latency_ms", "macs", "test_acc", "test_std", "test_acc_per_seed"]
    df.to_csv(HERE / "frontier.csv", index=False)
    print(df[shown].to_string())


if __name__ == "__main__":  # the worker processes import this file
    main()
