"""Which archs a ranking benchmark trains (mnas.bench.rank_check): spread over a space's latency range, added in the
widest latency gaps of a reference set, or of (nearly) equal latency inside a window, with the hand designs there."""
from __future__ import annotations

import itertools
import random

import numpy as np

from mnas.errors import UserError
from mnas.nn.arch import ArchConfig
from mnas.nn.space import Space


def spread_archs(space: Space, n: int, latency_fn, pool: int = 2000, seed: int = 0) -> list[ArchConfig]:
    """n distinct archs whose latencies are closest to n evenly spaced targets between the 2nd and 98th
    percentile of `pool` random archs' latencies."""
    rng = random.Random(seed)
    archs = list(dict.fromkeys(space.random_arch(rng) for _ in range(pool)))
    if len(archs) < n:
        raise UserError(f"space {space.name} gave only {len(archs)} distinct archs for n={n}: lower n")
    lat = np.array([latency_fn(a) for a in archs])
    picked = []
    for target in np.linspace(*np.percentile(lat, [2, 98]), n):
        order = np.argsort(np.abs(lat - target))
        picked.append(next(int(i) for i in order if int(i) not in picked))
    return [archs[i] for i in sorted(picked, key=lambda i: lat[i])]


def iso_window(iso_ms: float | None, window_ms) -> tuple[float, float] | None:
    """The latency window of iso_ms (+-10%) or window_ms=[lo, hi]; None when neither is given."""
    if iso_ms is not None and window_ms:
        raise UserError("give iso_ms=<ms> (a +-10% window) or window_ms=[lo, hi], not both")
    if iso_ms is not None:
        if not iso_ms > 0:
            raise UserError(f"iso_ms={iso_ms}: give a latency in ms above 0")
        return 0.9 * iso_ms, 1.1 * iso_ms
    return tuple(window_ms) if window_ms else None


def window_hand_designs(space: Space, window: tuple[float, float], latency_fn) -> dict[ArchConfig, str]:
    """The hand designs that are points of the space and lie inside window, by name."""
    from mnas.search.study import space_baselines
    return {arch: label for arch, (label, _) in space_baselines(space).items()
            if window[0] <= latency_fn(arch) <= window[1]}


def window_archs(space: Space, n: int, latency_fn, macs_fn, window: tuple[float, float], pool: int = 2000,
                 seed: int = 0) -> list[ArchConfig]:
    """n distinct pool archs whose latencies lie inside window=(lo, hi) ms, spread evenly over their MACs (the
    closest to n evenly spaced MAC counts between the window's fewest and most), sorted by MACs: archs of (nearly)
    equal latency, where a search must tell apart what latency cannot, and whether MACs alone would is visible."""
    lo, hi = window
    if not 0 <= lo < hi:
        raise UserError(f"window_ms={list(window)}: give [lo, hi] in ms with 0 <= lo < hi")
    rng = random.Random(seed)
    archs = [a for a in dict.fromkeys(space.random_arch(rng) for _ in range(pool)) if lo <= latency_fn(a) <= hi]
    if len(archs) < n:
        raise UserError(f"only {len(archs)} of {pool} random archs of {space.name} lie within "
                        f"window_ms={list(window)}: widen the window, raise pool or lower n={n}")
    macs = np.array([macs_fn(a) for a in archs])
    picked = []
    for target in np.linspace(macs.min(), macs.max(), n):
        order = np.argsort(np.abs(macs - target))
        picked.append(next(int(i) for i in order if int(i) not in picked))
    return [archs[i] for i in sorted(picked, key=lambda i: macs[i])]


def fill_gaps(space: Space, archs: list, k: int, latency_fn, pool: int = 2000, seed: int = 0,
              within: tuple[float, float] | None = None) -> list:
    """archs plus k new ones, each the pool arch closest to the middle of the widest gap in latency between the
    archs so far (their range's ends included), sorted by latency. within=(lo, hi) ms looks for gaps and new
    archs only inside that range (its ends count as gap ends), e.g. around a search budget."""
    if k == 0:  # nothing to add: no pool to sample and time
        return sorted(archs, key=latency_fn)
    rng = random.Random(seed)
    cands = [a for a in dict.fromkeys(space.random_arch(rng) for _ in range(pool)) if a not in archs]
    lat = {a: latency_fn(a) for a in [*archs, *cands]}
    if within is not None:
        lo, hi = within
        if not 0 <= lo < hi:
            raise UserError(f"fill_ms={list(within)}: give [lo, hi] in ms with 0 <= lo < hi")
        cands = [a for a in cands if lo <= lat[a] <= hi]
    out = list(archs)
    for _ in range(k):
        if not cands:
            where = "" if within is None else f" within {list(within)} ms"
            raise UserError(f"no arch of the pool of {pool} left to add{where}: lower n or raise pool")
        ms = sorted(lat[a] for a in out)
        if within is not None:
            ms = sorted({within[0], within[1], *(m for m in ms if within[0] <= m <= within[1])})
        a, b = max(itertools.pairwise(ms), key=lambda g: g[1] - g[0])
        best = min(cands, key=lambda c: abs(lat[c] - (a + b) / 2))
        cands.remove(best)
        out.append(best)
    return sorted(out, key=lat.get)
