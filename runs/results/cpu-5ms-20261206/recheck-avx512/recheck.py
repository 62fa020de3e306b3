"""cpu 5 ms find (trial 18, 2026-12-06 on the AVX2 host) retrained on this AVX-512 host, seeds 0-2, same recipe."""
import json
from pathlib import Path

import numpy as np

from mnas.compare.run import Recipe, train_all
from mnas.nn.arch import ArchConfig
from mnas.nn.models import mobilenet_v3_small


def main():
    best = json.loads((Path(__file__).parent.parent / "best.json").read_text())
    rows = [dict(model="found", arch=ArchConfig.from_string(best["arch"]), proxy_resolution=32),
            dict(model="MobileNetV3-Small 0.75", arch=mobilenet_v3_small(0.75), proxy_resolution=32)]
    recipe = Recipe(data="fmnist_cluttered", val_size=2000, test_images=5000, max_steps=600, batch_size=64, lr=0.1)
    res, n = train_all(rows, recipe, recipe.load_data(), 3, Path("runs/compare/cache"), jobs=2, desc="cpu5 here")
    for i, r in enumerate(rows):
        a = [100 * res[i, s]["test_acc"] for s in range(3)]
        print(r["model"], [round(x, 2) for x in a], round(np.mean(a), 2), round(np.std(a, ddof=1), 2))

if __name__ == "__main__":
    main()
