"""Calibration forms on the table of ops timed alone (this record) against the previous table of ops timed
round-robin (../latency-cpu-20261207/table_perop.parquet), both scored on the same fidelity measurement
(fidelity_a: 231 networks, each the median of 3 sessions), by 10-fold cross-validation over the 231 and by the
build's own calibration set (fitted on the 71 build networks' measurements kept in each table, scored on the
fidelity networks). usage: python forms.py <this record dir>"""
import sys
from pathlib import Path

import numpy as np
import pandas as pd

from mnas.latency.fidelity import summarize
from mnas.latency.predict import TERMS, features
from mnas.latency.table import ms_by_key, read_table
from mnas.nn.arch import ArchConfig
from mnas.nn.ops import arch_ops

d = Path(sys.argv[1])
fid = pd.read_csv(d / "fidelity_a/fidelity.csv")
y = fid.measured.to_numpy()
TABLES = {"ops timed round-robin (old)": d.parent / "latency-cpu-20261207/table_perop.parquet",
          "ops timed alone (new)": d / "table.parquet"}
FORMS = {"line a + b*sum": ["1", "sum"], "per kind + n_ops (default)": list(TERMS), "sum only (b)": ["sum"]}


def feats(table, archs):
    ms = ms_by_key(table)
    rows = []
    for s in archs:
        ops = arch_ops(ArchConfig.from_string(s))
        lat = [ms.get(k.astuple(), np.nan) for k in ops]
        rows.append({**features(ops, lat), "sum": sum(lat)})
    return pd.DataFrame(rows)


def fit(X, t):
    coef, *_ = np.linalg.lstsq(X / t[:, None], np.ones_like(t), rcond=None)
    return coef


def fams(pred):
    return "  ".join(f"{f.replace(' random', '*')} {summarize(pred[g.index], y[g.index])['within10']:.0f}%/"
                     f"{summarize(pred[g.index], y[g.index])['mape']:.1f}" for f, g in fid.groupby("family", sort=False))


for tname, tpath in TABLES.items():
    table = read_table(tpath)
    F = feats(table, fid.arch)
    if F.isna().any().any():
        print(f"{tname}: {int(F.isna().any(axis=1).sum())} networks have ops missing from the table; left out")
    ok = ~F.isna().any(axis=1).to_numpy()
    pts = table.attrs["meta"]["calibration"]["points"]
    P = feats(table, [p["arch"] for p in pts])
    py = np.array([p["ms"] for p in pts])
    print(f"\n{tname}: op sum / measured over the 231: median {np.median(F['sum'][ok] / y[ok]):.2f} "
          f"(V3-Small 1.0 {float(F['sum'][fid.name == 'MobileNetV3-Small 1.0'].iloc[0] / y[fid.name == 'MobileNetV3-Small 1.0'][0]):.2f}, "
          f"V2 1.0 {float(F['sum'][fid.name == 'MobileNetV2 1.0'].iloc[0] / y[fid.name == 'MobileNetV2 1.0'][0]):.2f})")
    for fname, cols in FORMS.items():
        cols = [c for c in cols if F[c][ok].abs().sum() > 0]
        X = F[cols].to_numpy()
        fold = np.random.default_rng(0).permutation(len(X)) % 10
        pred = np.full(len(X), np.nan)
        for k in range(10):
            tr, te = (fold != k) & ok, (fold == k) & ok
            pred[te] = X[te] @ fit(X[tr], y[tr])
        s = summarize(pred[ok], y[ok])
        print(f"  CV   {fname:28s} {s['within10']:.0f}% MAPE {s['mape']:.2f}% tau {s['tau']:.3f} | {fams(pred)}")
        Xp = P[cols].to_numpy()
        pred = X @ fit(Xp, py)
        s = summarize(pred[ok], y[ok])
        print(f"  build {fname:27s} {s['within10']:.0f}% MAPE {s['mape']:.2f}% tau {s['tau']:.3f} | {fams(pred)}")
