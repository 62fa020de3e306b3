"""Zero-cost proxies on the 17 equal-latency archs of rank_check-iso15 (stand-alone accuracies reused).

    .venv/bin/python runs/results/rank_check-iso15/zerocost/zerocost.py [rank.csv] [out dir]

For each arch's proxy network (32 px, 10 classes, as stand-alone training builds it), at initialisation and
averaged over 3 initialisation seeds: NASWOT (Mellor et al. 2021: log|det K| of the activation-pattern kernel of
a batch of 64 training images), synflow (Tanaka et al. 2020: sum |theta * dR/dtheta| for R = sum of the output
of the |theta| network on an all-ones input, BatchNorm in eval mode, float64), SNIP (|theta * dL/dtheta| on a
batch), grad_norm (||dL/dtheta||), jacob_cov (Mellor et al. 2020, v1: the eigenvalues of the correlation of
the input-Jacobians of a batch) and the parameter count. Kendall tau with the stand-alone mean (2 seeds, 1000
steps) with a 90% bootstrap interval over the archs; written to zerocost.csv and summary.json.
"""
import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from scipy import stats
from torch import nn

from mnas.bench.rank_check import tau_interval
from mnas.data import batches, load_cached
from mnas.nn.arch import ArchConfig
from mnas.nn.models import build
from mnas.nn.proxy import proxy_arch

torch.set_num_threads(1)
HERE = Path(__file__).parent
rank_csv = Path(sys.argv[1]) if len(sys.argv) > 1 else HERE.parent / "sn3ep17" / "rank.csv"
out = Path(sys.argv[2]) if len(sys.argv) > 2 else HERE
ACTS = (nn.ReLU, nn.ReLU6, nn.Hardswish)


def net_of(arch_string, seed):
    return build(proxy_arch(ArchConfig.from_string(arch_string), num_classes=10), seed=seed)


def naswot(net, x):
    codes = []
    hooks = [m.register_forward_pre_hook(lambda m, inp: codes.append((inp[0] > 0).flatten(1).double()))
             for m in net.modules() if isinstance(m, ACTS)]
    net.train()
    with torch.no_grad():
        net(x)
    for h in hooks:
        h.remove()
    c = torch.cat(codes, 1)
    k = c @ c.t() + (1 - c) @ (1 - c).t()
    return torch.linalg.slogdet(k)[1].item()


def synflow(net, x):
    net = net.double().eval()
    signs = {}
    with torch.no_grad():
        for name, p in net.state_dict().items():
            signs[name] = torch.sign(p)
            p.abs_()
    net.zero_grad()
    net(torch.ones_like(x[:1]).double()).sum().backward()
    s = sum((p * p.grad).abs().sum().item() for p in net.parameters() if p.grad is not None)
    return float(np.log(s + 1e-300))


def grads(net, x, y):
    net.train()
    net.zero_grad()
    F.cross_entropy(net(x), y).backward()
    snip = sum((p * p.grad).abs().sum().item() for p in net.parameters() if p.grad is not None)
    gn = sum(p.grad.pow(2).sum().item() for p in net.parameters() if p.grad is not None) ** 0.5
    return snip, gn


def jacob_cov(net, x):
    net.train()
    x = x.clone().requires_grad_(True)
    net.zero_grad()
    net(x).sum().backward()
    j = x.grad.flatten(1).double()
    corr = torch.corrcoef(j)
    v = torch.linalg.eigvalsh(corr).clamp_min(0)
    k = 1e-5
    return -float(torch.sum(torch.log(v + k) + 1.0 / (v + k)))


def main():
    df = pd.read_csv(rank_csv)
    data = load_cached("fmnist_cluttered", val_size=10000, seed=0)
    x, y = next(iter(batches(data.train, 64, 32, shuffle=True, seed=0, channels=3)))
    rows = []
    for s in df.arch:
        r = {"arch": s}
        vals = {k: [] for k in ("naswot", "synflow", "snip", "grad_norm", "jacob_cov")}
        for seed in range(3):
            vals["naswot"].append(naswot(net_of(s, seed), x))
            vals["synflow"].append(synflow(net_of(s, seed), x))
            sn, gn = grads(net_of(s, seed), x, y)
            vals["snip"].append(sn)
            vals["grad_norm"].append(gn)
            vals["jacob_cov"].append(jacob_cov(net_of(s, seed), x))
        r.update({k: float(np.mean(v)) for k, v in vals.items()})
        r["params"] = sum(p.numel() for p in net_of(s, 0).parameters())
        rows.append(r)
        print(f"{len(rows)}/{len(df)}", {k: round(v, 3) for k, v in r.items() if k != "arch"}, flush=True)
    z = pd.DataFrame(rows)
    z = df[["arch", "latency_ms", "proxy_mmacs", "hand", "supernet_acc", "standalone_acc"]].merge(z, on="arch")
    z.to_csv(out / "zerocost.csv", index=False)
    summary = {}
    for col in ("naswot", "synflow", "snip", "grad_norm", "jacob_cov", "params", "proxy_mmacs", "supernet_acc"):
        tau = stats.kendalltau(z[col], z.standalone_acc).statistic
        summary[col] = {"tau": round(float(tau), 3),
                        "tau_90": [round(v, 2) for v in tau_interval(z[col], z.standalone_acc)]}
        print(f"{col:12s} tau {tau:+.3f}  90% {summary[col]['tau_90']}")
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")


if __name__ == "__main__":
    main()
