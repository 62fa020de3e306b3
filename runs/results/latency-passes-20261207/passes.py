"""Is a network's run-to-run latency noise a property of its session (memory placement) or of the process and
the minute? Each run of this script times the same networks in 3 passes, each pass in new onnxruntime sessions
(mnas.latency.profile.measure_archs, passes=1 three times); run it twice, in two processes, then `compare`.

    python passes.py measure <out.csv>          # ~2-3 min on an idle core
    python passes.py compare <a.csv> <b.csv>

Networks: the 19 hand designs and the first 40 random archs of v3_small (seed 0, as fidelity draws them)."""
import random
import sys

import numpy as np
import pandas as pd

from mnas.latency.profile import measure_archs
from mnas.nn.models import hand_designs
from mnas.nn.space import load_space


def archs():
    sp, rng = load_space("v3_small"), random.Random(0)
    rows = [(f"random {i}", sp.random_arch(rng)) for i in range(40)]
    return rows + [(name, a) for _, _, name, a in hand_designs()]


def measure(out):
    rows = archs()
    df = pd.DataFrame({"name": [n for n, _ in rows], "arch": [a.to_string() for _, a in rows]})
    for p in range(3):
        df[f"pass{p}"] = measure_archs([a for _, a in rows], repeats=100, passes=1, progress=False)["ms"].to_numpy()
    df.to_csv(out, index=False)


def compare(fa, fb):
    a, b = pd.read_csv(fa), pd.read_csv(fb)
    P = [f"pass{p}" for p in range(3)]
    la, lb = np.log(a[P].to_numpy()), np.log(b[P].to_numpy())
    within = np.concatenate([la.std(axis=1, ddof=1), lb.std(axis=1, ddof=1)])
    single = np.abs(la[:, 0] - lb[:, 0])                     # one session each, the two processes
    med = np.abs(np.median(la, axis=1) - np.median(lb, axis=1))  # median of 3 sessions each
    pct = lambda v: 100 * np.expm1(v)  # noqa: E731
    print(f"networks {len(a)}; SD of one network's passes inside one process: median {pct(np.median(within)):.1f}%")
    print(f"|process a - process b|, one session each:  median {pct(np.median(single)):.1f}%, "
          f"90th pct {pct(np.percentile(single, 90)):.1f}%, max {pct(single.max()):.1f}%")
    print(f"|process a - process b|, median of 3 each:  median {pct(np.median(med)):.1f}%, "
          f"90th pct {pct(np.percentile(med, 90)):.1f}%, max {pct(med.max()):.1f}%")
    print(f"within +-5% of each other: one session {np.mean(single < np.log(1.05)):.0%}, "
          f"median of 3 {np.mean(med < np.log(1.05)):.0%}")


if __name__ == "__main__":
    {"measure": measure, "compare": compare}[sys.argv[1]](*sys.argv[2:])
