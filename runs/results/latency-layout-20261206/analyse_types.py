"""Leave-one-family-out error of calibrations richer than a + b * sum(ops), on layout.csv's 71 networks
(all timed alone today): per op type slopes; a fitted per-op edge-tensor term (the reorders an op timed alone pays
at its input and output, in millions of elements); both. Features from the device's table (runs/tables/cpu)."""
import sys

import numpy as np
import pandas as pd
from scipy import stats

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


def fit(X, y):
    A = np.c_[np.ones(len(y)), X] / y[:, None]
    return np.linalg.lstsq(A, np.ones(len(y)), rcond=None)[0]


rows = []
for name, cols in PRED.items():
    pred = np.empty(len(df))
    for fam in df.family.unique():
        held = (df.family == fam).values
        coef = fit(F.loc[~held, cols].values, y[~held])
        pred[held] = np.c_[np.ones(held.sum()), F.loc[held, cols].values] @ coef
    err = pred / y - 1
    for fam in list(df.family.unique()) + ["all"]:
        m = np.ones(len(df), bool) if fam == "all" else (df.family == fam).values
        e = err[m]
        rows.append({"calibration": name, "family": fam, "n": int(m.sum()), "within10": (abs(e) <= 0.1).mean(),
                     "mape": abs(e).mean(), "worst": e[np.argmax(abs(e))],
                     "tau": stats.kendalltau(pred[m], y[m])[0]})
    print(name, "fit on all:", np.round(fit(F[cols].values, y), 3))
print(pd.DataFrame(rows).round(3).to_string(index=False))
coef = fit(F[["ops"]].values, y)
e = (coef[0] + coef[1] * F.ops) / y - 1
print("mean signed error, one fit on all 71:", e.groupby(df.family).agg(["mean", "std"]).round(3).to_dict("index"))
