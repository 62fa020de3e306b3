"""Ranking-ceiling benchmark: how well can a proxy task tell the search space's architectures apart?

    python -m mnas.bench.proxy_check data=fmnist_cluttered n=8 seeds=3 epochs=1
    python -m mnas.bench.proxy_check resume=runs/proxy_check/fmnist_cluttered/<time>   # finish (or add seeds=4)

Picks `n` archs spread evenly (in log MACs) from the space's smallest to its largest, trains each stand-alone on
the proxy (its `mnas.nn.proxy.proxy_arch` variant, by `mnas.train.train_from_scratch`) once per seed, and
measures how repeatable the ranking is. The seed-to-seed Kendall tau (mean over seed pairs) is the ceiling any
accuracy estimator can reach on this proxy and budget: a supernet cannot rank archs better than retraining them
does. Writes, under
runs/proxy_check/<data>/<timestamp>/: config.yaml (incl. the picked archs), runs.csv (one row per finished
(arch, seed), appended as it finishes; resume skips them), proxy_check.csv (one row per arch: SUMMARY_COLUMNS
then acc_seed<k>..., mean, std), ranking.png (mean accuracy +- std vs MACs and vs Pixel-1 latency), report.md.
"""
import csv
import inspect
import itertools
import math
import random
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

import numpy as np
import pandas as pd
import yaml
from scipy.stats import kendalltau
from tqdm import tqdm

from mnas import data as datasets
from mnas.cli import new_run_dir, register_schema
from mnas.errors import UserError
from mnas.latency import predict
from mnas.nn.arch import ArchConfig
from mnas.nn.proxy import proxy_arch
from mnas.nn.space import load_space
from mnas.nn.stats import count
from mnas.train import train_from_scratch
from mnas.workers import run_jobs

RUN_COLUMNS = ["arch", "seed", "val_acc", "val_loss", "steps", "images", "img_per_s", "seconds"]
SUMMARY_COLUMNS = ["arch", "macs", "proxy_macs", "params", "pixel_ms"]  # then acc_seed<k>..., mean, std
SPREADS = ("macs", "pixel")


def _size(v):
    """Order of a choice from cheap to costly (as Space.extreme orders them): numbers, False<True, relu<hswish."""
    return (v == "hswish", v) if isinstance(v, str) else v


def pick_archs(space, n, pool=1000, seed=0, spread="macs"):
    """`n` distinct archs of `space`, its smallest and largest included, closest to n targets evenly spaced in
    log(MACs) (or log predicted Pixel-1 ms) between them. Candidates: `pool` archs sampled with a per-arch size
    bias drawn uniformly, so that every size is represented (plain random sampling rarely goes near the ends)."""
    if spread not in SPREADS or n < 2:
        raise UserError(f"spread={spread!r}, n={n}: spread is one of {', '.join(SPREADS)} and n >= 2")
    rng = random.Random(seed)

    def biased():
        q = rng.random()
        return space.sample(lambda name, options: sorted(options, key=_size)[
            min(len(options) - 1, max(0, int((q + rng.gauss(0, 0.25)) * len(options))))])

    cands = {a.to_string(): a for a in [space.extreme(False), space.extreme(True), *(biased() for _ in range(pool))]}
    if len(cands) < n:
        raise UserError(f"the space {space.name} gave only {len(cands)} distinct archs for n={n}: lower n")
    archs = list(cands.values())
    value = np.log([count(a).macs if spread == "macs" else predict(a, "pixel") for a in archs])
    chosen = []
    for target in np.linspace(value.min(), value.max(), n):
        free = [i for i in np.argsort(np.abs(value - target), kind="stable") if i not in chosen]
        chosen.append(free[0])
    return [archs[i] for i in sorted(chosen, key=lambda i: value[i])]


def describe(arch, num_classes, resolution, max_stride):
    """The SUMMARY_COLUMNS of one arch: deployment MACs/params/Pixel-1 ms and the proxy variant's MACs."""
    proxy = proxy_arch(arch, num_classes, max_stride)
    return {"arch": arch.to_string(), "macs": count(arch).macs, "params": count(arch).params,
            "proxy_macs": count(proxy, resolution).macs if resolution >= 32 else None,  # ArchConfig needs >= 32
            "pixel_ms": predict(arch, "pixel")}


def summarise(runs, info):
    """(per-arch table, statistics) from runs (RUN_COLUMNS rows) and info (SUMMARY_COLUMNS rows, in order)."""
    acc = runs.pivot_table(index="arch", columns="seed", values="val_acc")
    seeds = list(acc.columns)
    table = pd.DataFrame(info)[SUMMARY_COLUMNS].set_index("arch")
    for s in seeds:
        table[f"acc_seed{s}"] = acc[s]
    cols = [f"acc_seed{s}" for s in seeds]
    table["mean"] = table[cols].mean(axis=1)
    table["std"] = table[cols].std(axis=1, ddof=1) if len(seeds) > 1 else 0.0
    table = table.reset_index()

    def tau(a, b):
        ok = a.notna() & b.notna()
        return kendalltau(a[ok], b[ok]).statistic if ok.sum() >= 2 else math.nan

    pairs = list(itertools.combinations(cols, 2))
    done = table["mean"].notna()
    stats = {"archs": int(done.sum()), "seeds": len(seeds), "trainings": len(runs),
             "acc_min": table["mean"].min(), "acc_max": table["mean"].max(),
             "acc_range": table["mean"].max() - table["mean"].min(),
             "seed_diff": np.nanmean([(table[a] - table[b]).abs().mean() for a, b in pairs]) if pairs else math.nan,
             "seed_tau": np.nanmean([tau(table[a], table[b]) for a, b in pairs]) if pairs else math.nan,
             "tau_macs": tau(table["mean"], table["macs"]), "tau_pixel": tau(table["mean"], table["pixel_ms"]),
             "train_s_per_arch": runs["seconds"].mean(),
             "img_per_s": runs["images"].sum() / (runs["images"] / runs["img_per_s"]).sum(),
             "train_s_total": runs["seconds"].sum()}
    return table, stats


def plot(table, stats, title, path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, axes = plt.subplots(1, 2, figsize=(10, 4), sharey=True)
    for ax, x, label in ((axes[0], table["macs"] / 1e6, "MMACs at 224x224"),
                         (axes[1], table["pixel_ms"], "predicted Pixel-1 latency (ms)")):
        ax.errorbar(x, table["mean"] * 100, yerr=table["std"] * 100, fmt="o", capsize=3)
        ax.set_xscale("log")  # the archs are spread evenly in log MACs
        ax.set_xlabel(label + ", log scale")
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("proxy val accuracy (%), mean +- std over seeds")
    fig.suptitle(f"{title}\nseed-to-seed tau {stats['seed_tau']:.2f}, tau(acc, MACs) {stats['tau_macs']:.2f}, "
                 f"range {stats['acc_range'] * 100:.1f} pts", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def markdown(table):
    """The per-arch table as Markdown: MACs in millions, accuracies in %."""
    accs = [k for k in table.columns if k.startswith("acc_seed")]
    head = ["#", "MMACs", "proxy MMACs", "params (M)", "Pixel-1 ms", *accs, "mean", "std"]
    rows = [[str(i), f"{r.macs / 1e6:.1f}", "-" if pd.isna(r.proxy_macs) else f"{r.proxy_macs / 1e6:.1f}",
             f"{r.params / 1e6:.2f}", f"{r.pixel_ms:.1f}", *(f"{getattr(r, k) * 100:.2f}" for k in accs),
             f"{r.mean * 100:.2f}", f"{r.std * 100:.2f}"] for i, r in enumerate(table.itertuples())]
    return "\n".join("| " + " | ".join(cells) + " |" for cells in [head, ["---"] * len(head), *rows])


def format_stats(s):
    return (f"{s['archs']} archs x {s['seeds']} seeds: accuracy {s['acc_min'] * 100:.1f}-{s['acc_max'] * 100:.1f}% "
            f"(range {s['acc_range'] * 100:.1f} pts), mean seed-to-seed difference {s['seed_diff'] * 100:.2f} pts, "
            f"seed-to-seed Kendall tau {s['seed_tau']:.2f}, tau(mean acc, MACs) {s['tau_macs']:.2f}, "
            f"tau(mean acc, Pixel-1 ms) {s['tau_pixel']:.2f}; {s['train_s_per_arch']:.0f} s per training (incl. "
            f"evaluation), {s['img_per_s']:.0f} img/s while training, {s['train_s_total'] / 60:.1f} min in all")


def load_data(c: dict):
    """The benchmark's dataset (once per process: workers run many trainings)."""
    return datasets.load_cached(c["data"], root=c["data_root"], val_size=c["val_size"], seed=0,
                                train_subset=c["train_subset"], **c["data_options"])


def train_one(c: dict, arch_string: str, seed: int, ds=None, threads=None) -> list:
    """One stand-alone training of the benchmark (in this process or a worker): a runs.csv row."""
    ds = ds or load_data(c)
    _, m = train_from_scratch(ArchConfig.from_string(arch_string), ds, c["max_stride"], seed, epochs=c["epochs"],
                              max_steps=c["max_steps"], batch_size=c["batch_size"], lr=c["lr"],
                              resolution=c["resolution"], threads=threads, progress=False)
    images = m["steps"] * min(c["batch_size"], len(ds.train))
    return [arch_string, seed, m["val_acc"], m["val_loss"], m["steps"], images, m["img_per_s"], m["seconds"]]


def run_proxy_check(data="fmnist_cluttered", data_root=None, data_options=None, val_size=10000, train_subset=None,
                    resolution=32, space="v3_small", n=8, seeds=3, epochs=1, max_steps=None, batch_size=128, lr=0.1,
                    max_stride=8, threads=None, pool=1000, spread="macs", pick_seed=0, out_dir=None, resume=None,
                    progress=True, jobs=1):
    """Run (or resume: resume=<run dir>, whose saved settings win except `seeds`, `threads`, `progress`; a
    larger `seeds` adds seeds) the benchmark described in the module docstring. Returns {"table": DataFrame,
    "stats": dict, "out_dir": Path}."""
    start = time.perf_counter()
    if resume:
        out_dir = Path(resume)
        if not (out_dir / "config.yaml").is_file():
            raise UserError(f"resume={resume} is not a proxy_check run directory (no config.yaml there)")
        c = dict(yaml.safe_load((out_dir / "config.yaml").read_text()), seeds=seeds)
    else:
        c = {k: v for k, v in locals().items() if k not in ("progress", "threads", "resume", "start", "jobs")}
        c["data_options"] = dict(data_options or {})
        out_dir = Path(out_dir) if out_dir else None
        if out_dir and (out_dir / "config.yaml").exists():
            raise UserError(f"{out_dir} already holds a proxy_check run: pass resume={out_dir} to continue it")
    loader = datasets.LOADERS.get(c["data"])
    known = set(inspect.signature(loader).parameters) - {"root"} if loader else set()
    if unknown := set(c["data_options"]) - known:
        raise UserError(f"data_options {sorted(unknown)} are not options of the {c['data']} loader: "
                        f"use {sorted(known) or 'none'} (data.root= sets the folder)")
    ds = load_data(c)
    if not resume:
        c["archs"] = [a.to_string() for a in pick_archs(load_space(space), n, pool, pick_seed, spread)]
        out_dir = out_dir or new_run_dir("proxy_check", data)
        out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "config.yaml").write_text(yaml.safe_dump(c, sort_keys=False))
    archs = [ArchConfig.from_string(s) for s in c["archs"]]
    info = [describe(a, ds.num_classes, c["resolution"], c["max_stride"]) for a in archs]
    runs_path = out_dir / "runs.csv"
    if not runs_path.exists():
        runs_path.write_text(",".join(RUN_COLUMNS) + "\n")
    done = {(r["arch"], int(r["seed"])) for r in csv.DictReader(runs_path.open())}
    # arch by arch (all its seeds, then the next arch): a run stopped early still has complete rows
    todo = [(s, a) for a in archs for s in range(c["seeds"]) if (a.to_string(), s) not in done]
    print(f"proxy_check on {c['data']} ({len(ds.train)} train / {len(ds.val)} val images, {c['resolution']}px, "
          f"epochs={c['epochs']}, max_steps={c['max_steps']}): {len(archs)} archs x {c['seeds']} seeds, "
          f"{len(todo)} trainings to do -> {out_dir}")
    bar = tqdm(total=len(todo), desc="proxy_check", unit="training", disable=not progress)

    tasks = [(None, (c, arch.to_string(), seed)) for seed, arch in todo]
    for _, row in run_jobs(tasks, jobs, train_one, lambda c_, arch, seed: train_one(c_, arch, seed, ds, threads)):
        with runs_path.open("a", newline="") as f:  # each finished training is kept: a killed run resumes
            csv.writer(f).writerow(row)
        bar.update()
    bar.close()
    table, stats = summarise(pd.read_csv(runs_path), info)
    stats["wall_s"] = time.perf_counter() - start
    table.to_csv(out_dir / "proxy_check.csv", index=False)
    title = (f"proxy_check {c['data']} {c['resolution']}px, epochs={c['epochs']}, max_steps={c['max_steps']}, "
             f"train_subset={c['train_subset']}")
    plot(table, stats, title, out_dir / "ranking.png")
    (out_dir / "report.md").write_text(
        f"# {title}\n\n{format_stats(stats)}; wall time of the last invocation {stats['wall_s'] / 60:.1f} min.\n\n"
        + markdown(table) + "\n\nArchs (rows):\n\n"
        + "\n".join(f"{i}. `{a}`" for i, a in enumerate(table["arch"])) + "\n")
    print(format_stats(stats) + f"; wall time {stats['wall_s'] / 60:.1f} min -> {out_dir}")
    return {"table": table, "stats": stats, "out_dir": out_dir}


@dataclass
class ProxyCheckConfig:
    """The schema of `python -m mnas.bench.proxy_check` (conf/proxy_check.yaml lists it first; values and
    comments in the YAML)."""
    data: Any = None
    space: str = "v3_small"
    n: int = 8
    seeds: int = 3
    epochs: int = 1
    max_steps: Optional[int] = None
    batch_size: int = 128
    lr: float = 0.1
    max_stride: int = 8
    threads: Optional[int] = 1
    jobs: int = 1
    pool: int = 1000
    spread: str = "macs"
    pick_seed: int = 0
    data_options: Optional[Any] = None
    resume: Optional[str] = None
    out_dir: Optional[str] = None


register_schema("proxy_check", ProxyCheckConfig)


def main(cfg):
    """Hydra config (conf/proxy_check.yaml + conf/data/<name>.yaml) -> plain arguments -> run_proxy_check."""
    from mnas.cli import to_plain
    c = to_plain(cfg)
    d = c.pop("data")
    return run_proxy_check(data=d["name"], data_root=d.get("root"), val_size=d.get("val_size", 0.1),
                           train_subset=d.get("train_subset"), resolution=d.get("proxy_resolution", 32), **c)


if __name__ == "__main__":
    from mnas.cli import hydra_main
    hydra_main("proxy_check", main)
