"""Is a full convolution in MobileNetV3-Small's first block a better use of 15 ms than the width multiplier?
(issue 27)

    .venv/bin/python runs/results/pixel-15ms-20261207-fullconv/fullconv.py [SEEDS] [JOBS]

MobileDets (Xiong et al., CVPR 2021) found that full (not depthwise-separable) convolutions early in the network
trade latency for accuracy better than inverted bottlenecks there, on mobile CPUs as well as accelerators; the
MobileNetV3-style spaces offer no full convolution after the stem. On the Pixel-1 estimate, turning
V3-Small's first block (depthwise 3x3 + SE + 1x1 to 16 channels, stride 2) into one full 3x3 convolution to C
channels costs 7.3 MMACs per ms, where widening the whole network buys 4.1. Here: V3-Small with that first block
a full 3x3 conv to 16 (and to 24) channels, at the width multiplier that fills 15 ms on the Pixel-1 table
(deployment shape 224 px, 1000 classes), against MobileNetV3-Small 0.88 (the width that fills 15 ms; its six
runs are those of ../width-neighbours-20261207/). One recipe and seeds for all (1200 steps of 64, lr 0.1 cosine,
proxy val 2000, proxy test on 5000 images of cluttered Fashion-MNIST at 32 px, seeds 0..SEEDS-1, default 6).
Writes fullconv.csv.
"""
import re
import sys
from pathlib import Path

from mnas.compare.run import Recipe, train_table
from mnas.latency import predict
from mnas.nn.arch import ArchConfig
from mnas.nn.models import mobilenet_v3_small

HERE = Path(__file__).parent
SEEDS = int(sys.argv[1]) if len(sys.argv) > 1 else 6
JOBS = int(sys.argv[2]) if len(sys.argv) > 2 else 2
BUDGET = 15.0


def full_conv_first(width: float, channels: int) -> ArchConfig:
    """V3-Small at `width` with its first block (ds_k3_s2_...) a full 3x3 stride-2 conv to `channels`, ReLU."""
    s = mobilenet_v3_small(width).to_string()
    ds = re.search(r"ds_k3_s2_c\d+_se\d+_relu", s).group(0)
    return ArchConfig.from_string(s.replace(ds, f"conv_k3_s2_c{channels}_relu"))


def filled(channels: int) -> float:
    """The widest multiplier (steps of 0.01) whose network is within the budget."""
    w = 1.2
    while predict(full_conv_first(w, channels), "pixel") > BUDGET:
        w = round(w - 0.01, 2)
    return w


def main():
    rows = [dict(model="MobileNetV3-Small 0.88", arch=mobilenet_v3_small(0.88))]
    for c in (16, 24):
        w = filled(c)
        rows.append(dict(model=f"V3-Small {w:g}, first block a full 3x3 conv to {c}", arch=full_conv_first(w, c)))
    recipe = Recipe(data="fmnist_cluttered", val_size=2000, test_images=5000, max_steps=1200, batch_size=64, lr=0.1)
    df = train_table(rows, recipe, SEEDS, "pixel", jobs=JOBS, desc="1200 steps")
    df.to_csv(HERE / "fullconv.csv", index=False)
    print(df[["model", "latency_ms", "macs", "params", "test_acc", "test_std", "test_acc_per_seed"]].to_string())


if __name__ == "__main__":  # the worker processes import this file
    main()
