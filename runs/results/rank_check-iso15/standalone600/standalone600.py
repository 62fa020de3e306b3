"""A short stand-alone training as the estimator, on the 17 equal-latency archs of rank_check-iso15 (their 1000-step,
2-seed stand-alone accuracies reused as the reference).

    .venv/bin/python runs/results/rank_check-iso15/standalone600/standalone600.py SEEDS [JOBS]

Each arch's proxy network trained from scratch with the 600-step recipe of the README's comparisons (600 steps of
64 images, lr 0.1, cosine, BatchNorm re-estimated), on the search's split of cluttered Fashion-MNIST (50k train /
10k val, the reference's split), with training seeds 100 .. 100 + SEEDS - 1: seeds neither the reference (0, 1)
nor mnas.compare (0, 1, 2) use, so the estimate is an independent draw. This is the signal of the search's re-rank
stage (`rerank.k`, mnas.search.rerank). Trainings are cached in runs/compare/cache (a rerun trains what is
missing). Writes standalone600.csv and summary.json: Kendall tau of each seed and of the seeds' mean against the
reference mean, with 90% bootstrap intervals over the archs, beside MACs' and the reference's own seed-to-seed tau.
"""
import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import stats

from mnas.bench.rank_check import tau_interval
from mnas.compare.run import Recipe, train_all
from mnas.nn.arch import ArchConfig

HERE = Path(__file__).parent
SEEDS = int(sys.argv[1]) if len(sys.argv) > 1 else 1
JOBS = int(sys.argv[2]) if len(sys.argv) > 2 else 2
FIRST = 100


def main():
    ref = pd.read_csv(HERE.parent / "sn3ep17" / "rank.csv")
    recipe = Recipe(data="fmnist_cluttered", val_size=10000, max_steps=600, batch_size=64, lr=0.1)
    rows = [dict(model=h if isinstance(h, str) else f"arch {i}", arch=ArchConfig.from_string(a), proxy_resolution=32)
            for i, (a, h) in enumerate(zip(ref["arch"], ref["hand"]))]
    results, trained = train_all(rows, recipe, recipe.load_data(), SEEDS, Path("runs/compare/cache"), jobs=JOBS,
                                 first_seed=FIRST, desc="stand-alone 600")
    for s in range(FIRST, FIRST + SEEDS):
        ref[f"val_seed{s}"] = [results[i, s]["val_acc"] for i in range(len(rows))]
        ref[f"seconds_seed{s}"] = [results[i, s]["seconds"] for i in range(len(rows))]
    seeds = range(FIRST, FIRST + SEEDS)
    cols = [f"val_seed{s}" for s in seeds]
    ref["estimate"] = ref[cols].mean(axis=1)
    ref.drop(columns=["supernet_acc", "supernet_s"]).to_csv(HERE / "standalone600.csv", index=False)
    y = ref["standalone_acc"]
    tau = lambda x: float(stats.kendalltau(x, y)[0])  # noqa: E731
    summary = {"n": len(ref), "seeds": list(range(FIRST, FIRST + SEEDS)), "recipe": recipe.__dict__,
               "per_seed_tau": {c: tau(ref[c]) for c in cols},
               "mean_tau": tau(ref["estimate"]), "mean_tau_90": tau_interval(ref["estimate"], y),
               "macs_tau": tau(ref["proxy_mmacs"]), "macs_tau_90": tau_interval(ref["proxy_mmacs"], y),
               "reference_seed_to_seed_tau": float(stats.kendalltau(ref["standalone_seed0"],
                                                                    ref["standalone_seed1"])[0]),
               "seconds_per_training": float(np.mean([ref[f"seconds_seed{s}"].mean() for s in seeds])),
               "trained_now": trained}
    if SEEDS > 1:
        summary["seed_to_seed_tau"] = float(stats.kendalltau(ref[cols[0]], ref[cols[1]])[0])
    (HERE / "summary.json").write_text(json.dumps(summary, indent=1))
    print(json.dumps(summary, indent=1))
    print(ref.sort_values("estimate")[["hand", "latency_ms", "proxy_mmacs", "standalone_acc", *cols, "estimate"]]
          .to_string())


if __name__ == "__main__":  # the worker processes import this file
    main()
