"""Leave-one-family-out error of calibrations richer than a + b * sum(ops), on layout.csv's 71 networks
(all timed alone today): per op type slopes; a fitted per-op edge-tensor term (the reorders an op timed alone pays
at its input and output, in millions of elements); both. Features from the device's table (runs/tables/cpu)."""
import sys

import numpy as np
import pandas as pd
from analyse import fit, held_out  # this folder's analyse.py

from mnas.latency.predict import op_latencies
from mnas.nn.arch import ArchConfig
from mnas.nn.ops import arch_ops

df = pd.read_csv(sys.argv[1])
feats = []
for s in df.arch:
    a = ArchConfig.from_string(s)
    keys, ms = arch_ops(a), op_latencies(a, "cpu", measure=False)
    f = {"ops": sum(ms)}
    for t in ("stem", "ds", "ir", "head", "classifier"):
        f[t] = sum(m for k, m in zip(keys, ms) if k.op == t)
    f["edges"] = sum((k.cin * k.res ** 2 + k.cout * (k.res // k.stride) ** 2) / 1e6 for k in keys
                     if k.op != "classifier")
    f["n"] = len(keys)
    feats.append(f)
F = pd.DataFrame(feats)
y = df.net_all.values
PRED = {"a + b*ops": ["ops"], "per type": ["stem", "ds", "ir", "head", "classifier"], "ops + edges": ["ops", "edges"],
        "per type + edges": ["stem", "ds", "ir", "head", "classifier", "edges"]}

for name, cols in PRED.items():
    print(name, "fit on all:", np.round(fit(F[cols].values, y), 3))
print(held_out(F, y, df.family, PRED, "calibration").round(3).to_string(index=False))
coef = fit(F[["ops"]].values, y)
e = (coef[0] + coef[1] * F.ops) / y - 1
print("mean signed error, one fit on all 71:", e.groupby(df.family).agg(["mean", "std"]).round(3).to_dict("index"))
