"""Is MobileNetV3-Small's 16-channel stem worth its pixel milliseconds at 15 ms? (issue 27)

    .venv/bin/python runs/results/pixel-15ms-20261207-allocate/early.py [JOBS]

On the pixel table the stem and the first (depthwise-separable) block run at 112 and 56 px: at 16 channels they
cost 1.3 ms more than at 8, about as much as widening the rest of V3-Small from 0.88 to 0.95. Two 15 ms networks
that spend those milliseconds elsewhere, against MobileNetV3-Small 0.88 (80.99 +- 0.21, ../frontier-1200-20261207/),
same recipe and seeds as allocate.py (1200 steps, seeds 0-2, proxy test on 5000 images at 32 px):
- V3-Small 0.95 with stem and first block at 8 channels (14.98 ms);
- V3-Small 1.0 with stem and first block at 8, head 432 and hidden 512 (14.97 ms): the 1.0 body kept whole.
Latency: the pixel table at the deployment shape (224 px, 1000 classes). Writes early.csv.
"""
import sys
from pathlib import Path

from mnas.compare.run import Recipe, train_table
from mnas.nn.models import mobilenet_v3_small

HERE = Path(__file__).parent
JOBS = int(sys.argv[1]) if len(sys.argv) > 1 else 2


def thin_stem(width: float, head: int | None = None, hidden: int | None = None):
    a = mobilenet_v3_small(width)
    a = a.replace(stem=a.stem.replace(out=8), blocks=(a.blocks[0].replace(out=8, se=8),) + a.blocks[1:])
    if head:
        a = a.replace(head=(a.head[0].replace(out=head),))
    return a.replace(hidden=hidden) if hidden else a


def main():
    rows = [dict(model="V3-Small 0.95, stem and first block at 8", arch=thin_stem(0.95)),
            dict(model="V3-Small 1.0, stem and first block at 8, head 432, hidden 512",
                 arch=thin_stem(1.0, 432, 512)),
            dict(model="MobileNetV3-Small 0.88", arch=mobilenet_v3_small(0.88))]
    recipe = Recipe(data="fmnist_cluttered", val_size=2000, test_images=5000, max_steps=1200, batch_size=64, lr=0.1)
    df = train_table(rows, recipe, 3, "pixel", jobs=JOBS, desc="1200 steps")
    df.to_csv(HERE / "early.csv", index=False)
    print(df[["model", "latency_ms", "macs", "test_acc", "test_std", "test_acc_per_seed"]].to_string())


if __name__ == "__main__":  # the worker processes import this file
    main()
