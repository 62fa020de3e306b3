"""The slimmable MobileNetV2 1.0's first steps (largest + smallest + 2 random slimmings per step, in-place
distillation, the one-shot pruning's training) under three remedies; the largest's loss averaged per 10 steps.

    python runs/results/prune-v2-slimmable-lr/slim_variants.py <lr> <steps> <clip> <classifier lr factor>

clip > 0: the global gradient norm clipped to it before each update; factor != 1: the classifier's weight
steps at lr x factor (what classifier_lr=auto does, with the factor measured: 0.042 for this network).
"""
import sys

import torch

from mnas.data import config_args, load
from mnas.data.sets import batches
from mnas.nn.models import get_model
from mnas.prune.oneshot import OneShot, slimming
from mnas.supernet.train import SupernetSettings, elastic_net, make_optimizer, sandwich, train_step
from mnas.train import lr_at

lr, steps, clip, factor = float(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3]), float(sys.argv[4])
torch.set_num_threads(1)
torch.manual_seed(0)
data = load(**config_args({"name": "fmnist_cluttered", "val_size": 10000}, 0))
sl = slimming(get_model("mobilenet_v2", 1.0), "v2", OneShot())
s = SupernetSettings(epochs=1, n_random=2, smallest=True, resolution=32, max_stride=8, seed=0, lr=lr)
net = elastic_net(sl, data.num_classes, 8).to(memory_format=torch.channels_last)
opt = make_optimizer(net, s, factor)
if clip:
    update = opt.step

    def clipped_step(*a, **k):
        torch.nn.utils.clip_grad_norm_(net.parameters(), clip)
        return update(*a, **k)
    opt.step = clipped_step
it = iter(batches(data.train, 128, 32, shuffle=True, augment=True, seed=0, drop_last=True))
largest, smallest = sl.extreme(True), sl.extreme(False)
total = len(data.train) // 128
hist = []
for step in range(steps):
    x, y = next(it)
    rate = lr_at(step, total, lr, max(1, total // 30))
    for g in opt.param_groups:
        g["lr"] = rate * g.get("lr_scale", 1.0)
    losses = train_step(net, opt, sandwich(sl, step, 2, 0, largest, smallest), x, y, s)
    hist.append(losses[0])
    if step % 10 == 9:
        print(f"step {step + 1} lr {rate:.4f} largest mean10 {sum(hist[-10:]) / 10:.3f} "
              f"others {sum(losses[1:]) / 3:.3f}", flush=True)
