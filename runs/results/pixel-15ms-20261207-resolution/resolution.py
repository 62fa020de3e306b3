"""Does trading resolution for width beat MobileNetV3-Small's width line at pixel 15 ms? (issue 27)

    .venv/bin/python runs/results/pixel-15ms-20261207-resolution/resolution.py [SEEDS] [JOBS]

The search spaces fix the input at 224 px; OFA and EfficientNet search or scale resolution with width, and the
MobileNetV3 paper publishes its networks at 96-256 px. Here: MobileNetV3-Small at the width that fills 15 ms
(the Pixel-1 table at the deployment shape, 1000 classes) at 196 px (0.96) and 168 px (1.12), the deployment
resolutions whose proxy resolution is exact (32 px * 196/224 = 28, * 168/224 = 24; mnas.compare.run.scaled_proxy),
against MobileNetV3-Small 0.88 at 224 px (32 px proxy), the width that fills 15 ms there. Same recipe and seeds
for all (1200 steps of 64, lr 0.1 cosine, proxy val 2000, proxy test on 5000 images of cluttered Fashion-MNIST,
seeds 0..SEEDS-1, default 6: three seeds' spread understated the noise in ../width-neighbours-20261207/).
Writes resolution.csv.
"""
import sys
from pathlib import Path

from mnas.compare.run import Recipe, scaled_proxy, train_table
from mnas.latency import predict
from mnas.nn.models import mobilenet_v3_small
from mnas.search.ship import filled_width

HERE = Path(__file__).parent
SEEDS = int(sys.argv[1]) if len(sys.argv) > 1 else 6
JOBS = int(sys.argv[2]) if len(sys.argv) > 2 else 2


def main():
    recipe = Recipe(data="fmnist_cluttered", val_size=2000, test_images=5000, max_steps=1200, batch_size=64, lr=0.1)
    rows = []
    for res in (224, 196, 168):
        w = filled_width("v3_small", lambda a: predict(a, "pixel"), 15.0, res, 1000)
        rows.append(dict(model=f"MobileNetV3-Small {w:g}" + ("" if res == 224 else f" @{res}px"), width=w,
                         resolution=res, proxy_resolution=scaled_proxy(res, 224, recipe.proxy_resolution),
                         arch=mobilenet_v3_small(w, resolution=res)))
    df = train_table(rows, recipe, SEEDS, "pixel", jobs=JOBS, desc="1200 steps")
    df.to_csv(HERE / "resolution.csv", index=False)
    print(df[["model", "proxy_resolution", "latency_ms", "macs", "test_acc", "test_std", "test_acc_per_seed"]]
          .to_string())


if __name__ == "__main__":  # the worker processes import this file
    main()
