"""Experiment: continue the cached 1-epoch supernet for N steps sampling its random sub-networks from the
latency band of the iso15 benchmark (13.5-16.5 ms pixel) or uniformly (control, same steps); then Kendall tau of
its estimates against the stand-alone accuracies of runs/results/rank_check-iso15/default (8 archs x 2 seeds)."""
import json, random, sys, time
from pathlib import Path
import pandas as pd, torch
from scipy import stats
from mnas.data import load, batches
from mnas.latency import predict
from mnas.nn.arch import ArchConfig
from mnas.search.estimators import SupernetEstimator
from mnas.supernet.train import make_optimizer, train_step
from mnas.train import lr_at

mode, steps = sys.argv[1], int(sys.argv[2])
torch.set_num_threads(1)
d = load("fmnist_cluttered", val_size=10000, seed=0)
est = SupernetEstimator(d, "v3_small", progress=False, n_random=3, smallest=False)
net, space, s = est.supernet, est.space, est.settings
ref = pd.read_csv("runs/results/rank_check-iso15/default/rank.csv")
archs = [ArchConfig.from_string(a) for a in ref["arch"]]
lo, hi = 13.5, 16.5

def draw(rng):
    for _ in range(200):
        a = space.random_arch(rng)
        if mode == "uniform" or lo <= predict(a, "pixel") <= hi:
            return a
    return a

opt = make_optimizer(net, s)
loader = batches(d.train, 128, 32, shuffle=True, augment=True, seed=123, drop_last=True)
it, rng, largest = iter(loader), random.Random(7), space.extreme(largest=True)
net.train(); t0 = time.time(); inband = 0
for step in range(steps):
    x, y = next(it)
    x = x.contiguous(memory_format=torch.channels_last)
    for g in opt.param_groups:
        g["lr"] = lr_at(step, steps, 0.02, max(1, steps // 10))
    sub = [draw(rng) for _ in range(3)]
    inband += sum(lo <= predict(a, "pixel") <= hi for a in sub)
    train_step(net, opt, [largest] + sub, x, y, s)
    if step % 10 == 0:
        print(f"{mode} step {step} {time.time() - t0:.0f} s", flush=True)
est.scores.clear(); est.vectors.clear()
accs = [est(a) for a in archs]
tau = stats.kendalltau(accs, ref["standalone_acc"])
tmac = stats.kendalltau(accs, ref["proxy_mmacs"])
out = dict(mode=mode, steps=steps, in_band_fraction=inband / (3 * steps), tau=tau.statistic, p=tau.pvalue,
           tau_vs_macs=tmac.statistic, estimates=accs, seconds=time.time() - t0)
print(json.dumps(out))
open(Path(__file__).parent / f"{mode}.json", "w").write(json.dumps(out, indent=1))  # band.json / uniform.json
