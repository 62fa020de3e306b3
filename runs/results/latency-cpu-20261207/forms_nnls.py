"""Constrained variants of the per-op form, fitted on the rebuilt table's 71 calibration networks and scored on
fidelity_c (held-out random archs; hand designs and pruned in-sample or not) and on the two extremes of v3_small
(measured 0.39 / 5.0 ms on 2026-12-07). usage: python forms_nnls.py <record dir>"""
import sys
from pathlib import Path

import numpy as np
import pandas as pd
from scipy.optimize import lsq_linear

from mnas.latency.fidelity import summarize
from mnas.latency.predict import TERMS, features
from mnas.latency.table import ms_by_key, read_table
from mnas.nn.arch import ArchConfig
from mnas.nn.ops import arch_ops
from mnas.nn.space import load_space

d = Path(sys.argv[1])
df = read_table("runs/tables/cpu/onnxruntime_t1.parquet")
ms, pts = ms_by_key(df), df.attrs["meta"]["calibration"]["points"]
F = lambda a: features(arch_ops(a), [ms[k.astuple()] for k in arch_ops(a)])  # noqa: E731
X = pd.DataFrame([F(ArchConfig.from_string(p["arch"])) for p in pts])[list(TERMS)].to_numpy()
y = np.array([p["ms"] for p in pts])
fid = pd.read_csv(d / "fidelity_c/fidelity.csv")
XF = pd.DataFrame([F(ArchConfig.from_string(s)) for s in fid.arch])[list(TERMS)].to_numpy()
ext = [load_space("v3_small").extreme(largest=x) for x in (False, True)]
XE = pd.DataFrame([F(a) for a in ext])[list(TERMS)].to_numpy()
inf = np.inf
forms = {"free": ([-inf] * 7, [inf] * 7),
         "slopes >= 0": ([-inf, -inf, 0, 0, 0, 0, 0], [inf] * 7),
         "slopes >= 0.5": ([-inf, -inf, .5, .5, .5, .5, .5], [inf] * 7),
         "line (one slope)": None}
for name, bounds in forms.items():
    if bounds is None:
        Xl = np.c_[np.ones(len(y)), X[:, 2:].sum(1)]
        coef = lsq_linear(Xl / y[:, None], np.ones_like(y)).x
        pf, pe = np.c_[np.ones(len(XF)), XF[:, 2:].sum(1)] @ coef, np.c_[np.ones(2), XE[:, 2:].sum(1)] @ coef
    else:
        coef = lsq_linear(X / y[:, None], np.ones_like(y), bounds=bounds).x
        pf, pe = XF @ coef, XE @ coef
    fams = "  ".join(f"{f.replace(' random', '*')} {summarize(pf[g.index], g.measured)['within10']:.0f}%/"
                     f"{summarize(pf[g.index], g.measured)['mape']:.1f}" for f, g in fid.groupby("family", sort=False))
    s = summarize(pf, fid.measured)
    print(f"{name:18s} {np.round(coef, 3)} all {s['within10']:.0f}%/{s['mape']:.2f} extremes {np.round(pe, 2)} | {fams}")
