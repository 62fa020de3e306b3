"""Leave-one-family-out error of latency predictors on layout.csv (see layout_exp.py):
  table:      net_all ~ a + b * ops_all   (the device's table, today's calibration form)
  ext table:  net_all ~ a + b * ops_ext   (ops timed with layout optimisation off)
  table+n:    net_all ~ a + b * ops_all + c * n_ops
Each family's networks are predicted by a fit on the other families (relative least squares)."""
import sys

import numpy as np
import pandas as pd
from scipy import stats

df = pd.read_csv(sys.argv[1])
df["fam"] = df.family.str.replace(r" \d.*", "", regex=True)
PRED = {"table": ["ops_all"], "ext table": ["ops_ext"], "table+n": ["ops_all", "n_ops"], "ext+n": ["ops_ext", "n_ops"]}


def fit(X, y):
    A = np.c_[np.ones(len(y)), X] / y[:, None]
    return np.linalg.lstsq(A, np.ones(len(y)), rcond=None)[0]


rows = []
for name, cols in PRED.items():
    pred = np.empty(len(df))
    for fam in df.family.unique():
        held = (df.family == fam).values
        coef = fit(df.loc[~held, cols].values, df.loc[~held, "net_all"].values)
        pred[held] = np.c_[np.ones(held.sum()), df.loc[held, cols].values] @ coef
    err = pred / df.net_all - 1
    df[f"err {name}"] = err
    for fam, g in df.groupby("family"):
        e = err[g.index]
        rows.append({"predictor": name, "family": fam, "n": len(g), "within10": (abs(e) <= 0.1).mean(),
                     "mape": abs(e).mean(), "worst": e[abs(e).idxmax()] if hasattr(e, "idxmax") else
                     e[np.argmax(abs(e))]})
    rows.append({"predictor": name, "family": "all", "n": len(df), "within10": (abs(err) <= 0.1).mean(),
                 "mape": abs(err).mean(), "worst": err[np.argmax(abs(err))],
                 "tau": stats.kendalltau(pred, df.net_all)[0]})
out = pd.DataFrame(rows)
print(out.round(3).to_string(index=False))
print((df.ops_all / df.net_all).groupby(df.family).mean().round(2).rename("ops_all/net"))
print((df.ops_ext / df.net_all).groupby(df.family).mean().round(2).rename("ops_ext/net_all"))
print((df.net_ext / df.net_all).groupby(df.family).mean().round(2).rename("net_ext/net_all"))
