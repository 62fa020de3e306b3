"""Side by side with hand-designed MobileNets: `python -m mnas.compare device=pixel budget=15ms run=<search run dir>`.

Trains MobileNetV1/V2/V3 variants, the search's found arch (`run=`, its best.json `arch`) and the pruned arch
(`pruned=<prune run dir>`, or the newest prune run of that search) with ONE recipe on the proxy task: every arch's
proxy variant (mnas.nn.proxy, total stride <= max_stride) trained from scratch by mnas.train.train_from_scratch,
once per seed. A resolution variant (e.g. MobileNetV2 at 160) trains at a proportionally scaled proxy resolution:
proxy x r / 224, rounded to the nearest multiple of 4 (32px proxy: 224->32, 192->28, 160->24, 128->20, 96->12). Each
finished training is saved at once under cache_dir (runs/compare/cache/<hash of arch, proxy resolution, recipe,
seed>.json), so a rerun, or a run cut short, trains only what is missing. Accuracy is on the proxy task's test
split; latency is predicted for the deployment shape (predict(arch, device)) and, on a device measured on this
machine (cpu), also measured (measure_archs: each network alone and warm, as a user's benchmark times it), with
the machine's speed against its latency table timed before and after (Device.speed) and flagged when it moved.

Writes runs/compare/<device>/<time>/: config.yaml, comparison.csv (COLUMNS), pareto.png, report.md with the
acceptance checks. A "win" is a mean difference larger than the combined spread sqrt(std_a^2 + std_b^2).
"""
from __future__ import annotations

import hashlib
import json
import os
import sys
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import yaml
from tqdm import tqdm

from mnas import data as datasets
from mnas.cli import new_run_dir
from mnas.compare.report import COLUMNS, FAMILIES, acceptance, machine, plot, report
from mnas.errors import UserError
from mnas.latency import predict
from mnas.latency.predict import speed_around, speed_note
from mnas.latency.table import load_device
from mnas.nn.arch import ArchConfig
from mnas.nn.models import variant
from mnas.nn.stats import count
from mnas.train import train_from_scratch
from mnas.workers import run_jobs


@dataclass(frozen=True)
class Recipe:
    """Everything besides the arch and the seed that decides a training's result (part of the cache key)."""
    data: str
    data_root: str | None = None
    val_size: float | int = 0.1
    train_subset: int | None = None
    test_images: int | None = None  # evaluate on this many (seeded) test images; None = the whole test split
    proxy_resolution: int = 32
    epochs: int = 1
    max_steps: int | None = None
    batch_size: int = 128
    lr: float = 0.1
    optimizer: str = "sgd"
    weight_decay: float = 4e-5
    label_smoothing: float = 0.1
    bn_recalibration: bool = True
    max_stride: int = 8

    def load_data(self) -> datasets.Dataset:
        """The recipe's dataset, loaded once per process (worker processes train many models on it)."""
        ds = datasets.load_cached(self.data, root=self.data_root, val_size=self.val_size, seed=0,
                                  train_subset=self.train_subset)
        if self.test_images and self.test_images < len(ds.test):
            keep = torch.randperm(len(ds.test), generator=torch.Generator().manual_seed(0))[:self.test_images]
            ds = replace(ds, test=ds.test.take(keep.sort().values))  # a copy: the cached dataset stays whole
        return ds


def scaled_proxy(resolution: int, base: int, proxy: int) -> int:
    """Proxy resolution of a deployment resolution: proxy * resolution / base, to the nearest multiple of 4 (>= 8)."""
    return max(8, 4 * int(proxy * resolution / base / 4 + 0.5))


def read_search_run(run) -> tuple[ArchConfig, dict, dict]:
    """(found arch, best.json, config.yaml or {}) of a search run directory; anything wrong is a UserError."""
    run = Path(run)
    if not (run / "best.json").is_file():
        raise UserError(f"run={run} is not a search run directory (no best.json there): pass runs/search/<device>/<t>")
    try:
        best = json.loads((run / "best.json").read_text())
        config = yaml.safe_load((run / "config.yaml").read_text()) if (run / "config.yaml").is_file() else {}
    except (json.JSONDecodeError, yaml.YAMLError, UnicodeDecodeError) as e:
        raise UserError(f"search run {run} is corrupt: its best.json or config.yaml does not parse "
                        f"({' '.join(str(e).split())[:120]})") from None
    if not isinstance(best, dict) or not best.get("arch"):
        raise UserError(f"search run {run} has no arch within its budget (best.json 'arch' is missing or null)")
    return _arch(best["arch"], run / "best.json"), best, config if isinstance(config, dict) else {}


def _arch(text, where) -> ArchConfig:
    try:
        return ArchConfig.from_string(text)
    except (ValueError, TypeError, AttributeError) as e:
        raise UserError(f"{where}: invalid arch string ({' '.join(str(e).split())[:120]})") from None


def find_pruned(pruned, run, device: str) -> Path | None:
    """The prune run to compare: `pruned` itself, or for 'auto' the pipeline's <run>/prune (what the main command
    writes), else the newest runs/prune/<device>/* made from `run`."""
    if pruned in (None, "none", False):
        return None
    if pruned != "auto":
        return Path(pruned)
    if run is None:
        return None
    if (Path(run) / "prune" / "result.json").is_file():
        return Path(run) / "prune"
    for d in sorted(Path("runs", "prune", device).glob("*/"), reverse=True):
        try:
            cfg = yaml.safe_load((d / "config.yaml").read_text())
        except (OSError, yaml.YAMLError):
            continue
        source = cfg.get("search") if isinstance(cfg, dict) else None
        if (d / "result.json").is_file() and source and Path(source).resolve() == Path(run).resolve():
            return d
    return None


def read_pruned(path: Path) -> ArchConfig:
    if not (path / "result.json").is_file():
        raise UserError(f"pruned={path} is not a finished prune run directory (no result.json there)")
    try:
        arch = json.loads((path / "result.json").read_text())["final"]["arch"]
    except (json.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError):
        raise UserError(f"prune run {path} is corrupt: its result.json lacks final.arch") from None
    return _arch(arch, path / "result.json")


def variant_rows(variants: dict, resolution: int) -> list[dict]:
    """One row (model, family, width, resolution, arch) per baseline variant; v2_res lists resolutions."""
    rows = []
    for family, values in variants.items():
        if family not in FAMILIES:
            raise UserError(f"unknown family {family!r}: use {', '.join(FAMILIES)}")
        label = FAMILIES[family][1]
        for v in values or []:
            width, res, arch = variant(family, v, resolution)
            rows.append(dict(model=f"{label} {width}" + (f" r{res}" if family == "v2_res" else ""), family=family,
                             width=width, resolution=res, arch=arch))
    return rows


# ------------------------------------------------------------------------------------------------ training
def cache_key(arch: ArchConfig, proxy_res: int, recipe: Recipe, seed: int) -> str:
    key = {"arch": arch.to_string(), "proxy_resolution": proxy_res, "recipe": asdict(recipe), "seed": seed}
    return hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:20]


def train_one(arch: ArchConfig, proxy_res: int, recipe: Recipe, data, seed: int, threads=None) -> dict:
    """Train arch's proxy variant from scratch with the recipe; its val and test accuracy."""
    _, m = train_from_scratch(arch, data, recipe.max_stride, seed, test=True, epochs=recipe.epochs,
                              max_steps=recipe.max_steps, batch_size=recipe.batch_size, lr=recipe.lr,
                              optimizer=recipe.optimizer, weight_decay=recipe.weight_decay,
                              label_smoothing=recipe.label_smoothing, resolution=proxy_res, threads=threads,
                              progress=False, bn_recalibration=recipe.bn_recalibration)
    return dict(val_acc=m["val_acc"], val_loss=m["val_loss"], test_acc=m["test_acc"], test_loss=m["test_loss"],
                steps=m["steps"], seconds=m["seconds"], img_per_s=m["img_per_s"])


def _train_in_worker(arch: str, proxy_res: int, recipe: Recipe, seed: int) -> dict:
    """train_one in a worker process (jobs > 1): the arch travels as its string, the data load once per worker."""
    return train_one(ArchConfig.from_string(arch), proxy_res, recipe, recipe.load_data(), seed)


def read_cache(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text()) if path.exists() else None
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise UserError(f"cached training {path} is corrupt: delete it and rerun (it is trained again)") from None


def train_all(rows: list[dict], recipe: Recipe, data, seeds: int, cache_dir: Path, threads=None,
              progress: bool = True, jobs: int = 1, first_seed: int = 0, desc: str = "compare: training"
              ) -> tuple[dict, int]:
    """{(row index, seed): result} for every row and seed (first_seed .. first_seed + seeds - 1), from the cache or
    trained now (seed-major, each saved at once); and the number trained now. jobs > 1: that many 1-thread worker
    processes (mnas.workers.run_jobs)."""
    cache_dir.mkdir(parents=True, exist_ok=True)
    paths = {(i, s): cache_dir / f"{cache_key(r['arch'], r['proxy_resolution'], recipe, s)}.json"
             for s in range(first_seed, first_seed + seeds) for i, r in enumerate(rows)}
    results = {k: read_cache(p) for k, p in paths.items()}
    todo = [k for k, v in results.items() if v is None]
    bar = tqdm(total=len(todo), desc=desc, unit="training", disable=not progress)

    tasks = [((i, s), (rows[i]["arch"].to_string(), rows[i]["proxy_resolution"], recipe, s)) for i, s in todo]
    local = lambda arch, res, rec, seed: train_one(ArchConfig.from_string(arch), res, rec, data, seed, threads)  # noqa
    for (i, s), trained in run_jobs(tasks, jobs, _train_in_worker, local):
        r = rows[i]
        res = dict(trained, model=r["model"], arch=r["arch"].to_string(), proxy_resolution=r["proxy_resolution"],
                   seed=s, recipe=asdict(recipe))
        paths[i, s].with_suffix(".tmp").write_text(json.dumps(res, indent=1))
        os.replace(paths[i, s].with_suffix(".tmp"), paths[i, s])  # atomic: a cut-short run leaves no half file
        results[i, s] = res
        bar.update()
    bar.close()
    return results, len(todo)


def train_table(rows: list[dict], recipe: Recipe, seeds: int, device: str, jobs: int = 1,
                cache_dir: Path = Path("runs/compare/cache"), desc: str = "compare: training") -> pd.DataFrame:
    """rows (model, arch; proxy_resolution defaults to the recipe's) each trained `seeds` times with the recipe,
    from mnas.compare's cache or now, as mnas.compare's table: what the records under runs/results/ run."""
    rows = [dict(r, proxy_resolution=r.get("proxy_resolution", recipe.proxy_resolution)) for r in rows]
    results, _ = train_all(rows, recipe, recipe.load_data(), seeds, cache_dir, jobs=jobs, desc=desc)
    return table(rows, results, seeds, device)


def table(rows: list[dict], results: dict, seeds: int, device: str, measure_fn=None) -> pd.DataFrame:
    measured = measure_fn([r["arch"] for r in rows]) if measure_fn else [None] * len(rows)
    out = []
    for i, (r, ms) in enumerate(zip(rows, measured)):
        test = np.array([results[i, s]["test_acc"] for s in range(seeds)])
        val = np.array([results[i, s]["val_acc"] for s in range(seeds)])
        c = count(r["arch"])
        out.append(dict(r, arch=r["arch"].to_string(), latency_ms=predict(r["arch"], device), measured_ms=ms,
                        macs=c.macs, params=c.params, test_acc=test.mean(), test_std=test.std(ddof=1),
                        val_acc=val.mean(), val_std=val.std(ddof=1), seeds=seeds,
                        test_acc_per_seed=";".join(f"{a:.4f}" for a in test)))
    return pd.DataFrame(out, columns=COLUMNS)


# ------------------------------------------------------------------------------------------------ checks
def run_compare(device: str, recipe: Recipe, variants: dict, seeds: int = 3, budget_ms: float | None = None,
                run=None, pruned="auto", resolution: int = 224, out_dir=None, cache_dir="runs/compare/cache",
                threads=None, measure_fn=None, measure: str = "", recipe_name: str = "custom",
                progress: bool = True, jobs: int = 1, speed_fn=None) -> dict:
    """The comparison described in the module docstring. `variants`: {family: widths (v2_res: resolutions)};
    `measure_fn(archs) -> ms list` adds measured latency; `speed_fn() -> factor | None` (Device.speed) times the
    machine against its latency table just before and after that measurement. Returns {table, checks, out_dir,
    trained}."""
    start = time.perf_counter()
    if not isinstance(seeds, int) or seeds < 2:
        raise UserError(f"seeds={seeds!r} is invalid: use an integer >= 2 (3 or more for the report's spreads)")
    if not isinstance(jobs, int) or jobs < 1:
        raise UserError(f"jobs={jobs!r} is invalid: use a whole number of worker processes >= 1")
    load_device(device)  # an unknown device fails now
    rows, pruned = variant_rows(variants, resolution), find_pruned(pruned, run, device)
    for name, arch in (("found", run and read_search_run(run)[0]), ("pruned", pruned and read_pruned(pruned))):
        if arch and arch.resolution != resolution:
            raise UserError(f"the {name} arch is for {arch.resolution}x{arch.resolution} but resolution={resolution}:"
                            f" compare at the arch's resolution (resolution={arch.resolution})")
        if arch:
            rows.append(dict(model=name, family=name, width=None, resolution=arch.resolution, arch=arch))
    for r in rows:
        r["proxy_resolution"] = scaled_proxy(r["resolution"], resolution, recipe.proxy_resolution)
    if not rows:
        raise UserError("nothing to compare: no variants (families/variants) and no run=")
    data = recipe.load_data()
    results, trained = train_all(rows, recipe, data, seeds, Path(cache_dir), threads, progress, jobs)
    t, speed = speed_around(speed_fn if measure_fn else None, lambda: table(rows, results, seeds, device, measure_fn))
    if note := speed_note(speed):
        print(f"compare: {note}", file=sys.stderr)
    checks = acceptance(t, budget_ms)
    out_dir = Path(out_dir) if out_dir else new_run_dir("compare", device)
    out_dir.mkdir(parents=True, exist_ok=True)
    t.to_csv(out_dir / "comparison.csv", index=False)
    info = dict(device=device, recipe=recipe, recipe_name=recipe_name, seeds=seeds, budget_ms=budget_ms,
                resolution=resolution, found=str(run) if run else None, pruned=str(pruned) if pruned else None,
                date=time.strftime("%Y-%m-%d %H:%M"), machine=machine(), measure=measure, speed=speed,
                trained=trained,
                cached=len(results) - trained, wall_s=time.perf_counter() - start,
                images=f"{len(data.train)} train / {len(data.val)} val / {len(data.test)} test images")
    title = (f"{recipe.data} proxy test accuracy vs {device} latency ({resolution}x{resolution}x3); recipe "
             f"{recipe_name}, {seeds} seeds")
    plot(t, budget_ms, device, out_dir / "pareto.png", title)
    (out_dir / "report.md").write_text(report(t, checks, info))
    for c in checks:
        print(f"{c['result']:5} {c['check']}, {c['model']}, {c['latency']}: {c['detail']}")
    print(f"{len(rows)} models x {seeds} seeds ({trained} trained now) -> {out_dir}/report.md")
    return {"table": t, "checks": checks, "out_dir": out_dir, "trained": trained}
