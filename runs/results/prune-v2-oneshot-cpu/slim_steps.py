"""Per-step losses of the slimmable MobileNetV2's first steps (largest, narrowest, 2 random slimmings), at the
recipe's lr schedule, to see where its training leaves the chance level (2.30) upwards.

    python runs/results/prune-v2-oneshot-cpu/slim_steps.py <lr> [steps]
"""
import sys

import torch

from mnas.data import config_args, load
from mnas.data.sets import batches
from mnas.nn.models import get_model
from mnas.prune.oneshot import OneShot, slimming
from mnas.supernet.train import SupernetSettings, elastic_net, make_optimizer, sandwich, train_step
from mnas.train import lr_at

lr, steps = float(sys.argv[1]), int(sys.argv[2]) if len(sys.argv) > 2 else 30
torch.set_num_threads(1)
torch.manual_seed(0)
data = load(**config_args({"name": "fmnist_cluttered", "val_size": 10000}, 0))
sl = slimming(get_model("mobilenet_v2", 1.0), "v2", OneShot())
s = SupernetSettings(epochs=1, n_random=2, smallest=True, resolution=32, max_stride=8, seed=0, lr=lr)
net = elastic_net(sl, data.num_classes, 8).to(memory_format=torch.channels_last)
opt = make_optimizer(net, s)
it = iter(batches(data.train, 128, 32, shuffle=True, augment=True, seed=0, drop_last=True))
largest, smallest = sl.extreme(True), sl.extreme(False)
total = len(data.train) // 128
for step in range(steps):
    x, y = next(it)
    rate = lr_at(step, total, lr, max(1, total // 30))  # as train_supernet
    for g in opt.param_groups:
        g["lr"] = rate
    losses = train_step(net, opt, sandwich(sl, step, 2, 0, largest, smallest), x, y, s)
    gn = sum(float(p.grad.norm()) ** 2 for p in net.parameters() if p.grad is not None) ** 0.5
    print(f"step {step:3d} lr {rate:.4f} largest {losses[0]:.3f} smallest KL {losses[1]:.3f} "
          f"random KL {losses[2]:.3f} {losses[3]:.3f} grad norm {gn:.2f}", flush=True)
