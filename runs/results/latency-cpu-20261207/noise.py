"""Split the cpu fidelity error into measurement noise and model error: two fidelity runs of the same networks
against the same table (fidelity_a, fidelity_b). usage: python noise.py <record dir>"""
import sys
from pathlib import Path

import numpy as np
import pandas as pd

d = Path(sys.argv[1])
a = pd.read_csv(d / "fidelity_a/fidelity.csv")
b = pd.read_csv(d / "fidelity_b/fidelity.csv")
assert (a.arch == b.arch).all()
df = a[["family", "name", "predicted"]].copy()
df["m_a"], df["m_b"], df["p_b"] = a.measured, b.measured, b.predicted
df["retest"] = np.log(df.m_b / df.m_a)                 # measurement noise, test-retest
df["err_a"], df["err_b"] = np.log(df.predicted / df.m_a), np.log(df.p_b / df.m_b)
df["err_mean"] = np.log((df.predicted + df.p_b) / 2 / np.sqrt(df.m_a * df.m_b))
rows = []
for fam, g in list(df.groupby("family", sort=False)) + [("all", df)]:
    noise = g.retest.std() / np.sqrt(2)                 # SD of one measurement's log
    rows.append({"family": fam, "n": len(g),
                 "retest_median_%": 100 * g.retest.median(), "noise_sd_%": 100 * noise,
                 "err_sd_%": 100 * g.err_a.std(), "err_mean_%": 100 * g.err_a.mean(),
                 "model_sd_%": 100 * np.sqrt(max(g.err_mean.std() ** 2 - noise ** 2 / 2, 0)),
                 "within10_a": 100 * (np.abs(np.expm1(g.err_a)) <= .1).mean(),
                 "within10_b": 100 * (np.abs(np.expm1(g.err_b)) <= .1).mean(),
                 "within10_mean": 100 * (np.abs(np.expm1(g.err_mean)) <= .1).mean(),
                 "mape_mean": 100 * np.abs(np.expm1(g.err_mean)).mean()})
out = pd.DataFrame(rows).round(2)
print(out.to_string(index=False))
out.to_csv(d / "noise.csv", index=False)
worst = df.assign(e=np.expm1(df.err_mean)).sort_values("e", key=abs, ascending=False).head(15)
print(worst[["family", "name", "predicted", "m_a", "m_b", "e"]].round(3).to_string(index=False))
