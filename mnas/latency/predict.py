"""Predicted latency of an ArchConfig on a device: a calibrated sum of its op latencies; building measured tables.

predict(arch) = a + b * sum(op latency over arch_ops(arch)). The per-device line (a, b) is fitted by least squares
(on relative error) against whole networks measured end to end, because a network runs faster or slower than its
ops run one at a time (caches, per-call overhead). Measured devices keep it in their table's metadata; estimated
devices name a cost-model module (config `model`) with `op_ms(key) -> ms` and `calibration() -> (a, b)`.
"""
from __future__ import annotations

import importlib
import sys
from pathlib import Path

import numpy as np

from mnas.errors import UserError
from mnas.latency.profile import NETWORK_TIMING, measure_archs, profile_ops, runtime_version
from mnas.latency.table import (
    append_rows,
    empty_table,
    load_device,
    load_table,
    locked,
    missing_key_error,
    ms_by_key,
    new_meta,
    read_table,
    save_table,
    stale_op_timing,
    table_path,
)
from mnas.nn.arch import ArchConfig
from mnas.nn.ops import OpKey, arch_ops

_CACHE: dict[Path, tuple[int, object, dict]] = {}  # table path -> (mtime, DataFrame, {key tuple: ms})


OP_KINDS = ("stem", "ds", "ir", "head", "classifier")  # the op kinds of arch_ops, each with its own slope
TERMS = ("1", "n_ops", *(f"sum_{k}" for k in OP_KINDS))
POINTS_PER_TERM = 4  # the per-op form is fitted only on at least this many networks per term, else the line


def features(ops: list, ms: list[float]) -> dict[str, float]:
    """An arch's calibration features: a constant, its op count, and the sum of its op latencies per op kind."""
    f = {"1": 1.0, "n_ops": float(len(ops)), **{f"sum_{k}": 0.0 for k in OP_KINDS}}
    for k, m in zip(ops, ms):
        f[f"sum_{k.op}"] += m
    return f


def fit_form(rows: list[dict], measured) -> dict[str, float] | None:
    """Coefficients of the per-op form, measured ~ c0 + c_n * n_ops + sum over kinds of s_kind * sum_kind, by
    least squares on relative error (features() rows); op kinds no network has are left out (predict gives them
    the line's slope). Chosen over the line by held-out error (docs/latency.md, 2026-12-07): an op timed alone
    pays a per-call cost and edge reorders that a network does not (the n_ops term), and the kinds differ in how
    far their alone-timing is off. None with fewer than POINTS_PER_TERM networks per term."""
    y = np.asarray(measured, float)
    terms = [t for t in TERMS if t in ("1", "n_ops") or any(r[t] > 0 for r in rows)]
    if len(rows) < POINTS_PER_TERM * len(terms):
        return None
    x = np.array([[r[t] for t in terms] for r in rows])
    coef, *_ = np.linalg.lstsq(x / y[:, None], np.ones_like(y), rcond=None)
    return {t: float(c) for t, c in zip(terms, coef)}


def fit_calibration(sums, measured) -> tuple[float, float]:
    """(a, b) minimising the squared relative error of a + b * sums against measured."""
    x, y = np.asarray(sums, float), np.asarray(measured, float)
    if len(np.unique(x)) < 2:
        return 0.0, float(np.mean(y / x))
    (a, b), *_ = np.linalg.lstsq(np.c_[np.ones_like(x), x] / y[:, None], np.ones_like(y), rcond=None)
    return float(a), float(b)


def _live(device: str) -> dict:
    cfg = load_device(device)
    if cfg["kind"] != "measured" or not cfg.get("live"):
        raise UserError(f"device {device!r} is not measured on this machine (its config lacks 'live: true'): "
                        f"use its imported table or cost model instead")
    return cfg


def _table(device: str, path) -> tuple[Path, object, dict]:
    path = Path(path) if path else table_path(load_device(device))
    mtime = path.stat().st_mtime_ns if path.exists() else -1
    hit = _CACHE.get(path)
    if hit is None or hit[0] != mtime:
        df = load_table(device, path)
        hit = _CACHE[path] = (mtime, df, ms_by_key(df))
    return path, hit[1], hit[2]


def measure_missing(device: str, keys, path=None, progress: bool = False, resolution: int = 224,
                    num_classes: int = 1000, anchors=(), **profile_kw):
    """Profile the ops of `keys` that the device's table lacks, appending them to the table file chunk by chunk.
    Returns the updated table; a table that does not exist yet is started empty.

    `anchors`: ops already in the table to time again in the same run as the missing ones (on-demand measurement
    of one network's new ops). The new values are scaled by the median ratio table/now over the anchors, so that
    they are in the units of the table's own campaign although the machine may run faster or slower today (until
    2026-12-07, when ops were timed round-robin in 64-op chunks, it also undid the warm caches of a small run: a
    576x1024x1000 classifier measured 0.18 ms in a handful of ops and 0.40 ms in a build chunk).
    """
    cfg = _live(device)
    path = Path(path) if path else table_path(cfg)
    if path.exists():
        df = load_table(device, path)
    else:
        df = empty_table(new_meta(cfg, runtime_version(cfg["runtime"]), resolution, num_classes))
    have = ms_by_key(df)
    todo = [k for k in dict.fromkeys(keys) if k.astuple() not in have]
    anchors = [k for k in dict.fromkeys(anchors) if k.astuple() in have]

    def save(rows, drift=None):
        nonlocal df
        with locked(path):  # merge into what is on disk now: another process may have added rows meanwhile
            df = append_rows(load_table(device, path) if path.exists() else df, rows)
            if drift:
                df.attrs["meta"].setdefault("drift", []).append(drift)
            save_table(df, path)
    if todo and anchors and len(todo) + len(anchors) <= profile_kw.get("chunk", 64) * 2:
        kw = dict(profile_kw, chunk=len(todo) + len(anchors))  # one run: the same conditions for all
        rows = profile_ops(todo + anchors, cfg["runtime"], cfg["threads"], stat=cfg["stat"], progress=progress, **kw)
        ratio = units_factor([have[k.astuple()] for k in anchors], rows["ms"].to_numpy()[len(todo):])
        new = rows.iloc[:len(todo)].copy()
        new["ms"] = new["ms"] * ratio
        save(new)
        return df
    run, chunk = dict(stat=cfg["stat"], progress=progress, **profile_kw), profile_kw.get("chunk", 64)
    if not have and todo:  # a new table: its first chunk sets the units the anchors keep for the rest
        first, todo = todo[:chunk], todo[chunk:]
        profile_ops(first, cfg["runtime"], cfg["threads"], on_chunk=save, **run)
        have = ms_by_key(df)
    fixed = pick_anchors(have) if todo else []
    ref, done = np.array([have[k.astuple()] for k in fixed]), [len(have)]

    def save_in_units(rows):  # a chunk timed while the machine ran slower or faster is scaled back, and said so
        now, drift = rows.attrs.get("anchor_ms"), None
        if now is not None and len(ref):
            factor = units_factor(ref, now)
            rows, drift = rows.assign(ms=rows["ms"] * factor), drift_note(done[0], len(rows), factor)
        save(rows, drift)
        done[0] += len(rows)
    profile_ops(todo, cfg["runtime"], cfg["threads"], on_chunk=save_in_units, anchors=fixed, **run)
    return df


def units_factor(table_ms, now_ms) -> float:
    """The factor that puts times measured now into a table's units: the median ratio table/now over anchor ops
    timed in both (on-demand measurement and every chunk of a build scale by it)."""
    return float(np.median(np.asarray(table_ms, float) / np.maximum(np.asarray(now_ms, float), 1e-9)))


DRIFT_WARN = 0.10  # a chunk whose anchors ran more than 10% off the table's values is reported


def pick_anchors(have: dict, n: int = 4) -> list[OpKey]:
    """n ops of a table (key tuple -> ms) to re-time beside every later chunk of a build: the ops at the 50th to
    100th percentile of its times (large enough for the clock, small enough not to slow the chunk much)."""
    if not have:
        return []
    items = sorted(have.items(), key=lambda kv: (kv[1], kv[0]))
    idx = sorted({round(q * (len(items) - 1)) for q in np.linspace(0.5, 1.0, n)})
    return [OpKey(*items[i][0]) for i in idx]


def machine_speed(device: str, path=None, n: int = 4, **profile_kw) -> float | None:
    """How fast this machine runs now against when the device's table was measured: the factor table / now
    (units_factor) over n of the table's anchor ops (pick_anchors) timed again now; 1.2 = 20% faster now, 0.8 =
    25% slower. None when the device has no table yet. Takes a second or two."""
    cfg = _live(device)
    path = Path(path) if path else table_path(cfg)
    if not path.exists():
        return None
    have = ms_by_key(load_table(device, path))
    anchors = pick_anchors(have, n)
    if not anchors:
        return None
    rows = profile_ops(anchors, cfg["runtime"], cfg["threads"], stat=cfg["stat"], progress=False, **profile_kw)
    return units_factor([have[k.astuple()] for k in anchors], rows["ms"].to_numpy())


def speed_around(speed_fn, work):
    """(work(), [speed before, speed after]) with `speed_fn() -> factor | None` (Device.speed) called just before
    and after `work`, a measurement of networks; (work(), []) without a speed_fn."""
    if speed_fn is None:
        return work(), []
    before = speed_fn()
    return work(), [before, speed_fn()]


def speed_note(factors) -> str | None:
    """One line when a machine_speed factor among `factors` is more than DRIFT_WARN off 1: the figures measured
    meanwhile are off by about as much, which a budget check by measurement must not take at face value."""
    off = [f for f in factors if f is not None and abs(f - 1) > DRIFT_WARN]
    if not off:
        return None
    worst = min(off, key=lambda f: min(f, 1 / f))
    return (f"this machine ran {abs(1 / worst - 1):.0%} {'slower' if worst < 1 else 'faster'} than when its latency "
            "table was measured (anchor ops timed again beside the networks): measured figures are off by about as "
            "much; measure again on a quiet machine before trusting a measured budget check")


def drift_note(first: int, count: int, factor: float) -> dict:
    """A chunk's speed factor (table units / now) as the table's metadata keeps it (meta["drift"]); one printed
    line when the machine ran more than DRIFT_WARN off the speed the table was measured at."""
    if abs(factor - 1) > DRIFT_WARN:
        print(f"latency build: ops {first + 1}-{first + count} ran {abs(1 / factor - 1):.0%} "
              f"{'slower' if factor < 1 else 'faster'} than the table's anchor ops were measured (machine load or "
              f"clock changed mid-build); scaled by {factor:.3f} into the table's units. For a clean table, "
              "rebuild on a quiet machine.", file=sys.stderr, flush=True)
    return {"first_op": first, "ops": count, "factor": round(factor, 4)}


def calibrate(device: str, archs: list[ArchConfig], path=None, repeats: int = 100, progress: bool = True):
    """Measure the whole networks not yet among the table's calibration points, then refit (a, b) on all points.
    Their ops are measured first if missing. Returns the updated table."""
    cfg = _live(device)
    df = measure_missing(device, [k for a in archs for k in arch_ops(a)], path, progress)
    path = Path(path) if path else table_path(cfg)
    meta = df.attrs["meta"]
    points = _points(meta)
    done = {p["arch"] for p in points}
    new = [a for a in dict.fromkeys(archs) if a.to_string() not in done]
    if new:
        m = measure_archs(new, cfg["runtime"], cfg["threads"], repeats, stat=cfg["stat"], progress=progress,
                          passes=cfg["passes"])
        points = points + [{"arch": a.to_string(), "ms": float(ms), "spread": float(sp)}
                           for a, ms, sp in zip(new, m["ms"], m["spread"])]
    with locked(path):  # points and rows another process saved meanwhile are kept
        df = load_table(device, path)
        meta = df.attrs["meta"]
        theirs = _points(meta)
        points = theirs + [p for p in points if p["arch"] not in {q["arch"] for q in theirs}]
        ms = ms_by_key(df)
        ops = [arch_ops(ArchConfig.from_string(p["arch"])) for p in points]
        lat = [[ms[k.astuple()] for k in o] for o in ops]  # each network's op latencies, looked up once
        a, b = fit_calibration([sum(x) for x in lat], [p["ms"] for p in points])
        coef = fit_form([features(o, x) for o, x in zip(ops, lat)], [p["ms"] for p in points])
        meta["calibration"] = {"a": a, "b": b, "form": "per_op" if coef else "line", "points": points,
                               "timing": NETWORK_TIMING, **({"coef": coef} if coef else {})}
        save_table(df, path)
    return df


def _points(meta: dict) -> list[dict]:
    """The table's calibration points, if their networks were timed as measure_archs times them now (points of
    the older interleaved timing are measured again)."""
    c = meta.get("calibration", {})
    return c.get("points", []) if c.get("timing") == NETWORK_TIMING else []


def build_table(device: str, keys, archs: list[ArchConfig], path=None, repeats: int = 100, warmup: int = 5,
                chunk: int = 64, arch_repeats: int = 100, resolution: int = 224, num_classes: int = 1000,
                progress: bool = True):
    """Measure every op in `keys` missing from the device's table (saved chunk by chunk: an interrupted build
    resumes where it stopped), then calibrate on the whole networks `archs`. Returns the table. A table whose ops
    were timed the old way (stale_op_timing) is moved aside to `<name>.interleaved.parquet` and built anew."""
    cfg = _live(device)
    p = Path(path) if path else table_path(cfg)
    if p.exists() and stale_op_timing(read_table(p).attrs["meta"]):
        old = p.with_name(p.stem + ".interleaved.parquet")
        p.replace(old)
        print(f"{p}: its ops were timed round-robin with others (before 2026-12-07); building it anew, the old table "
              f"kept as {old}", file=sys.stderr)
    measure_missing(device, keys, path, progress, repeats=repeats, warmup=warmup, chunk=chunk,
                    resolution=resolution, num_classes=num_classes)
    return calibrate(device, archs, path, arch_repeats, progress) if archs else load_table(device, path)


def op_latencies(arch: ArchConfig, device: str = "pixel", path=None, measure: bool = True) -> list[float]:
    """Uncalibrated latency (ms) of each op of `arch`, in arch_ops order."""
    keys, cfg = arch_ops(arch), load_device(device)
    if cfg["kind"] == "estimated":
        model = importlib.import_module(cfg["model"])
        return [float(model.op_ms(k)) for k in keys]
    path, tuples = Path(path) if path else table_path(cfg), [k.astuple() for k in keys]
    if measure and cfg.get("live") and (not path.exists() or not set(tuples) <= _table(device, path)[2].keys()):
        measure_missing(device, keys, path, anchors=keys)  # the arch's ops already in the table anchor the new ones
    ms = _table(device, path)[2]
    for k, t in zip(keys, tuples):
        if t not in ms:
            raise missing_key_error(k, device)
    return [ms[t] for t in tuples]


def calibration(device: str, path=None) -> tuple[float, float]:
    """The device's (a, b); a measured table without one is a UserError saying how to finish it."""
    cfg = load_device(device)
    if cfg["kind"] == "estimated":
        return importlib.import_module(cfg["model"]).calibration()
    p, df, _ = _table(device, path)
    c = df.attrs["meta"].get("calibration")
    if not c:
        raise UserError(f"the {device} latency table {p} is not calibrated yet: finish it with "
                        f"`python -m mnas.latency build device={device} space=<space>` (it resumes)")
    if cfg.get("live") and c.get("timing") != NETWORK_TIMING:
        raise UserError(f"the {device} latency table {p} is calibrated on networks timed interleaved with others "
                        f"(before 2026-12-06; 30-40% slow for small networks): recalibrate with `python -m "
                        f"mnas.latency build device={device} space=<space>` (its ops are kept; minutes)")
    return c["a"], c["b"]


def predict(arch: ArchConfig, device: str = "pixel", path=None, measure: bool = True) -> float:
    """Predicted end-to-end latency (ms) of `arch` on `device`. On a live device (conf: `live: true`) ops missing
    from the table are profiled on demand and appended to it, unless measure=False. A measured table calibrated
    on enough networks predicts with the per-op form (fit_form), otherwise with the line a + b * sum(ops)."""
    ms = op_latencies(arch, device, path, measure)
    a, b = calibration(device, path)
    coef = _form(device, path)
    if coef is None:
        return a + b * sum(ms)
    f = features(arch_ops(arch), ms)
    return sum(coef.get(t, b if t.startswith("sum_") else 0.0) * v for t, v in f.items())


def _form(device: str, path) -> dict | None:
    """The per-op form's coefficients of a measured device's table, or None (the line)."""
    if load_device(device)["kind"] == "estimated":
        return None
    return _table(device, path)[1].attrs["meta"].get("calibration", {}).get("coef")

