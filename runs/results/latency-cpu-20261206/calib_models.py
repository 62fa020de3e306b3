"""Offline: other calibration models on the same measurements (no new timing). Fitted on the table's 24
calibration networks (4 baselines at width 1.0 + 20 random v3_small), scored on the 119 fidelity networks."""
import numpy as np, pandas as pd
from pathlib import Path
from mnas.latency.fidelity import summarize
from mnas.latency.table import load_table, ms_by_key
from mnas.nn.arch import ArchConfig
from mnas.nn.ops import KEY_COLUMNS, arch_ops

here = Path(__file__).parent
cold = load_table("cpu", here / "cold_ops.parquet")
warm_df = pd.read_parquet(here / "warm_ops.parquet")
tabs = {"cold": ms_by_key(cold),
        "warm": {tuple(r[:-1]): r[-1] for r in warm_df[KEY_COLUMNS + ["ms"]].itertuples(index=False)}}
fid = pd.read_csv(here / "fidelity" / "fidelity.csv")
fid.loc[fid.name.str.startswith("random"), "family"] = "v3_small random"
pts = cold.attrs["meta"]["calibration"]["points"]


def feats(s):
    ops = arch_ops(ArchConfig.from_string(s))
    return [1.0, sum(tabs["cold"][k.astuple()] for k in ops), sum(tabs["warm"][k.astuple()] for k in ops), len(ops)]


Xc = np.array([feats(p["arch"]) for p in pts]); yc = np.array([p["ms"] for p in pts])
Xf = np.array([feats(s) for s in fid.arch]); yf = fid.measured.to_numpy()
models = {"a + b*cold (default)": [0, 1], "a + b*warm": [0, 2], "a + b*cold + c*n_ops": [0, 1, 3],
          "a + b*cold + c*warm": [0, 1, 2]}
rows = []
for name, cols in models.items():
    w, *_ = np.linalg.lstsq(Xc[:, cols] / yc[:, None], np.ones_like(yc), rcond=None)  # relative error
    pred = Xf[:, cols] @ w
    s = summarize(pred, yf)
    fam = {f: summarize(pred[g.index], yf[g.index]) for f, g in fid.groupby("family", sort=False)}
    rows.append(dict(model=name, coef=np.round(w, 3).tolist(), mape=round(s["mape"], 2), within10=round(s["within10"], 1),
                     tau=round(s["tau"], 3), worst=round(s["worst"], 1),
                     **{f"{f} within10/MAPE": f"{v['within10']:.0f}% / {v['mape']:.1f}%" for f, v in fam.items()}))
r = pd.DataFrame(rows)
r.to_csv(here / "calib_models.csv", index=False)
print(r.to_string())
