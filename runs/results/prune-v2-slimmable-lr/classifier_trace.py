"""Per-step trace of a plain proxy network's first steps (the supernet recipe: SGD Nesterov, batch 128, warm-up
then cosine over one epoch, label smoothing 0.1): loss, batch accuracy, the classifier input's E|f|^2 and the
part of it that is the batch's common mean, the spread of the batch's mean logits across classes ("prior") and
of the logits around them, and how many classes the batch's predictions use.

    python runs/results/prune-v2-slimmable-lr/classifier_trace.py <model> <width> <data> <lr> <steps>
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

model, width, dname, lr, steps = sys.argv[1], float(sys.argv[2]), sys.argv[3], float(sys.argv[4]), int(sys.argv[5])
torch.set_num_threads(1)
torch.manual_seed(0)
data = load(**config_args({"name": dname, "val_size": 10000}, 0))
net = build(proxy_arch(get_model(model, width), 10, 8)).to(memory_format=torch.channels_last)
feats = {}
net.classifier.fc.register_forward_hook(lambda m, i, o: feats.__setitem__("f", i[0].detach()))
opt = make_optimizer(net, SupernetSettings(lr=lr))
it = iter(batches(data.train, 128, 32, shuffle=True, augment=True, seed=0, drop_last=True))
total = len(data.train) // 128
net.train()
for step in range(steps):
    x, y = next(it)
    rate = lr_at(step, total, lr, max(1, total // 30))
    for g in opt.param_groups:
        g["lr"] = rate
    opt.zero_grad()
    logits = net(x)
    loss = F.cross_entropy(logits, y, label_smoothing=0.1)
    loss.backward()
    opt.step()
    f, z = feats["f"], logits.detach()
    prior = z.mean(0)
    print(f"step {step:3d} lr {rate:.4f} loss {loss.item():.3f} acc {(z.argmax(1) == y).float().mean():.2f} "
          f"|f|^2 {float((f * f).sum(1).mean()):.1f} mean-f^2 {float((f.mean(0) ** 2).sum()):.1f} "
          f"prior spread {prior.std():.2f} within {(z - prior).std():.2f} "
          f"classes predicted {len(set(z.argmax(1).tolist()))}", flush=True)
