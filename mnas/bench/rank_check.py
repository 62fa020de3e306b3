"""Benchmark: does the supernet rank architectures as stand-alone training does?

    python -m mnas.bench.rank_check n=12 seeds=[0,1,2] standalone.epochs=1

picks n archs spread evenly over the space's latency range (not only its extremes, which the sandwich rule
trains every step and so flatters), scores each with the supernet and with stand-alone training
(mnas.search.estimators.TrainEstimator) under several seeds, and writes to runs/rank_check/<device>/<timestamp>/:
rank.csv (one row per arch: supernet_acc, standalone_acc = mean over seeds, one standalone_seed<s> column per
seed, latency, supernet_s per estimate, standalone_s summed over seeds), rank.png (scatter), summary.json, and
bias.csv (which kinds of choice, kernel, SE, widths..., the estimate favours beyond stand-alone: mnas.bench.bias).
It prints Kendall tau and Spearman rho between the two, and the stand-alone reference's own seed-to-seed tau:
the ceiling, since no estimator can agree with the reference better than the reference agrees with itself.
Rerun with out_dir=<that folder> to resume.

    python -m mnas.bench.rank_check reference=runs/proxy_check/fmnist_cluttered/<time> n=10

reuses a finished (or partial) mnas.bench.proxy_check run as the stand-alone reference: its archs, its accuracies per
seed and its training recipe (epochs, max_steps, batch, lr); cells it lacks are trained here with that recipe,
and n above its arch count adds archs in the widest latency gaps between its archs (trained here, per seed).
fill_ms=[lo, hi] puts those added archs in the widest gaps inside that latency range instead (e.g. around a
search budget, where a search must tell archs apart, and cheaper to train than the gaps among the largest archs).

    python -m mnas.bench.rank_check iso_ms=15 n=8 standalone.max_steps=1000 standalone.epochs=3 'seeds=[0,1]'

picks n archs of (nearly) equal latency instead, all within +-10% of iso_ms (or inside window_ms=[lo, hi]) and
spread over their MACs, plus the V3 hand designs the space can express inside that window (the `hand` column):
does the supernet tell apart what a latency-constrained search must, and does it do better than counting MACs
there (summary.json's standalone_vs_macs_tau against kendall_tau)?

    python -m mnas.bench.rank_check iso_ms=15 n=8 standalone_from=<that run> estimator.finetune_steps=50

scores that run's archs with another estimator setting and reuses its stand-alone accuracies (the costly part)
instead of training them again; the archs are read from its rank.csv, so they need only be points of the space
(a wider version of the space still scores them). `standalone_from='[<run>, <run>]'` scores the archs of several
runs together (e.g. two sets of equal-latency archs picked with different pick_seed), one ranking over all.
"""
from __future__ import annotations

import itertools
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import numpy as np
import pandas as pd
from scipy import stats

from mnas.bench.bias import bias_table
from mnas.bench.picks import fill_gaps, iso_window, spread_archs, window_archs, window_hand_designs
from mnas.bench.references import check_reference, from_runs, load_reference
from mnas.cli import register_schema
from mnas.errors import UserError
from mnas.nn.arch import ArchConfig
from mnas.nn.proxy import proxy_arch
from mnas.nn.stats import count
from mnas.workers import run_jobs


def tau_interval(x, y, level: float = 0.9, resamples: int = 2000, seed: int = 0) -> list[float]:
    """A bootstrap interval of Kendall's tau between x and y (archs resampled with replacement): how far a tau
    on this few archs could move with another draw of archs. Two estimators whose taus differ by less than the
    interval's width are not told apart by the benchmark."""
    x, y = np.asarray(x, float), np.asarray(y, float)
    rng = np.random.default_rng(seed)
    taus = [stats.kendalltau(x[i], y[i])[0] for i in rng.integers(0, len(x), (resamples, len(x)))]
    lo, hi = np.nanpercentile(taus, [50 * (1 - level), 50 * (1 + level)])
    return [float(lo), float(hi)]


def summarize(df: pd.DataFrame, seeds, repeat_cols=()) -> dict:
    """Kendall tau / Spearman rho of supernet vs stand-alone mean (with a 90% bootstrap interval of the tau, and
    that of MACs), and the reference's seed-to-seed tau; with repeat_cols (the estimates of supernets trained
    with other seeds), the estimator's own seed-to-seed tau and the tau of its mean estimate."""
    tau, tau_p = stats.kendalltau(df["supernet_acc"], df["standalone_acc"])
    rho, rho_p = stats.spearmanr(df["supernet_acc"], df["standalone_acc"])
    cols = [f"standalone_seed{s}" for s in seeds]
    pairs = [stats.kendalltau(df[a], df[b])[0] for a, b in itertools.combinations(cols, 2)]
    single = [stats.kendalltau(df["supernet_acc"], df[c])[0] for c in cols]
    return {"n": len(df), "kendall_tau": tau, "kendall_p": tau_p, "spearman_rho": rho, "spearman_p": rho_p,
            "seed_to_seed_tau": float(np.mean(pairs)) if pairs else None,
            "supernet_vs_single_seed_tau": float(np.mean(single)),
            "standalone_vs_macs_tau": stats.kendalltau(df["standalone_acc"], df["proxy_mmacs"])[0],
            "kendall_tau_90": tau_interval(df["supernet_acc"], df["standalone_acc"]),
            "macs_tau_90": tau_interval(df["proxy_mmacs"], df["standalone_acc"]),
            "supernet_s_per_arch": float(df["supernet_s"].mean()),
            "standalone_s_per_run": float(df["standalone_s"].sum() / df[cols].notna().sum().sum()),
            **(retest(df, ["supernet_acc", *repeat_cols]) if repeat_cols else {})}


def retest(df: pd.DataFrame, est_cols: list) -> dict:
    """How well supernets that differ only in their training seed agree (mean pairwise Kendall tau: the estimator's
    own ceiling), how each and their mean rank against stand-alone training."""
    pairs = [stats.kendalltau(df[a], df[b])[0] for a, b in itertools.combinations(est_cols, 2)]
    mean = df[est_cols].mean(axis=1)
    return {"estimator_retest_tau": float(np.mean(pairs)),
            "each_estimate_tau": [float(stats.kendalltau(df[c], df["standalone_acc"])[0]) for c in est_cols],
            "mean_estimate_tau": float(stats.kendalltau(mean, df["standalone_acc"])[0]),
            "mean_estimate_tau_90": tau_interval(mean, df["standalone_acc"])}


def plot(df: pd.DataFrame, summary: dict, path: Path, title: str) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(6.5, 5))
    ax.errorbar(df["standalone_acc"], df["supernet_acc"], xerr=df["standalone_std"], fmt="none", ecolor="0.7")
    sc = ax.scatter(df["standalone_acc"], df["supernet_acc"], c=df["latency_ms"], cmap="viridis", zorder=3)
    for r in df.itertuples():  # the hand designs among the archs, by name
        if isinstance(getattr(r, "hand", ""), str) and r.hand:
            ax.annotate(r.hand.replace("mobilenet_", ""), (r.standalone_acc, r.supernet_acc), fontsize=7,
                        xytext=(4, 4), textcoords="offset points")
    fig.colorbar(sc, label="predicted latency (ms, 224x224)")
    ax.set_xlabel("stand-alone accuracy (mean over seeds, bar = std)")
    ax.set_ylabel("supernet estimate (sub-network val accuracy)")
    seed_tau = summary["seed_to_seed_tau"]
    ax.set_title(f"{title}\nKendall tau {summary['kendall_tau']:.2f}, Spearman rho {summary['spearman_rho']:.2f}, "
                 f"seed-to-seed tau {seed_tau if seed_tau is None else round(seed_tau, 2)}", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


class Lazy:
    """An estimator made on its first call: a resumed benchmark whose estimates are all in rank.csv loads (or
    trains) no supernet."""

    def __init__(self, make):
        self.make, self.fn = make, None

    def __call__(self, arch):
        if self.fn is None:
            self.fn = self.make()
        return self.fn(arch)


class Standalone:
    """standalone_fn for worker processes (picklable): loads the dataset once per process, trains on 1 thread."""

    def __init__(self, data_args: dict, resolution: int, max_stride: int, options: dict):
        self.data_args, self.resolution, self.max_stride, self.options = data_args, resolution, max_stride, options

    def __call__(self, arch: ArchConfig, seed: int) -> float:
        from mnas.data import load_cached
        from mnas.search.estimators import TrainEstimator
        data = load_cached(**self.data_args)
        return TrainEstimator(data, resolution=self.resolution, seed=seed, max_stride=self.max_stride,
                              **self.options)(arch)


def _timed(fn, arch_string: str, seed: int) -> tuple[float, float]:
    t0 = time.perf_counter()
    acc = fn(ArchConfig.from_string(arch_string), seed)
    return acc, time.perf_counter() - t0


def rank_check(archs, latency_fn, supernet_fn, standalone_fn, seeds, out_dir: Path, resolution: int = 32,
               num_classes: int = 10, title: str = "", jobs: int = 1, known: dict | None = None,
               hand: dict | None = None, repeats: dict | None = None, space=None) -> dict:
    """Fill rank.csv in out_dir (cells already there are kept: resume), then write rank.png and summary.json.
    supernet_fn(arch) and standalone_fn(arch, seed) return validation accuracies; with jobs > 1 the stand-alone
    runs go to that many worker processes (standalone_fn must then be picklable, e.g. a Standalone). known maps
    (arch string, seed) to (accuracy, seconds) of stand-alone runs made elsewhere (a proxy_check reference or
    another rank_check); hand maps archs to the hand design's name they are (the `hand` column). repeats maps a
    supernet seed to another estimator of the same kind trained with that seed (column supernet_acc_seed<s>): the
    summary then says how well the estimator agrees with itself (estimator_retest_tau) and how the mean over all
    its supernets ranks (mean_estimate_tau). With the space, bias.csv says which kinds of choice the estimate
    favours beyond stand-alone training (mnas.bench.bias; the mean estimate's with repeats)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / "rank.csv"
    cols = [f"standalone_seed{s}" for s in seeds]
    if path.exists():
        df = pd.read_csv(path)
        if list(df["arch"]) != [a.to_string() for a in archs]:
            raise UserError(f"{path} holds other archs: use a new out_dir or the same n, pool, seed, space and fill_ms")
    else:
        df = pd.DataFrame({"arch": [a.to_string() for a in archs], "latency_ms": [latency_fn(a) for a in archs],
                           "proxy_mmacs": [count(proxy_arch(a, num_classes), resolution).macs / 1e6 for a in archs]})
    df["hand"] = [(hand or {}).get(a, "") for a in archs]
    extra = {f"supernet_acc_seed{s}": fn for s, fn in (repeats or {}).items()}
    for c in ["supernet_acc", "supernet_s", "standalone_s", *cols, *extra]:
        if c not in df:
            df[c] = np.nan
    row = {a: i for i, a in enumerate(df["arch"])}
    for (a, s), (acc, secs) in (known or {}).items():
        col = f"standalone_seed{s}"
        if a in row and col in df and np.isnan(df.at[row[a], col]):
            df.at[row[a], col] = acc
            df.at[row[a], "standalone_s"] = np.nan_to_num(df.at[row[a], "standalone_s"]) + secs
    for i, arch in enumerate(archs):
        if np.isnan(df.at[i, "supernet_acc"]):
            t0 = time.perf_counter()
            df.at[i, "supernet_acc"] = supernet_fn(arch)
            df.at[i, "supernet_s"] = time.perf_counter() - t0
            df.to_csv(path, index=False)
    for c, fn in extra.items():  # the same estimator trained with other seeds (its own test-retest)
        for i, arch in enumerate(archs):
            if np.isnan(df.at[i, c]):
                df.at[i, c] = fn(arch)
                df.to_csv(path, index=False)
    # seed-major: every arch's first seed before any second seed, so a benchmark cut short still ranks every arch
    # jobs=0 scores only: the stand-alone cells come from `known` (or a later run), none is trained here
    todo = [] if jobs == 0 else [(i, s, c) for s, c in zip(seeds, cols) for i in range(len(archs))
                                 if np.isnan(df.at[i, c])]
    tasks = [((i, s, c), (standalone_fn, archs[i].to_string(), s)) for i, s, c in todo]
    for done, ((i, s, c), (acc, secs)) in enumerate(run_jobs(tasks, jobs, _timed), 1):
        df.at[i, c] = acc
        df.at[i, "standalone_s"] = np.nan_to_num(df.at[i, "standalone_s"]) + secs
        df.to_csv(path, index=False)  # each finished run is kept: a killed benchmark resumes
        print(f"[{done}/{len(todo)}] {df.at[i, 'latency_ms']:.1f} ms, seed {s}: stand-alone {acc:.4f} "
              f"({secs:.0f} s); supernet {df.at[i, 'supernet_acc']:.4f}", flush=True)
    df["standalone_acc"] = df[cols].mean(axis=1)
    df["standalone_std"] = df[cols].std(axis=1).fillna(0.0)
    df.to_csv(path, index=False)
    complete = df.dropna(subset=cols)
    if len(complete) < 3:
        print(f"{len(complete)} of {len(df)} archs have every seed's stand-alone accuracy: no ranking yet "
              f"(rank.csv kept in {out_dir}; rerun to fill the rest)")
        return {"n": len(complete), "n_archs": len(df)}
    total, df = len(df), complete  # the summary and the plot cover the archs with every seed
    summary = {**summarize(df, seeds, list(extra)), "n_archs": total}
    plain = {k: None if v != v else v for k, v in summary.items()}  # NaN (constant input) -> null
    (out_dir / "summary.json").write_text(json.dumps(plain, indent=2))
    plot(df, summary, out_dir / "rank.png", title)
    seed_tau = summary["seed_to_seed_tau"]
    lo, hi = summary["kendall_tau_90"]
    mlo, mhi = summary["macs_tau_90"]
    print(f"supernet vs stand-alone ({len(df)} archs, {len(seeds)} seed(s)): Kendall tau {summary['kendall_tau']:.3f} "
          f"(p={summary['kendall_p']:.2g}; 90% bootstrap over archs {lo:.2f} to {hi:.2f}), Spearman rho "
          f"{summary['spearman_rho']:.3f}; stand-alone seed-to-seed "
          f"tau {'n/a (one seed)' if seed_tau is None else f'{seed_tau:.3f}'} (the ceiling); supernet vs single "
          f"seeds tau {summary['supernet_vs_single_seed_tau']:.3f}; stand-alone accuracy vs MACs tau "
          f"{summary['standalone_vs_macs_tau']:.3f} ({mlo:.2f} to {mhi:.2f}); {summary['supernet_s_per_arch']:.1f} s "
          f"per supernet estimate, {summary['standalone_s_per_run']:.0f} s per stand-alone run -> {out_dir}")
    if space is not None:
        estimate = df[["supernet_acc", *extra]].mean(axis=1)
        table = bias_table(space, [ArchConfig.from_string(a) for a in df["arch"]], estimate, df["standalone_acc"])
        if table is not None and len(table):
            table.to_csv(out_dir / "bias.csv", index=False)
            top = table.reindex(table["tau_residual"].abs().sort_values(ascending=False).index).head(3)
            print("choices the estimate favours beyond stand-alone training (tau with its rank residual, bias.csv): "
                  + ", ".join(f"{r.kind} {r.tau_residual:+.2f}" for r in top.itertuples()))
    if extra:
        print(f"the estimator against itself, {len(extra) + 1} supernets of other training seeds: Kendall tau "
              f"{summary['estimator_retest_tau']:.3f} (mean over pairs); their mean estimate vs stand-alone tau "
              f"{summary['mean_estimate_tau']:.3f}; each vs stand-alone: "
              + ", ".join(f"{t:.3f}" for t in summary["each_estimate_tau"]))
    return summary


def variant(estimator: dict) -> str:
    """The supernet settings a plot's title names: its training rule always (the default changed once), and a
    per-candidate fine-tune when there is one."""
    rule = "largest + smallest" if estimator.get("smallest", True) else "largest"
    parts = [f"{rule} + {estimator.get('n_random')} random per step"]
    if estimator.get("finetune_steps"):
        parts.append(f"fine-tuned {estimator['finetune_steps']} steps")
    return f"; supernet: {', '.join(parts)}"


@dataclass
class StandaloneConfig:
    """conf/rank_check.yaml `standalone:`, the reference training (TrainEstimator's options)."""
    epochs: int = 1
    max_steps: Optional[int] = None
    batch_size: int = 128
    lr: float = 0.1


@dataclass
class RankCheckConfig:
    """The schema of `python -m mnas.bench.rank_check` (conf/rank_check.yaml lists it first; values and comments
    in the YAML)."""
    space: Any = None
    data: Any = None
    device: Any = None
    estimator: Any = None
    n: int = 12
    reference: Optional[str] = None
    fill_ms: Optional[Any] = None  # [lo, hi]
    iso_ms: Optional[float] = None
    window_ms: Optional[Any] = None  # [lo, hi]
    standalone_from: Optional[Any] = None  # a run dir or a list of them
    pool: int = 2000
    seeds: Any = field(default_factory=lambda: [0, 1, 2])
    standalone: StandaloneConfig = field(default_factory=StandaloneConfig)
    seed: int = 0
    pick_seed: Optional[int] = None
    estimator_seeds: Optional[Any] = None  # a list of supernet training seeds
    threads: Optional[int] = None
    jobs: int = 1
    out_dir: Optional[str] = None


register_schema("rank_check", RankCheckConfig)


def main(cfg):
    """Hydra config (conf/rank_check.yaml) -> plain arguments -> rank_check."""
    import torch

    from mnas.cli import new_run_dir, to_plain
    from mnas.data import config_args, load_cached
    from mnas.latency import Device
    from mnas.nn.space import load_space
    from mnas.search.estimators import SupernetEstimator

    c = to_plain(cfg)
    if c["threads"]:
        torch.set_num_threads(c["threads"])
    if c["n"] < 3 or not c["seeds"]:
        raise UserError(f"n={c['n']}, seeds={c['seeds']}: use n >= 3 archs and at least one seed")
    es = c.get("estimator_seeds")
    if es is not None and not (isinstance(es, list) and all(isinstance(s, int) and not isinstance(s, bool)
                                                             for s in es)):
        raise UserError(f"estimator_seeds={es!r} is invalid: use a list of supernet training seeds, e.g. '[1,2]'")
    space, device, d = load_space(c["space"]["name"]), c["device"]["name"], c["data"]
    latency_fn = Device(device)
    e = {k: v for k, v in c["estimator"].items() if k not in ("name", "space")}
    sa, seeds, known, hand = c["standalone"], c["seeds"], None, {}
    pick = c["seed"] if c.get("pick_seed") is None else c["pick_seed"]  # arch sampling only
    if c.get("standalone_from") and c["reference"]:
        raise UserError("give reference=<proxy_check run> or standalone_from=<rank_check run>, not both")
    if c.get("standalone_from"):  # another estimator on that run's archs: they need not be re-picked identically
        archs, hand, known = from_runs(c["standalone_from"], space, seeds)
    elif c["reference"]:
        ref, known = load_reference(Path(c["reference"]))
        check_reference(ref, d, e.get("max_stride", 8), c["seed"])
        base = [ArchConfig.from_string(a) for a in ref["archs"]]
        within = tuple(c["fill_ms"]) if c.get("fill_ms") else None
        archs = fill_gaps(space, base, max(0, c["n"] - len(base)), latency_fn, c["pool"], pick, within)
        sa = {k: ref[k] for k in ("epochs", "max_steps", "batch_size", "lr")}
        seeds = list(range(ref["seeds"]))
    elif window := iso_window(c.get("iso_ms"), c.get("window_ms")):
        res, stride = d.get("proxy_resolution", 32), e.get("max_stride", 8)
        macs_fn = lambda arch: count(proxy_arch(arch, 10, stride), res).macs  # noqa: E731
        hand = window_hand_designs(space, window, latency_fn)
        picked = window_archs(space, c["n"], latency_fn, macs_fn, window, c["pool"], pick)
        archs = sorted(dict.fromkeys([*picked, *hand]), key=macs_fn)
    else:
        archs = spread_archs(space, c["n"], latency_fn, c["pool"], pick)
    data_args = config_args(d, c["seed"])
    data = load_cached(**data_args)  # the stand-alone runs of this process (jobs=1) reuse it
    resolution = d.get("proxy_resolution", 32)
    supernet = Lazy(lambda: SupernetEstimator(data, space, resolution=resolution, seed=c["seed"], **e))
    repeats = {s: Lazy(lambda s=s: SupernetEstimator(data, space, resolution=resolution, seed=c["seed"],
                                                    supernet_seed=s, **e))
               for s in c.get("estimator_seeds") or [] if s != c["seed"]}
    standalone_fn = Standalone(data_args, resolution, e.get("max_stride", 8), sa)
    out_dir = Path(c["out_dir"]) if c["out_dir"] else new_run_dir("rank_check", device)
    ms = sorted(latency_fn(a) for a in archs)
    print(f"{space.describe()}; {len(archs)} archs over {ms[0]:.1f}-{ms[-1]:.1f} ms "
          f"({device}); stand-alone {sa} x seeds {seeds} on {d['name']}"
          f"{' (stand-alone from ' + str(c['reference'] or c['standalone_from']) + ')' if known else ''}"
          f"{'; hand designs: ' + ', '.join(hand.values()) if hand else ''} -> {out_dir}")
    return rank_check(archs, latency_fn, supernet, standalone_fn, seeds, out_dir, resolution, data.num_classes,
                      title=f"{space.name} on {d['name']} ({resolution}px proxy){variant(e)}", jobs=c["jobs"],
                      known=known, hand=hand, repeats=repeats, space=space)


if __name__ == "__main__":
    from mnas.cli import hydra_main
    hydra_main("rank_check", main)
