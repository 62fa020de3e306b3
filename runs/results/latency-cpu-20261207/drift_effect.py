"""Does scaling each build chunk by its anchor ops' ratio help or hurt the prediction? The table's rows are put
back into the units they were timed in (each chunk's factor, metadata 'drift', divided out), the calibration line
refitted on the table's own calibration networks, and both tables scored on a fidelity run's measurements.
usage: python drift_effect.py <table.parquet> <fidelity.csv>"""
import sys

import numpy as np
import pandas as pd

from mnas.latency.fidelity import summarize
from mnas.latency.predict import fit_calibration
from mnas.latency.table import read_table
from mnas.nn.arch import ArchConfig
from mnas.nn.ops import arch_ops

df = read_table(sys.argv[1])
meta = df.attrs["meta"]
factor = np.ones(len(df))
for d in meta.get("drift", []):
    factor[d["first_op"]:d["first_op"] + d["ops"]] = d["factor"]
keys = [tuple(r) for r in df.drop(columns=["ms", "spread", "n"]).itertuples(index=False)]
tables = {"scaled (as built)": dict(zip(keys, df.ms)), "raw (factors divided out)": dict(zip(keys, df.ms / factor))}
points = meta["calibration"]["points"]
fid = pd.read_csv(sys.argv[2])
print(f"{len(df)} rows, {len(meta.get('drift', []))} scaled chunks, factors {factor.min():.3f}-{factor.max():.3f}")
for name, ms in tables.items():
    total = lambda s: sum(ms[k.astuple()] for k in arch_ops(ArchConfig.from_string(s)))  # noqa: E731
    a, b = fit_calibration([total(p["arch"]) for p in points], [p["ms"] for p in points])
    pred = np.array([a + b * total(s) for s in fid.arch])
    print(f"{name}: measured = {a:.3f} + {b:.3f} * sum(ops)")
    for fam, g in list(fid.groupby("family", sort=False)) + [("all", fid)]:
        s = summarize(pred[g.index], g.measured)
        print(f"  {fam:28s} n={s['n']:3d} within10 {s['within10']:5.1f}%  MAPE {s['mape']:5.2f}%  tau {s['tau']:.3f}  "
              f"worst {s['worst']:+.0f}%")
