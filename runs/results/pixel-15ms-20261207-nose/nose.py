"""Can MobileNetV3-Small 1.0's accuracy fit in pixel 15 ms by dropping the choices this proxy does not reward?
(issue 27)

    .venv/bin/python runs/results/pixel-15ms-20261207-nose/nose.py [SEEDS] [JOBS]

On six seeds at 1200 steps MobileNetV3-Small 0.75, 0.87 and 0.88 and the cpu 1.5 ms find all score 80.6-80.9%, and
V3-Small 1.0 (17.19 ms on the Pixel-1 table) 81.55% (../cpu-1.5ms-20261207-six-seeds/): a find must reach 1.0's
accuracy inside 15 ms to win by the rule. On the Pixel-1 table V3-Small 1.0's squeeze-excite modules cost 1.6 ms and
its 5x5 kernels 1.1 ms over 3x3 while adding few MACs, and among 17 equal-latency archs trained stand-alone the
accuracy does not rise with kernel size (tau 0.00) or SE (tau -0.10) (../rank_check-iso15/sn3ep17-rk/bias.csv).
Here: V3-Small without SE, and without SE and with 3x3 kernels, each at the width multiplier that fills 15 ms on
the Pixel-1 table (deployment shape 224 px, 1000 classes), against MobileNetV3-Small 0.88 (the width that fills
15 ms; its six runs are those of ../width-neighbours-20261207/) and 1.0. Both are points of the `v3_small` space.
One recipe and seeds for all (1200 steps of 64, lr 0.1 cosine, proxy val 2000, proxy test on 5000 images of
cluttered Fashion-MNIST at 32 px, seeds 0..SEEDS-1, default 6). Writes nose.csv.
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


def variant(width: float, k3: bool) -> ArchConfig:
    """V3-Small at `width` with every squeeze-excite module removed (the first block's too), and with k3 its
    inverted-residual blocks' 5x5 depthwise kernels made 3x3."""
    s = re.sub(r"_se\d+", "", mobilenet_v3_small(width).to_string())
    return ArchConfig.from_string(re.sub(r"(ir_)k5_", r"\1k3_", s) if k3 else s)


def filled(k3: bool) -> float:
    """The widest multiplier (steps of 0.01) whose network is within the budget."""
    w = 1.2
    while predict(variant(w, k3), "pixel") > BUDGET:
        w = round(w - 0.01, 2)
    return w


def main():
    rows = [dict(model=f"MobileNetV3-Small {w}", arch=mobilenet_v3_small(w)) for w in (0.88, 1.0)]
    for k3 in (False, True):
        w = filled(k3)
        rows.append(dict(model=f"V3-Small {w:g}, no SE" + (", 3x3 kernels" if k3 else ""), arch=variant(w, k3)))
    recipe = Recipe(data="fmnist_cluttered", val_size=2000, test_images=5000, max_steps=1200, batch_size=64, lr=0.1)
    df = train_table(rows, recipe, SEEDS, "pixel", jobs=JOBS, desc="1200 steps")
    df.to_csv(HERE / "nose.csv", index=False)
    print(df[["model", "latency_ms", "macs", "params", "test_acc", "test_std", "test_acc_per_seed"]].to_string())


if __name__ == "__main__":  # the worker processes import this file
    main()
