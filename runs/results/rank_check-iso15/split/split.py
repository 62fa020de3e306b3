"""Experiment (few-shot NAS, Zhao et al. 2021, one split): does splitting the supernet by stage 1's output width
rank the iso-15 ms archs better than the same training without the split?

Cause it tests (from ../widths-1ep/rank.csv): at 1000 stand-alone steps the three best of the eight archs are
exactly the three with stage 1 wider than 16 channels; the supernet's estimates do not order them so.

    split N:   copy the cached 1-epoch supernet once per stage-1 width w in {16, 24, 32}; continue each copy N steps
               with every sampled sub-network (largest of the split + 3 random) having s1_out = w; score each arch
               on the copy of its own width.
    uniform M: the same continued training without a split, M steps (control: M = 3N, equal cost).
Then Kendall tau of the estimates against the stand-alone accuracies (8 archs x 2 seeds, 1000 steps), and the
estimates of the 600-step comparison's archs (V3-Small 0.75, V3-Small 1.0, the finds of 12-05 and 12-06)."""
import copy, json, random, sys, time
from pathlib import Path
import pandas as pd, torch
from scipy import stats
from mnas.data import load, batches
from mnas.nn.arch import ArchConfig
from mnas.search.estimators import SupernetEstimator
from mnas.supernet.train import make_optimizer, train_step
from mnas.train import lr_at

mode, steps = sys.argv[1], int(sys.argv[2])
torch.set_num_threads(1)
here = Path(__file__).parent
d = load("fmnist_cluttered", val_size=10000, seed=0)
est = SupernetEstimator(d, "v3_small", progress=False, n_random=3, smallest=False)
base, space, s = est.supernet, est.space, est.settings
ref = pd.read_csv(here.parent / "widths-1ep" / "rank.csv")
archs = [ArchConfig.from_string(a) for a in ref["arch"]]
extra = {"V3-Small 0.75": ArchConfig.from_string(pd.read_csv("runs/compare/pixel/sn3ep-20261206/comparison.csv")
                                                 .set_index("model").loc["MobileNetV3-Small 0.75", "arch"]),
         "V3-Small 1.0": ArchConfig.from_string(pd.read_csv("runs/results/pixel-15ms-20261204-long600/comparison.csv")
                                                .set_index("model").loc["MobileNetV3-Small 1.0", "arch"]),
         "find 12-05 (trial 28)": ArchConfig.from_string(
             json.load(open("runs/results/pixel-15ms-20261205-tie/best.json"))["arch"]),
         "find 12-06 sn3ep (trial 23)": ArchConfig.from_string(
             json.load(open("runs/results/pixel-15ms-20261206-sn3ep/best.json"))["arch"])}


def s1(arch):
    return space.params_for(arch)["s1_out"]


def train(net, w, n, log):
    """Continue `net` n steps; sub-networks drawn with s1_out = w (w None: no split)."""
    fix = (lambda name, opts, f: w if name == "s1_out" and w is not None else f(opts))
    big = lambda opts: max(opts, key=lambda v: (v == "hswish", v) if isinstance(v, str) else v)  # noqa: E731
    largest = space.sample(lambda name, opts: fix(name, opts, big))
    opt = make_optimizer(net, s)
    loader = batches(d.train, 128, 32, shuffle=True, augment=True, seed=123, drop_last=True)
    it, rng, t0 = iter(loader), random.Random(7), time.time()
    net.train()
    for step in range(n):
        x, y = next(it)
        x = x.contiguous(memory_format=torch.channels_last)
        for g in opt.param_groups:
            g["lr"] = lr_at(step, n, 0.02, max(1, n // 10))
        sub = [space.sample(lambda name, opts: fix(name, opts, rng.choice)) for _ in range(3)]
        train_step(net, opt, [largest] + sub, x, y, s)
        if step % 10 == 0:
            print(f"{log} step {step}/{n} {time.time() - t0:.0f} s", flush=True)


def score(net, arch):
    est.supernet = net
    est.scores.clear(); est.vectors.clear()
    return est(arch)


t0 = time.time()
every = archs + list(extra.values())
if mode == "split":
    widths = sorted({s1(a) for a in every} | set(space.stages[1].out))
    nets = {}
    for w in widths:
        nets[w] = copy.deepcopy(base)
        train(nets[w], w, steps, f"split w={w}")
    pick = lambda a: nets[s1(a)]  # noqa: E731
else:
    net = copy.deepcopy(base)
    train(net, None, steps, "uniform")
    pick = lambda a: net  # noqa: E731
accs = [score(pick(a), a) for a in archs]
extras = {k: score(pick(a), a) for k, a in extra.items()}
tau = stats.kendalltau(accs, ref["standalone_acc"])
tmac = stats.kendalltau(accs, ref["proxy_mmacs"])
out = dict(mode=mode, steps=steps, tau=tau.statistic, p=tau.pvalue, tau_vs_macs=tmac.statistic,
           s1_out=[s1(a) for a in archs], standalone=list(ref["standalone_acc"]), estimates=accs,
           extra_estimates=extras, extra_s1_out={k: s1(a) for k, a in extra.items()}, seconds=time.time() - t0)
print(json.dumps(out))
(here / f"{mode}-{steps}.json").write_text(json.dumps(out, indent=1))
