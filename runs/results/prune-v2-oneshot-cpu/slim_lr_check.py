"""Why the 1-epoch slimmable MobileNetV2 scores proposals at ~40%: its training loss at step 100 (3.26, above
chance's 2.30) says the early steps diverged. Train the same slimmable (same data, seed, settings) for the first
`steps` steps at another peak lr and print its log beside the cached run's (lr 0.1).

    python runs/results/prune-v2-oneshot-cpu/slim_lr_check.py <lr> <out dir> [steps]
"""
import dataclasses
import sys
from pathlib import Path

import pandas as pd

from mnas.data import config_args, load
from mnas.nn.models import get_model
from mnas.prune.oneshot import OneShot, slimming
from mnas.supernet.train import SupernetSettings, cache_dir, train_supernet

lr, out = float(sys.argv[1]), Path(sys.argv[2])
steps = int(sys.argv[3]) if len(sys.argv) > 3 else 100
data = load(**config_args({"name": "fmnist_cluttered", "val_size": 10000, "proxy_resolution": 32}, 0))
o = OneShot(lr=lr)
sl = slimming(get_model("mobilenet_v2", 1.0), "mobilenet_v2 x1", o)
s = SupernetSettings(epochs=1, n_random=2, smallest=True, resolution=32, max_stride=8, seed=0, lr=lr)
same = cache_dir(sl, data, dataclasses.replace(s, lr=0.1)).name == "b380094e0482490c"
print("the cached lr-0.1 run has these settings:", same, flush=True)
train_supernet(sl, data, s, out, max_steps=steps, checkpoint_every=50, progress=False)
print(pd.read_csv(out / "log.csv").to_string(index=False))
print(pd.read_csv("runs/supernets/b380094e0482490c/log.csv").head(2).to_string(index=False))
