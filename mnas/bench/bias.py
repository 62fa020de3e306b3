"""Where an estimator's ranking departs from stand-alone training, by kind of choice.

Each arch of a space is described by where its choices sit among the space's options, per kind (kernel, expansion,
SE, activation, depth, stage width, stem, head and hidden width): the mean over its blocks or stages of the
option's position, 0 for the smallest option and 1 for the largest (SE on and h-swish count as the larger). Over a
set of archs, Kendall's tau of each kind with the stand-alone accuracy, with the estimate, and with the estimate's
rank minus the stand-alone rank says which choice the estimator favours beyond what training shows (a positive
`tau_residual`: archs with more of it are ranked higher by the estimator than by stand-alone training).
"""
from __future__ import annotations

import math

import pandas as pd
from scipy import stats

from mnas.nn.arch import ArchConfig
from mnas.nn.space import Space

KINDS = ("kernel", "expand", "se", "act", "depth", "out", "stem_out", "head_out", "hidden_out")


def _options(space: Space, name: str):
    if name in ("stem_out", "head_out", "hidden_out"):
        return getattr(space, name)
    stage, kind = space.stages[int(name[1:name.index("_")])], name.rsplit("_", 1)[1]
    return getattr(stage, kind)


def _position(options, value) -> float | None:
    options = list(options)
    if len(options) < 2:
        return None
    if isinstance(value, str):
        return 1.0 if value == "hswish" else 0.0
    if isinstance(value, bool):
        return float(value)
    return sorted(options).index(value) / (len(options) - 1)


def positions(space: Space, arch: ArchConfig) -> dict | None:
    """{kind: mean position of the arch's choices of that kind (NaN where the space fixes it)}, or None when the
    arch is not a point of the space."""
    params = space.params_for(arch)
    if params is None:
        return None
    found = {k: [] for k in KINDS}
    for name, value in params.items():
        kind = name if name in KINDS else name.rsplit("_", 1)[1]
        if (p := _position(_options(space, name), value)) is not None:
            found[kind].append(p)
    return {k: sum(v) / len(v) if v else math.nan for k, v in found.items()}


def bias_table(space: Space, archs, estimate, standalone) -> pd.DataFrame | None:
    """One row per kind of choice: tau with stand-alone accuracy, with the estimate, and with the estimate's rank
    minus the stand-alone rank (the residual); None if an arch is not a point of the space."""
    rows = [positions(space, a) for a in archs]
    if any(r is None for r in rows):
        return None
    feats = pd.DataFrame(rows)
    est, ref = pd.Series(list(estimate)), pd.Series(list(standalone))
    residual = est.rank() - ref.rank()
    out = []
    for kind in KINDS:
        f = feats[kind]
        if f.isna().any() or f.nunique() < 2:
            continue
        out.append({"kind": kind, "tau_standalone": stats.kendalltau(f, ref)[0],
                    "tau_estimate": stats.kendalltau(f, est)[0], "tau_residual": stats.kendalltau(f, residual)[0]})
    return pd.DataFrame(out)
