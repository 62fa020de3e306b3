"""How much of the supernet estimate at equal latency is evaluation noise? Same supernet (seed 0, cached), the 17
archs of runs/results/rank_check-iso15/union17: (a) BatchNorm re-estimated on other training images, (b) the
validation split cut into two halves. Kendall tau between the variants, and of each against stand-alone."""
import json
import sys

import pandas as pd
import torch
from scipy.stats import kendalltau

from mnas.data import batches, config_args, load_cached
from mnas.nn.arch import ArchConfig
from mnas.search.estimators import SupernetEstimator
from mnas.supernet.evaluate import correct
from mnas.train import reestimate_bn

out = sys.argv[1]
rank = pd.read_csv("runs/results/rank_check-iso15/union17/rank.csv")
archs = [ArchConfig.from_string(a) for a in rank.arch]
cfg = {"name": "fmnist_cluttered", "root": None, "val_size": 10000, "train_subset": None, "proxy_resolution": 32}
data = load_cached(**config_args(cfg, 0))
est = SupernetEstimator(data, "v3_small", resolution=32, seed=0, progress=False)
calib = {0: est.calib}
for s in (1, 2):
    feed = batches(data.train, 128, 32, shuffle=True, seed=100 + s)
    calib[s] = [x.to(memory_format=torch.channels_last) for _, (x, _) in zip(range(8), feed)]
rows = []
torch.set_grad_enabled(False)
for i, arch in enumerate(archs):
    row = {"arch": i, "standalone": rank.standalone_acc[i]}
    for s, c in calib.items():
        v = correct(reestimate_bn(est.supernet.extract(arch).to(memory_format=torch.channels_last), c), est.val)
        row[f"calib{s}"] = v.mean().item()
        if s == 0:
            row["half_a"], row["half_b"] = v[::2].mean().item(), v[1::2].mean().item()
    rows.append(row)
    print(row, flush=True)
df = pd.DataFrame(rows)
df.to_csv(f"{out}/calib_noise.csv", index=False)
t = lambda a, b: round(kendalltau(df[a], df[b])[0], 3)  # noqa: E731
summary = {"calib0_vs_calib1": t("calib0", "calib1"), "calib0_vs_calib2": t("calib0", "calib2"),
           "calib1_vs_calib2": t("calib1", "calib2"), "half_a_vs_half_b": t("half_a", "half_b"),
           **{f"{c}_vs_standalone": t(c, "standalone") for c in ("calib0", "calib1", "calib2", "half_a", "half_b")}}
summary["calib_mean_vs_standalone"] = round(kendalltau(df[["calib0", "calib1", "calib2"]].mean(1), df.standalone)[0], 3)
json.dump(summary, open(f"{out}/calib_noise.json", "w"), indent=1)
print(summary)
