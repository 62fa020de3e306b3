"""Latency devices (conf/device/*.yaml) and their op tables: Parquet files, one row per OpKey, with metadata.

A table has the OpKey columns plus `ms` (median run time), `spread` (interquartile range, ms) and `n` (timed runs).
The Parquet schema metadata holds one JSON record under `mnas`: device, runtime and its version, threads, dtype,
CPU model, date, deployment resolution and classes, and the whole-network calibration once fitted.
"""
from __future__ import annotations

import contextlib
import fcntl
import functools
import json
import os
import platform
from datetime import datetime, timezone
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import yaml

from mnas.errors import UserError
from mnas.nn.ops import KEY_COLUMNS, OpKey

ROOT = Path(__file__).resolve().parents[2]
DEVICES_DIR = ROOT / "conf" / "device"
VALUE_COLUMNS = ["ms", "spread", "n"]
COLUMNS = KEY_COLUMNS + VALUE_COLUMNS
DTYPES = {"op": "object", "act": "object", "residual": "bool", "pw_act": "bool", "ms": "float64",
          "spread": "float64", "n": "int64"}
META_KEY = b"mnas"
DEVICE_KINDS = ("measured", "estimated")


def available_devices() -> list[str]:
    return sorted(p.stem for p in DEVICES_DIR.glob("*.yaml"))


def load_device(name: str) -> dict:
    """The device config conf/device/<name>.yaml as a dict (name, kind, runtime, threads, table, ...)."""
    path = DEVICES_DIR / f"{name}.yaml"
    if not isinstance(name, str) or "/" in name or not path.is_file():
        raise UserError(f"unknown device {name!r}: available {', '.join(available_devices())} (conf/device/*.yaml)")
    return dict(_read_device(path, path.stat().st_mtime_ns))


@functools.lru_cache(maxsize=32)
def _read_device(path: Path, mtime_ns: int) -> dict:
    """Parsed once per file version: predict() asks for its device on every call."""
    try:
        cfg = yaml.safe_load(path.read_text())
    except yaml.YAMLError as e:
        raise UserError(f"device config {path} is not valid YAML: {str(e).splitlines()[0]}") from None
    if not isinstance(cfg, dict) or cfg.get("kind") not in DEVICE_KINDS:
        raise UserError(f"device config {path} needs 'kind: measured' or 'kind: estimated'")
    if cfg.setdefault("name", path.stem) != path.stem:
        raise UserError(f"device config {path} says name: {cfg['name']}; it must match the file name ({path.stem})")
    cfg = {"runtime": None, "threads": 1, "stat": "min", "passes": 1, "live": False, **cfg}
    if not isinstance(cfg["passes"], int) or isinstance(cfg["passes"], bool) or cfg["passes"] < 1:
        raise UserError(f"device config {path}: passes must be a whole number of at least 1, got {cfg['passes']!r}")
    return cfg


OP_TIMING = "alone"  # how profile_ops times ops, kept in a table's metadata (before 2026-12-07: interleaved)


def stale_op_timing(meta: dict) -> bool:
    """Whether a measured table's ops were timed the old way (round-robin over a 64-op chunk, 1.3-2x slower than
    each op warm): such a table is rebuilt, not extended."""
    return meta.get("op_timing") != OP_TIMING


def table_path(device: dict) -> Path:
    if not device.get("table"):
        raise UserError(f"device {device['name']!r} has no latency table (its config sets no 'table' path)")
    return ROOT / device["table"]


def new_meta(device: dict, runtime_version: str, resolution: int, num_classes: int) -> dict:
    """The metadata record of a table about to be measured on this machine."""
    return {"device": device["name"], "runtime": device["runtime"], "runtime_version": runtime_version,
            "threads": device["threads"], "stat": device["stat"], "op_timing": OP_TIMING,
            "clock": "thread CPU time" if device["threads"] == 1 else "wall", "dtype": "float32", "cpu": cpu_model(),
            "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "resolution": resolution, "num_classes": num_classes}


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def empty_table(meta: dict) -> pd.DataFrame:
    df = pd.DataFrame({c: pd.Series(dtype=DTYPES.get(c, "int64")) for c in COLUMNS})
    df.attrs["meta"] = meta
    return df


def save_table(df: pd.DataFrame, path: str | Path) -> None:
    """Write `df` (its metadata in df.attrs['meta']) atomically, so an interrupted save leaves the old file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    _check_columns(df, path)
    t = pa.Table.from_pandas(df[COLUMNS].astype(_dtypes()), preserve_index=False)
    t = t.replace_schema_metadata({**(t.schema.metadata or {}), META_KEY: json.dumps(df.attrs["meta"]).encode()})
    tmp = path.with_name(path.name + f".tmp{os.getpid()}")
    pq.write_table(t, tmp)
    os.replace(tmp, path)


@contextlib.contextmanager
def locked(path: str | Path):
    """Hold an exclusive lock on `path` (a '.lock' file beside it) while re-reading, merging and saving, so two
    processes measuring into one table (two searches on device=cpu) never drop each other's rows."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.with_name(path.name + ".lock"), "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def read_table(path: str | Path) -> pd.DataFrame:
    """A table file as a DataFrame (metadata in .attrs['meta']); anything unreadable is a one-line UserError."""
    path = Path(path)
    try:
        t = pq.read_table(path)
    except FileNotFoundError:
        raise UserError(f"no latency table at {path}: build it with "
                        f"`python -m mnas.latency build device=<device> space=<space>`") from None
    except (pa.ArrowException, OSError) as e:
        raise UserError(f"{path} is not a readable Parquet latency table ({str(e).splitlines()[0]}): "
                        f"delete it and rebuild it") from None
    try:
        meta = json.loads(t.schema.metadata[META_KEY])
    except (TypeError, KeyError, ValueError):
        meta = None
    if not isinstance(meta, dict):
        raise UserError(f"{path} has no mnas metadata record: it is not an mnas latency table; rebuild it")
    df = t.to_pandas()
    _check_columns(df, path)
    df.attrs["meta"] = meta
    return df


def load_table(device: str, path: str | Path | None = None) -> pd.DataFrame:
    """The op table of `device` (default path from its config), checked to be measured for that device, runtime,
    thread count and statistic."""
    cfg = load_device(device)
    path = Path(path) if path else table_path(cfg)
    df = read_table(path)
    meta = df.attrs["meta"]
    want = {k: cfg[k] for k in ("runtime", "threads", "stat") if cfg.get(k) is not None}
    got = {k: meta.get(k) for k in want}
    if meta.get("device") != device or got != want:
        raise UserError(f"{path} was measured for device {meta.get('device')!r} {got}, not for {device!r} {want}: "
                        f"pass that table's own device, or rebuild with `python -m mnas.latency build device={device}`")
    if cfg.get("live") and stale_op_timing(meta):
        raise UserError(f"{path} holds ops timed round-robin with 63 others (before 2026-12-07), 1.3-2x slower than "
                        f"each op warm: rebuild it with `python -m mnas.latency build device={device} space=<space>` "
                        f"(the old file is kept beside it; minutes)")
    return df


def _dtypes() -> dict:
    return {c: DTYPES.get(c, "int64") for c in COLUMNS}


def _check_columns(df: pd.DataFrame, path) -> None:
    if list(df.columns) != COLUMNS:
        raise UserError(f"{path} has columns {list(df.columns)}: a latency table needs exactly {COLUMNS}; rebuild it")
    for c, dtype in _dtypes().items():
        kind = {"object": "O", "bool": "b", "float64": "f", "int64": "iu"}[dtype]
        if len(df) and df[c].dtype.kind not in kind and not (kind == "O" and df[c].dtype == "string"):
            raise UserError(f"{path} column {c!r} has dtype {df[c].dtype}, expected {dtype}; rebuild the table")


def ms_by_key(df: pd.DataFrame) -> dict[tuple, float]:
    """{OpKey tuple: ms} for fast lookups."""
    return dict(zip(df[KEY_COLUMNS].itertuples(index=False, name=None), df["ms"].tolist()))


def missing_key_error(key: OpKey, device: str) -> UserError:
    return UserError(f"op {key} is not in the {device} latency table: measure it with `python -m mnas.latency build "
                     f"device={device} space=<space>` (or model=<baseline>), or call predict(..., measure=True) on a "
                     f"live device to profile it on demand")


def lookup(df: pd.DataFrame, key: OpKey) -> float:
    """The latency (ms) of one op; a missing op is a UserError naming the key and how to measure it."""
    ms = ms_by_key(df).get(key.astuple())
    if ms is None:
        raise missing_key_error(key, df.attrs.get("meta", {}).get("device", "<device>"))
    return ms


def append_rows(df: pd.DataFrame, rows: pd.DataFrame) -> pd.DataFrame:
    """`df` plus `rows` (a newer measurement of the same key replaces the old), metadata kept."""
    out = pd.concat([df, rows], ignore_index=True) if len(df) else rows.reset_index(drop=True)
    out = out.drop_duplicates(KEY_COLUMNS, keep="last").reset_index(drop=True)[COLUMNS].astype(_dtypes())
    out.attrs["meta"] = df.attrs["meta"]
    return out
