"""Where rank_check's stand-alone reference comes from when it is not trained here: another rank_check run's archs
and cells (`standalone_from=`), or a finished mnas.bench.proxy_check run (`reference=`), each refused in one line
when it does not fit (other archs, archs outside the space, another split or proxy rule)."""
from __future__ import annotations

from pathlib import Path

import pandas as pd
import yaml

from mnas.errors import UserError
from mnas.nn.arch import ArchConfig
from mnas.nn.space import Space


def read_rank_csv(run_dir: Path) -> pd.DataFrame:
    """Another rank_check run's rank.csv (for standalone_from=); a folder without one is refused in one line."""
    path = run_dir / "rank.csv"
    if not path.is_file():
        raise UserError(f"standalone_from={run_dir} is not a rank_check run directory (it needs rank.csv)")
    return pd.read_csv(path)


def load_standalone(run_dir: Path, archs: list, seeds) -> dict:
    """{(arch string, seed): (accuracy, seconds)} of another rank_check run's stand-alone cells, for the same
    archs scored by another estimator setting; refused in one line when that run holds other archs."""
    df = read_rank_csv(run_dir)
    if list(df["arch"]) != [a.to_string() for a in archs]:
        raise UserError(f"standalone_from={run_dir} holds other archs than this run: use the same n, pool, seed, "
                        "space and window (iso_ms / window_ms / fill_ms)")
    known = {}
    for r in df.to_dict("records"):
        done = [s for s in seeds if f"standalone_seed{s}" in r and r[f"standalone_seed{s}"] == r[f"standalone_seed{s}"]]
        for s in done:  # the row's summed seconds spread evenly over its seeds
            known[(r["arch"], s)] = (float(r[f"standalone_seed{s}"]), float(r["standalone_s"]) / len(done))
    return known


def from_runs(run_dirs, space: Space, seeds) -> tuple[list[ArchConfig], dict[ArchConfig, str], dict]:
    """(archs, hand-design labels, stand-alone cells) of one or several rank_check runs, their archs in order (an
    arch in two runs once, with the cells of both)."""
    archs, hand, known = [], {}, {}
    for d in [run_dirs] if isinstance(run_dirs, (str, Path)) else run_dirs:
        a, h = standalone_archs(Path(d), space)
        cells = load_standalone(Path(d), a, seeds)
        archs += [x for x in a if x not in archs]
        hand.update(h)
        known.update({k: v for k, v in cells.items() if k not in known})
    return archs, hand, known


def standalone_archs(run_dir: Path, space: Space) -> tuple[list[ArchConfig], dict[ArchConfig, str]]:
    """(archs, hand-design labels) of another rank_check run, to score another estimator (or the same estimator
    on a later version of the space) on exactly those archs; refused in one line when one is not a point of space."""
    df = read_rank_csv(run_dir)
    archs = [ArchConfig.from_string(a) for a in df["arch"]]
    outside = sum(space.params_for(a) is None for a in archs)
    if outside:
        raise UserError(f"standalone_from={run_dir}: {outside} of its {len(archs)} archs are not points of space "
                        f"{space.name}, so its supernet has no weights for them: use the space of that run")
    labels = df["hand"] if "hand" in df else [None] * len(df)
    return archs, {a: h for a, h in zip(archs, labels) if isinstance(h, str) and h}


def load_reference(run_dir: Path) -> tuple[dict, dict]:
    """(proxy_check config, {(arch string, seed): (val_acc, seconds)}) of a proxy_check run directory."""
    cfg_path, runs_path = run_dir / "config.yaml", run_dir / "runs.csv"
    if not cfg_path.is_file() or not runs_path.is_file():
        raise UserError(f"reference={run_dir} is not a proxy_check run directory (it needs config.yaml and runs.csv)")
    cfg = yaml.safe_load(cfg_path.read_text())
    runs = pd.read_csv(runs_path)
    return cfg, {(r.arch, int(r.seed)): (float(r.val_acc), float(r.seconds)) for r in runs.itertuples()}


def check_reference(cfg: dict, data: dict, max_stride: int, seed: int) -> None:
    """The reference must have trained on the data, split and proxy rule the supernet is scored with (proxy_check
    carves its validation split with seed 0)."""
    if seed != 0:
        raise UserError(f"seed={seed}: a proxy_check reference was validated on the seed-0 split; use seed=0")
    want = {"data": data["name"], "val_size": data.get("val_size", 0.1), "train_subset": data.get("train_subset"),
            "resolution": data.get("proxy_resolution", 32), "max_stride": max_stride, "data_options": {}}
    got = dict(cfg, data_options=cfg.get("data_options") or {})  # older runs did not store it
    if diff := {k: (got.get(k), v) for k, v in want.items() if got.get(k) != v}:
        raise UserError("the reference proxy_check run differs from this rank_check in " + ", ".join(
            f"{k} ({a!r} there, {b!r} here)" for k, (a, b) in diff.items()) + ": pass the matching data=... options")
