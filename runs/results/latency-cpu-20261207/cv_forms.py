"""Calibration forms scored by 10-fold cross-validation over all 231 fidelity networks (fit on fidelity_b's
measurements of nine folds, scored on fidelity_a's of the tenth). usage: python cv_forms.py <record dir>"""
import sys
from pathlib import Path

import numpy as np
import pandas as pd

from mnas.latency.fidelity import summarize
from mnas.latency.table import ms_by_key, read_table
from mnas.nn.arch import ArchConfig
from mnas.nn.ops import arch_ops

d = Path(sys.argv[1])
df = read_table(d / "table_line.parquet")
ms = ms_by_key(df)
a_, b_ = pd.read_csv(d / "fidelity_a/fidelity.csv"), pd.read_csv(d / "fidelity_b/fidelity.csv")
KINDS = ("stem", "ds", "ir", "head", "classifier")


def feats(s):
    arch = ArchConfig.from_string(s)
    ops = arch_ops(arch)
    f = {"1": 1.0, "sum": sum(ms[k.astuple()] for k in ops), "n_ops": float(len(ops)),
         "n_res": float(sum(getattr(k, "residual", False) for k in ops)),
         "n_se": float(sum(bool(getattr(k, "se", 0)) for k in ops))}
    for kind in KINDS:
        f[f"sum_{kind}"] = sum(ms[k.astuple()] for k in ops if k.op == kind)
    return f


F = pd.DataFrame([feats(s) for s in a_.arch])
print(F.describe().T[["mean", "min", "max"]].round(3).to_string())
FORMS = {"a+b*sum": ["1", "sum"], "+n_ops": ["1", "sum", "n_ops"], "+n_res": ["1", "sum", "n_res"],
         "+n_ops+n_res": ["1", "sum", "n_ops", "n_res"], "+n_se": ["1", "sum", "n_se"],
         "per kind": ["1"] + [f"sum_{k}" for k in KINDS if F[f"sum_{k}"].abs().sum() > 0],
         "per kind+n_ops": ["1", "n_ops"] + [f"sum_{k}" for k in KINDS if F[f"sum_{k}"].abs().sum() > 0]}
rng = np.random.default_rng(0)
fold = rng.permutation(len(a_)) % 10
for name, cols in FORMS.items():
    X = F[cols].to_numpy()
    pred = np.empty(len(a_))
    for k in range(10):
        tr = fold != k
        y = b_.measured.to_numpy()[tr]
        coef, *_ = np.linalg.lstsq(X[tr] / y[:, None], np.ones_like(y), rcond=None)
        pred[~tr] = X[~tr] @ coef
    s = summarize(pred, a_.measured)
    fams = "  ".join(f"{f.replace(' random', '*')} {summarize(pred[g.index], g.measured)['within10']:.0f}%/"
                     f"{summarize(pred[g.index], g.measured)['mape']:.1f}" for f, g in a_.groupby("family", sort=False))
    print(f"{name:16s} all {s['within10']:.0f}% MAPE {s['mape']:.2f}% tau {s['tau']:.3f} | {fams}")

# The build's calibration set instead of cross-validation: every hand design, the 12 pruned networks and the first
# 20 random archs of v3_small (and of v3_large), fitted on fidelity_b; scored on fidelity_a's other random archs.
idx = a_.name.str.extract(r"random (\d+)")[0].astype(float)
rand = a_.family.str.contains("random").to_numpy()
for spaces in (["v3_small random"], ["v3_small random", "v3_large random"]):
    fit_set = ~rand | (a_.family.isin(spaces) & (idx < 20)).to_numpy()
    for name in ("a+b*sum", "per kind+n_ops"):
        X = F[FORMS[name]].to_numpy()
        y = b_.measured.to_numpy()[fit_set]
        coef, *_ = np.linalg.lstsq(X[fit_set] / y[:, None], np.ones_like(y), rcond=None)
        pred = X @ coef
        ev = rand & ~fit_set
        s = summarize(pred[ev], a_.measured[ev])
        fams = "  ".join(f"{f.replace(' random', '*')} {summarize(pred[g.index], g.measured)['within10']:.0f}%/"
                         f"{summarize(pred[g.index], g.measured)['mape']:.1f}"
                         for f, g in a_[~rand | ev].groupby("family", sort=False))
        print(f"fit on hand+pruned+{'+'.join(x.split()[0] for x in spaces)}: {name:16s} random held out "
              f"{s['within10']:.0f}% | {fams}")
