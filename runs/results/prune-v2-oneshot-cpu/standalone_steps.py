"""Control for slim_steps.py: the plain MobileNetV2 1.0 proxy network (no slimming, no other passes) trained on the
same batches with the same optimizer and lr schedule; per-step loss and gradient norm.

    python runs/results/prune-v2-oneshot-cpu/standalone_steps.py <lr> [steps] [zero]

`zero`: each residual block's last BatchNorm scale starts at zero (the block starts as the identity).
"""
import sys

import torch
import torch.nn.functional as F

from mnas.data import config_args, load
from mnas.data.sets import batches
from mnas.nn.models import build, get_model
from mnas.nn.proxy import proxy_arch
from mnas.supernet.train import SupernetSettings, make_optimizer
from mnas.train import lr_at

lr, steps = float(sys.argv[1]), int(sys.argv[2]) if len(sys.argv) > 2 else 30
torch.set_num_threads(1)
torch.manual_seed(0)
data = load(**config_args({"name": "fmnist_cluttered", "val_size": 10000}, 0))
net = build(proxy_arch(get_model("mobilenet_v2", 1.0), 10, 8)).to(memory_format=torch.channels_last)
if len(sys.argv) > 3 and sys.argv[3] == "zero":
    arch = proxy_arch(get_model("mobilenet_v2", 1.0), 10, 8)
    for b, blk in zip(arch.blocks, net.blocks):
        if b.residual:
            torch.nn.init.zeros_(blk.bn3.weight)
s = SupernetSettings(lr=lr)
opt = make_optimizer(net, s)
it = iter(batches(data.train, 128, 32, shuffle=True, augment=True, seed=0, drop_last=True))
total = len(data.train) // 128
net.train()
for step in range(steps):
    x, y = next(it)
    rate = lr_at(step, total, lr, max(1, total // 30))
    for g in opt.param_groups:
        g["lr"] = rate
    opt.zero_grad()
    loss = F.cross_entropy(net(x), y, label_smoothing=0.1)
    loss.backward()
    gn = sum(float(p.grad.norm()) ** 2 for p in net.parameters() if p.grad is not None) ** 0.5
    opt.step()
    print(f"step {step:3d} lr {rate:.4f} loss {loss.item():.3f} grad norm {gn:.2f}", flush=True)
