"""The line (fidelity_a's predictions, table_line.parquet) and the per-op form (fidelity_c's, the rebuilt table)
scored against each network's median of its three measurements (fidelity_a, _b, _c: three runs of the same 231
networks), which takes most of the measurement noise out. usage: python median3.py <record dir>"""
import sys
from pathlib import Path

import numpy as np
import pandas as pd

from mnas.latency.fidelity import summarize

d = Path(sys.argv[1])
a, b, c = (pd.read_csv(d / f"fidelity_{x}/fidelity.csv") for x in "abc")
assert (a.arch == c.arch).all()
m3 = np.median(np.c_[a.measured, b.measured, c.measured], axis=1)
rows = []
for name, pred, meas in (("line, one run", a.predicted, a.measured), ("line, median of 3", a.predicted, m3),
                         ("per-op, one run", c.predicted, c.measured), ("per-op, median of 3", c.predicted, m3)):
    for fam, g in list(a.groupby("family", sort=False)) + [("all", a)]:
        s = summarize(np.asarray(pred)[g.index], np.asarray(meas)[g.index])
        rows.append({"form": name, "family": fam, "n": s["n"], "within10": round(s["within10"], 1),
                     "mape": round(s["mape"], 2), "tau": round(s["tau"], 3), "worst": round(s["worst"], 1)})
out = pd.DataFrame(rows)
print(out.pivot(index="family", columns="form", values="within10").to_string())
print(out.pivot(index="family", columns="form", values="mape").to_string())
print(out[out.family == "all"].to_string(index=False))
out.to_csv(d / "median3.csv", index=False)
spread = np.log(np.c_[a.measured, b.measured, c.measured].max(1) / np.c_[a.measured, b.measured, c.measured].min(1))
print(f"max/min of a network's three measurements: median {100 * np.expm1(np.median(spread)):.1f}%, "
      f"90th percentile {100 * np.expm1(np.percentile(spread, 90)):.1f}%, max {100 * np.expm1(spread.max()):.0f}%")
