"""Leave-one-family-out error of latency predictors on layout.csv (see layout_exp.py):
  table:      net_all ~ a + b * ops_all   (the device's table, today's calibration form)
  ext table:  net_all ~ a + b * ops_ext   (ops timed with layout optimisation off)
  table+n:    net_all ~ a + b * ops_all + c * n_ops
Each family's networks are predicted by a fit on the other families (relative least squares)."""
import sys

import numpy as np
import pandas as pd
from scipy import stats


def fit(X, y):
    """(a, b...) minimising the squared relative error of a + X @ b against y."""
    A = np.c_[np.ones(len(y)), X] / y[:, None]
    return np.linalg.lstsq(A, np.ones(len(y)), rcond=None)[0]


def held_out(X: pd.DataFrame, y, families: pd.Series, predictors: dict, label: str) -> pd.DataFrame:
    """Per predictor (name -> columns of X) and family: each family predicted by a fit on the others; within
    +-10%, MAPE, worst error and Kendall tau per family and over all networks."""
    rows = []
    for name, cols in predictors.items():
        pred = np.empty(len(y))
        for fam in families.unique():
            held = (families == fam).values
            coef = fit(X.loc[~held, cols].values, y[~held])
            pred[held] = np.c_[np.ones(held.sum()), X.loc[held, cols].values] @ coef
        err = pred / y - 1
        for fam in list(families.unique()) + ["all"]:
            m = np.ones(len(y), bool) if fam == "all" else (families == fam).values
            e = err[m]
            rows.append({label: name, "family": fam, "n": int(m.sum()), "within10": (abs(e) <= 0.1).mean(),
                         "mape": abs(e).mean(), "worst": e[np.argmax(abs(e))],
                         "tau": stats.kendalltau(pred[m], y[m])[0]})
    return pd.DataFrame(rows)


if __name__ == "__main__":
    df = pd.read_csv(sys.argv[1])
    PRED = {"table": ["ops_all"], "ext table": ["ops_ext"], "table+n": ["ops_all", "n_ops"],
            "ext+n": ["ops_ext", "n_ops"]}
    print(held_out(df, df.net_all.values, df.family, PRED, "predictor").round(3).to_string(index=False))
    print((df.ops_all / df.net_all).groupby(df.family).mean().round(2).rename("ops_all/net"))
    print((df.ops_ext / df.net_all).groupby(df.family).mean().round(2).rename("ops_ext/net_all"))
    print((df.net_ext / df.net_all).groupby(df.family).mean().round(2).rename("net_ext/net_all"))
