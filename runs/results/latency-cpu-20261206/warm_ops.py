"""Experiment: does an op table timed warm (each op alone, its input and weights in cache: time_alone) predict whole
networks better than the default table (ops round-robin in chunks of 64: cold caches)? Same ops, same calibration
networks (their measured times reused from the default table), same fidelity networks (their measured times
reused from fidelity.csv); only the op timing differs. Writes warm_ops.csv and prints per-family errors."""
import sys
import pandas as pd
from mnas.latency import profile as prof
from mnas.latency.fidelity import by_family, summarize
from mnas.latency.predict import fit_calibration
from mnas.latency.table import load_table, ms_by_key, read_table
from mnas.nn.arch import ArchConfig
from mnas.nn.ops import OpKey, KEY_COLUMNS, arch_ops
from pathlib import Path

here = Path(__file__).parent
cold_path, warm_path, fid = Path(sys.argv[1]), here / "warm_ops.parquet", pd.read_csv(sys.argv[2])
cold = load_table("cpu", cold_path)
if not warm_path.exists():
    keys = [OpKey(*r) for r in cold[KEY_COLUMNS].itertuples(index=False)]
    prof.time_interleaved = lambda runners, repeats, warmup, threads=1: prof.time_alone(runners, repeats, warmup,
                                                                                        threads)
    df = prof.profile_ops(keys, "onnxruntime", 1, repeats=100, warmup=5, chunk=64, stat="min")
    df.to_parquet(warm_path)
warm = pd.read_parquet(warm_path)
tables = {"cold (default)": ms_by_key(cold), "warm": {tuple(r[:len(KEY_COLUMNS)]): r[-3]
                                                      for r in warm[KEY_COLUMNS + ["ms", "spread", "n"]].itertuples(index=False)}}
points = cold.attrs["meta"]["calibration"]["points"]
out = []
for name, ms in tables.items():
    total = lambda s: sum(ms[k.astuple()] for k in arch_ops(ArchConfig.from_string(s)))  # noqa: E731
    a, b = fit_calibration([total(p["arch"]) for p in points], [p["ms"] for p in points])
    pred = [a + b * total(s) for s in fid["arch"]]
    d = fid.assign(predicted=pred)
    s = summarize(d.predicted, d.measured)
    print(f"{name}: measured = {a:.3f} + {b:.3f} sum(ops); all {s}")
    for f, v in by_family(d).items():
        print(f"   {f}: MAPE {v['mape']:.1f}%, within10 {v['within10']:.0f}%, tau {v['tau']:.2f}, worst {v['worst']:+.0f}%")
    out.append(d.assign(table=name))
pd.concat(out).to_csv(here / "warm_ops.csv", index=False)
