"""Latency tables for real phones: export a bundle (one small model per table op + whole baselines + a script that
times them with the phone's own benchmark tool over adb), then import the results as a measured device.

    bundle/manifest.csv     file, tflite, kind (op / network), arch (networks), OpKey columns (ops)
    bundle/onnx/*.onnx      op_0000.onnx ... and net_00.onnx ... (input x: 1 x cin x res x res, opset 17)
    bundle/tflite/*.tflite  only where a TF-Lite converter (ai-edge-torch) is installed; bundle.json says which
    bundle/run_on_phone.sh  writes results.csv: file,ms,spread,n (ms = median of the runs where the tool gives it)

Importing joins results and manifest into a latency table (mnas.latency.table schema), fits the whole-network
calibration a + b * sum(op ms) from the network rows, and writes conf/device/<name>.yaml so `device=<name>` works.
"""
from __future__ import annotations

import dataclasses
import importlib.util
import json
import re
import warnings
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import yaml
from tqdm import tqdm

from mnas.errors import UserError
from mnas.latency import table
from mnas.latency.predict import fit_calibration
from mnas.latency.profile import op_module
from mnas.nn.arch import ArchConfig
from mnas.nn.models import BASELINES, build, get_model
from mnas.nn.ops import KEY_COLUMNS, OpKey, arch_ops

RUNTIMES = {".onnx": "onnxruntime", ".tflite": "tflite"}
SCRIPT = r"""#!/bin/sh
# Time every model of this mnas bundle on an Android phone over adb: one thread, batch 1, the phone's own tool.
#   ./run_on_phone.sh [onnx|tflite] [results.csv]      (default results: results_<format>.csv in this folder)
# Needs adb with one phone attached (USB debugging on) and, in /data/local/tmp, the benchmark tool built for the
# phone (Android arm64): onnxruntime_perf_test (onnxruntime built with --android) for onnx, or TF-Lite's
# benchmark_model (tensorflow/lite/tools/benchmark) for tflite. Environment: RUNS (default 50), WARMUP (5),
# CORES = taskset hex mask to pin to a big core (e.g. 8 = cpu3; default: no pinning). Then import the results:
#   python -m mnas.latency import phone=<name> path=<this folder> [results=<results.csv>]
set -eu
FORMAT=${1:-onnx}
OUT=${2:-}
case $OUT in "" | /*) ;; *) OUT=$PWD/$OUT ;; esac
cd "$(dirname "$0")"
OUT=${OUT:-$PWD/results_$FORMAT.csv}
RUNS=${RUNS:-50}
WARMUP=${WARMUP:-5}
PIN=${CORES:+taskset $CORES}
DIR=/data/local/tmp/mnas_bundle
[ -d "$FORMAT" ] || { echo "no $FORMAT/ folder in this bundle (see bundle.json)"; exit 1; }
adb shell "rm -rf $DIR && mkdir -p $DIR"
adb push "$FORMAT" "$DIR/" >/dev/null
echo "file,ms,spread,n" > "$OUT"
for f in "$FORMAT"/*."$FORMAT"; do
  name=$(basename "$f")
  if [ "$FORMAT" = onnx ]; then
    log=$(adb shell "$PIN /data/local/tmp/onnxruntime_perf_test -e cpu -I -m times -r $RUNS -x 1 -y 1 \
      $DIR/onnx/$name" | tr -d '\r')
    ms=$(printf '%s\n' "$log" | awk '/P50 Latency:/ {print $3 * 1000}')
  else
    log=$(adb shell "$PIN /data/local/tmp/benchmark_model --graph=$DIR/tflite/$name --num_threads=1 \
      --num_runs=$RUNS --warmup_runs=$WARMUP" | tr -d '\r')
    ms=$(printf '%s\n' "$log" | awk '/count=/ && /avg=/ {
        for (i = 1; i <= NF; i++) if ($i ~ /^(avg|median)=/) { split($i, kv, "="); v[kv[1]] = kv[2] } }
      END { if ("median" in v) print v["median"] / 1000; else if ("avg" in v) print v["avg"] / 1000 }')
  fi
  [ -n "$ms" ] || { echo "no timing for $name; the tool said:"; printf '%s\n' "$log" | tail -n 5; exit 1; }
  echo "$name,$ms,,$RUNS" >> "$OUT"
  echo "$name $ms ms"
done
adb shell "rm -rf $DIR"
echo "wrote $OUT"
"""


def _check_name(device: str) -> None:
    if not isinstance(device, str) or not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]*", device):
        raise UserError(f"device name {device!r} is invalid: use letters, digits, '_', '-', '.' (e.g. pixel7)")


def _tflite_converter():
    """ai-edge-torch's convert(module, inputs).export(path), or None where it is not installed."""
    if importlib.util.find_spec("ai_edge_torch") is None:
        return None
    import ai_edge_torch
    return lambda module, x, path: ai_edge_torch.convert(module, (x,)).export(str(path))


def _export(module: torch.nn.Module, x: torch.Tensor, out: Path, name: str, tflite) -> str:
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        torch.onnx.export(module.eval(), (x,), out / "onnx" / f"{name}.onnx", dynamo=False, opset_version=17,
                          input_names=["x"])
    if tflite is None:
        return ""
    tflite(module.eval(), x, out / "tflite" / f"{name}.tflite")
    return f"{name}.tflite"


def export_bundle(device: str, ops: list[OpKey], out_dir, networks: list[ArchConfig] | None = None,
                  progress: bool = True) -> Path:
    """Write a phone bundle to `out_dir`: every op of `ops` plus the whole `networks` (default: each baseline at
    width 1.0, 224x224, for the calibration) and the ops those networks need. Returns the bundle folder."""
    _check_name(device)
    networks = [fn() for fn in BASELINES.values()] if networks is None else list(networks)
    ops = list(dict.fromkeys([*ops, *(k for a in networks for k in arch_ops(a))]))
    out = Path(out_dir)
    tflite = _tflite_converter()
    for sub in ("onnx", "tflite") if tflite else ("onnx",):
        (out / sub).mkdir(parents=True, exist_ok=True)
    rows = []
    for i, k in enumerate(tqdm(ops, desc="exporting ops", unit="op", disable=not progress)):
        name = f"op_{i:04d}"
        rows.append({"file": f"{name}.onnx", "tflite": _export(*op_module(k), out, name, tflite), "kind": "op",
                     "arch": "", **dataclasses.asdict(k)})
    for i, a in enumerate(networks):
        name = f"net_{i:02d}"
        x = torch.randn(1, a.in_chans, a.resolution, a.resolution)
        rows.append({"file": f"{name}.onnx", "tflite": _export(build(a), x, out, name, tflite), "kind": "network",
                     "arch": a.to_string()})
    pd.DataFrame(rows, columns=["file", "tflite", "kind", "arch", *KEY_COLUMNS]).to_csv(out / "manifest.csv",
                                                                                       index=False)
    info = {"device": device, "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "ops": len(ops), "networks": len(networks), "onnx": f"opset 17, torch {torch.__version__}",
            "tflite": "tflite/*.tflite (ai-edge-torch)" if tflite else
            "not produced: no TF-Lite converter (ai-edge-torch) is installed where this bundle was exported; "
            "run the ONNX models with onnxruntime_perf_test (run_on_phone.sh onnx), or convert each one to "
            "tflite/<same name>.tflite yourself and run run_on_phone.sh tflite"}
    (out / "bundle.json").write_text(json.dumps(info, indent=2) + "\n")
    script = out / "run_on_phone.sh"
    script.write_text(SCRIPT)
    script.chmod(0o755)
    return out


def _read_csv(path, what: str) -> pd.DataFrame:
    try:
        return pd.read_csv(path, dtype={"file": str})
    except (OSError, pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as e:
        raise UserError(f"cannot read the {what} {path}: {str(e).splitlines()[0] if str(e) else type(e).__name__}") \
            from None


def _op_key(r) -> OpKey:
    return OpKey(str(r.op), *(int(getattr(r, c)) for c in KEY_COLUMNS[1:8]), str(r.act),
                 str(r.residual) == "True", str(r.pw_act) == "True")


def read_results(results_csv, manifest: pd.DataFrame) -> pd.DataFrame:
    """The results file checked against the bundle manifest: one row per manifest file with ms, spread, n."""
    res = _read_csv(results_csv, "results file")
    if missing := {"file", "ms"} - set(res.columns):
        raise UserError(f"{results_csv} lacks column(s) {sorted(missing)}: a results file has columns "
                        f"file,ms[,spread,n] (as run_on_phone.sh writes it)")
    res["stem"] = res.file.fillna("").map(lambda f: Path(f).stem)
    stems = manifest.file.map(lambda f: Path(f).stem)
    if unknown := sorted(set(res.stem) - set(stems)):
        raise UserError(f"{results_csv} names {len(unknown)} file(s) not in the bundle manifest (e.g. "
                        f"{unknown[0]!r}): was it run on this bundle?")
    if dup := sorted(res.stem[res.stem.duplicated()]):
        raise UserError(f"{results_csv} times {dup[0]!r} more than once: keep one row per file")
    ms = pd.to_numeric(res.ms, errors="coerce")
    if len(bad := res[~(ms > 0) | ~np.isfinite(ms)]):
        raise UserError(f"{results_csv} row for {bad.file.iloc[0]!r}: ms={bad.ms.iloc[0]!r} is not a positive "
                        f"number of milliseconds")
    if lacking := sorted(set(stems) - set(res.stem)):
        raise UserError(f"{results_csv} lacks {len(lacking)} of the bundle's {len(stems)} files (e.g. "
                        f"{lacking[0]!r}): rerun run_on_phone.sh to the end")
    runtimes = set(res.runtime) if "runtime" in res else {RUNTIMES.get(Path(f).suffix, "?") for f in res.file}
    if len(runtimes) != 1 or "?" in runtimes:
        raise UserError(f"{results_csv} mixes or does not say its runtime ({sorted(map(str, runtimes))}): name "
                        f"files *.onnx or *.tflite (one format per file), or add a `runtime` column")
    optional = {c: pd.to_numeric(res[c], errors="coerce") if c in res else np.nan for c in ("spread", "n")}
    out = pd.DataFrame({"stem": res.stem, "ms": ms, "runtime": runtimes.pop(), "spread": optional["spread"],
                        "n": optional["n"].fillna(0).astype(int) if "n" in res else 0})
    return manifest.assign(stem=stems).merge(out, on="stem")


def import_results(device: str, results_csv, bundle_dir, conf_dir=None, table_file=None) -> Path:
    """Results of run_on_phone.sh -> the latency table of `device` (default runs/tables/<device>/<runtime>_t1.parquet),
    calibrated on the bundle's whole networks, and conf/device/<device>.yaml. Returns the yaml's path."""
    _check_name(device)
    bundle, conf_dir = Path(bundle_dir), Path(conf_dir or table.DEVICES_DIR)
    cfg_path = conf_dir / f"{device}.yaml"
    if cfg_path.exists() and not (yaml.safe_load(cfg_path.read_text()) or {}).get("imported"):
        raise UserError(f"device {device!r} already exists ({cfg_path}) and was not imported from a bundle: "
                        f"choose another name")
    manifest = _read_csv(bundle / "manifest.csv", "bundle manifest")
    merged = read_results(results_csv, manifest)
    runtime = merged.runtime.iloc[0]
    ops, nets = merged[merged.kind == "op"], merged[merged.kind == "network"]
    archs = [ArchConfig.from_string(s) for s in nets.arch]
    if not archs:
        raise UserError(f"the bundle {bundle} has no whole-network models to calibrate on: export it again")
    rows = pd.DataFrame([_op_key(r).astuple() for r in ops.itertuples()], columns=KEY_COLUMNS)
    rows["ms"], rows["spread"], rows["n"] = ops.ms.to_numpy(), ops.spread.to_numpy(), ops.n.to_numpy()
    date = datetime.now(timezone.utc).isoformat(timespec="seconds")
    df = table.append_rows(table.empty_table({
        "device": device, "runtime": runtime, "runtime_version": "as on the phone", "threads": 1, "stat": "median",
        "dtype": "float32", "cpu": device, "date": date, "resolution": archs[0].resolution,
        "num_classes": archs[0].num_classes, "source": f"imported from {Path(results_csv).name} ({bundle})"}), rows)
    ms = table.ms_by_key(df)
    a, b = fit_calibration([sum(ms[k.astuple()] for k in arch_ops(arch)) for arch in archs], nets.ms)
    points = [{"arch": s, "ms": float(m), "spread": None if np.isnan(sp) else float(sp)}
              for s, m, sp in zip(nets.arch, nets.ms, nets.spread)]
    df.attrs["meta"]["calibration"] = {"a": a, "b": b, "points": points}
    path = Path(table_file or table.ROOT / "runs" / "tables" / device / f"{runtime}_t1.parquet").resolve()
    table.save_table(df, path)
    cfg = {"name": device, "kind": "measured", "live": False, "imported": date, "runtime": runtime, "threads": 1,
           "stat": "median", "table": str(path.relative_to(table.ROOT) if path.is_relative_to(table.ROOT) else path)}
    conf_dir.mkdir(parents=True, exist_ok=True)
    cfg_path.write_text(f"# {device}: measured on the phone ({runtime}, 1 thread); imported from a bundle by "
                        f"mnas.latency.bundle\n" + yaml.safe_dump(cfg, sort_keys=False))
    return cfg_path


# ---- CLI verbs (python -m mnas.latency export|import, dispatched by mnas.latency.__main__) ------------------------
def _phone(cfg: dict, verb: str) -> str:
    if not cfg.get("phone"):
        raise UserError(f"{verb} needs phone=<name> (the new device's name, e.g. phone=pixel7; device= only names "
                        f"existing conf/device/*.yaml)")
    return cfg["phone"]


def export_cmd(cfg: dict) -> Path:
    """export phone=<name> (space=<space> | model=<baseline>) [path=<bundle dir>]: the ops of the space (or baseline)
    and every baseline whole, at the space's (or resolution=) input size."""
    phone = _phone(cfg, "export")
    if cfg.get("model"):
        keys = arch_ops(get_model(cfg["model"], resolution=cfg["resolution"], num_classes=cfg["num_classes"]))
        res, classes = cfg["resolution"], cfg["num_classes"]
    else:
        from mnas.nn.space import load_space
        space = load_space(cfg["space"]["name"] if isinstance(cfg["space"], dict) else cfg["space"])
        keys, res, classes = sorted(space.ops(), key=OpKey.astuple), space.resolution, space.num_classes
    out = export_bundle(phone, keys, cfg.get("path") or table.ROOT / "runs" / "bundles" / phone,
                        [fn(resolution=res, num_classes=classes) for fn in BASELINES.values()])
    print(f"bundle for {phone} in {out}: attach the phone, run {out / 'run_on_phone.sh'}, then "
          f"`python -m mnas.latency import phone={phone} path={out}`")
    return out


def import_cmd(cfg: dict) -> Path:
    """import phone=<name> path=<bundle dir> [results=<csv>] (default: the bundle's one results_*.csv)."""
    phone = _phone(cfg, "import")
    if not cfg.get("path"):
        raise UserError("import needs path=<bundle folder> (the one `export` wrote and run_on_phone.sh ran)")
    bundle, found = Path(cfg["path"]), sorted(Path(cfg["path"]).glob("results_*.csv"))
    if not cfg.get("results") and len(found) != 1:
        raise UserError(f"{len(found)} results_*.csv files in {bundle}: pass results=<file> (or run its "
                        f"run_on_phone.sh first)")
    path = import_results(phone, cfg.get("results") or found[0], bundle)
    meta = table.load_table(phone).attrs["meta"]
    c = meta["calibration"]
    print(f"device {phone} ({meta['runtime']}) -> {path}; calibration: measured = {c['a']:.3f} + {c['b']:.3f} * "
          f"sum(ops) over {len(c['points'])} networks; use device={phone}")
    return path
