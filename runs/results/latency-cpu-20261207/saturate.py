"""A per-op cost that saturates: each op timed alone pays a fixed per-call cost o that a network pays once, so its
in-network share is max(t - o, 0); forms with o fitted (grid) against the linear per-op form, by 10-fold
cross-validation (fit on one run's measurements, scored on another's) and by the build's calibration set.
usage: python saturate.py <record dir>   (reads table_perop.parquet, fidelity_{a,b,c}/fidelity.csv)"""
import sys
from pathlib import Path

import numpy as np
import pandas as pd

from mnas.latency.fidelity import summarize
from mnas.latency.table import ms_by_key, read_table
from mnas.nn.arch import ArchConfig
from mnas.nn.ops import arch_ops

d = Path(sys.argv[1])
ms = ms_by_key(read_table(d / "table_perop.parquet"))
a, b, c = (pd.read_csv(d / f"fidelity_{x}/fidelity.csv") for x in "abc")
KINDS = ("stem", "ds", "ir", "head", "classifier")
OPS = []
for s in a.arch:
    ops = arch_ops(ArchConfig.from_string(s))
    OPS.append([(k.op, ms[k.astuple()]) for k in ops])


def feats(o, per_kind=True, n_ops=False):
    rows = []
    for ops in OPS:
        f = {"1": 1.0}
        if n_ops:
            f["n_ops"] = float(len(ops))
        if per_kind:
            for kind in KINDS:
                f[kind] = sum(max(t - o, 0.0) for k, t in ops if k == kind)
        else:
            f["sum"] = sum(max(t - o, 0.0) for k, t in ops)
        rows.append(f)
    X = pd.DataFrame(rows)
    return X.loc[:, (X != 0).any()].to_numpy()


def fit(X, y):
    coef, *_ = np.linalg.lstsq(X / y[:, None], np.ones_like(y), rcond=None)
    return coef


def cv(X, fit_y, score_y):
    fold = np.random.default_rng(0).permutation(len(X)) % 10
    pred = np.empty(len(X))
    for k in range(10):
        tr = fold != k
        pred[~tr] = X[~tr] @ fit(X[tr], fit_y[tr])
    return pred


def report(name, pred, meas):
    s = summarize(pred, meas)
    fams = "  ".join(f"{f.replace(' random', '*')} {summarize(pred[g.index], meas[g.index])['within10']:.0f}%/"
                     f"{summarize(pred[g.index], meas[g.index])['mape']:.1f}" for f, g in a.groupby("family", sort=False))
    print(f"{name:34s} {s['within10']:.0f}% MAPE {s['mape']:.2f}% tau {s['tau']:.3f} worst {s['worst']:.0f} | {fams}")


ya, yb, yc = a.measured.to_numpy(), b.measured.to_numpy(), c.measured.to_numpy()
m3 = np.median(np.c_[ya, yb, yc], axis=1)
idx = a.name.str.extract(r"random (\d+)")[0].astype(float)
rand = a.family.str.contains("random").to_numpy()
calib = ~rand | (idx < 20).to_numpy()  # the build's set: hand designs, pruned, 20 random archs of each space
print("10-fold CV, fit on run b, scored on run a | on the median of a, b, c (fit on median too)")
for o in (0.0, 0.01, 0.02, 0.025, 0.03, 0.035, 0.04, 0.045):
    for pk, nn in ((True, True), (True, False), (False, False)):
        X = feats(o, pk, nn)
        tag = f"o={o:.3f} {'per kind' if pk else 'one slope'}{' +n_ops' if nn else ''}"
        report(tag + " (b->a)", cv(X, yb, ya), ya)
        report(tag + " (m3)", cv(X, m3, m3), m3)
print("\nfit on the build's calibration set (median of 3), scored on the 160 held-out random archs and all")
for o in (0.0, 0.02, 0.03, 0.035, 0.04):
    for pk, nn in ((True, True), (True, False)):
        X = feats(o, pk, nn)
        coef = fit(X[calib], m3[calib])
        pred = X @ coef
        tag = f"o={o:.3f} {'per kind' if pk else 'one slope'}{' +n_ops' if nn else ''}"
        print("  coef", np.round(coef, 3))
        report(tag + " held out", pred[~calib], pd.Series(m3[~calib]).to_numpy()) if False else None
        report(tag, pred, m3)
