"""What the op-sum model misses: each network's error (predicted vs the mean of two measurements) against features
of its ops; Spearman correlation per family. usage: python residuals.py <record dir>"""
import sys
from pathlib import Path

import numpy as np
import pandas as pd
from scipy.stats import spearmanr

from mnas.nn.arch import ArchConfig
from mnas.nn.ops import arch_ops
from mnas.nn.stats import count

d = Path(sys.argv[1])
a, b = pd.read_csv(d / "fidelity_a/fidelity.csv"), pd.read_csv(d / "fidelity_b/fidelity.csv")
err = np.log(a.predicted / np.sqrt(a.measured * b.measured))
rows = []
for s in a.arch:
    arch, ops = ArchConfig.from_string(s), arch_ops(ArchConfig.from_string(s))
    blocks = arch.blocks
    rows.append(dict(n_ops=len(ops), macs=count(arch).macs / 1e6, params=count(arch).params / 1e6,
                     se=sum(1 for x in blocks if getattr(x, "se", 0)),
                     hswish=sum(1 for x in blocks if getattr(x, "act", "") == "hswish"),
                     k7=sum(1 for x in blocks if getattr(x, "kernel", 0) == 7),
                     res=sum(1 for x in blocks if getattr(x, "residual", False)),
                     measured=a.measured[len(rows)]))
f = pd.DataFrame(rows)
print(ArchConfig.from_string(a.arch[0]).blocks[1])
for fam in ["v3_small random", "v3_large random"]:
    m = a.family == fam
    print(fam, "err mean %.1f%% sd %.1f%%" % (100 * err[m].mean(), 100 * err[m].std()))
    for c in f.columns:
        r = spearmanr(f[c][m], err[m])[0]
        print(f"   {c:10s} rho {r:+.2f}")
