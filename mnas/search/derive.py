"""Trials derived from the hand designs: a published variant in the space with one kind of choice made cheapest in
every block (squeeze-excite off, the smallest kernel, or both), then stepped down until it fits the budget.

Why (docs/results.md, 2026-12-07): on the cluttered proxy at pixel 15 ms, MobileNetV3-Small at any width from 0.75
to 0.88 and every find scored 80.6-80.9% (six seeds), while V3-Small 1.0 scored 81.55%; without its squeeze-excite
modules, which cost 1.6 of its 17.2 ms on the Pixel-1 table, V3-Small at width 0.95 fits 15 ms and scored above
1.0. A random search rarely draws such a network (SE off in all eleven blocks is one draw in 2^11), and a
weight-sharing estimate cannot tell a one-point gain from its own noise, so these few structured candidates are
enqueued as trials (scored like any other, `derived` in trials.csv) and the second stage (`rerank.k`) trains them
beside the top trials. Which simplification pays, if any, depends on the device's table and the task, so each is a
candidate, not a rule.

The step-down is greedy within the space: of the width choices (stem, stage outputs, expansions, head, hidden), one
notch down where it loses the fewest MACs per millisecond saved, until the latency is within the budget.
"""
from __future__ import annotations

from mnas.nn.space import Space
from mnas.nn.stats import count

SIMPLIFICATIONS = {"no SE": ("se",), "smallest kernels": ("kernel",), "no SE, smallest kernels": ("se", "kernel")}
WIDTH_KEYS = ("_out", "_expand")  # stem_out, s<i>_out, head_out, hidden_out; s<i>_b<j>_expand


def _choices(space: Space) -> dict[str, list]:
    """{parameter name: its options} for every choice of the space (a probe through Space.sample)."""
    out = {}
    space.sample(lambda name, options: out.setdefault(name, list(options))[-1])
    for i, st in enumerate(space.stages):  # blocks beyond the probe's depth
        for j in range(max(st.depth)):
            for key in ("kernel", "expand", "se", "act"):
                if len(options := getattr(st, key)) > 1:
                    out.setdefault(f"s{i}_b{j}_{key}", list(options))
    return out


def build(space: Space, params: dict):
    return space.sample(lambda name, options: params[name])


def simplify(params: dict, choices: dict, kinds) -> dict:
    """params with every block's choices of `kinds` ("se", "kernel") at their cheapest option (off / smallest)."""
    out = dict(params)
    for name in params:
        kind = name.rsplit("_", 1)[-1]
        if kind in kinds and name in choices:
            out[name] = False if kind == "se" else min(choices[name])
    return out


def step_down(space: Space, params: dict, choices: dict, latency_fn, budget_ms: float, max_steps: int = 60):
    """Greedy: one width choice a notch down at a time, the fewest MACs lost per millisecond saved, until within
    the budget; (params, latency) or None when no step helps any more."""
    arch = build(space, params)
    lat, macs = latency_fn(arch), count(arch).macs
    for _ in range(max_steps):
        if lat <= budget_ms:
            return params, lat
        best = None
        for name, value in params.items():
            if not name.endswith(WIDTH_KEYS) or name not in choices:
                continue
            lower = [v for v in choices[name] if v < value]
            if not lower:
                continue
            trial = dict(params, **{name: max(lower)})
            arch = build(space, trial)
            t_lat, t_macs = latency_fn(arch), count(arch).macs
            if t_lat >= lat:
                continue
            cost = (macs - t_macs) / (lat - t_lat)
            if best is None or cost < best[0]:
                best = (cost, trial, t_lat, t_macs)
        if best is None:
            return None
        _, params, lat, macs = best
    return (params, lat) if lat <= budget_ms else None


def derived_trials(space: Space, baselines: dict, latency_fn, budget_ms: float) -> list[tuple[str, dict]]:
    """[(label, params)]: for each family of in-space hand designs (`baselines`: study.space_baselines) and each
    simplification the space offers, the narrowest published variant whose simplified network is over the budget
    (the widest when none is) simplified and stepped down to fit; distinct parameter sets, none a hand design."""
    choices = _choices(space)
    families: dict[str, list] = {}
    for arch, (label, params) in baselines.items():
        families.setdefault(label.rsplit(" ", 1)[0], []).append((count(arch).macs, label, params))
    out, seen = [], [p for _, p in baselines.values()]
    for variants in families.values():
        variants.sort(key=lambda v: v[0])
        for name, kinds in SIMPLIFICATIONS.items():
            if not any(n.endswith("_" + k) for k in kinds for n in choices):
                continue
            simple = [(label, simplify(p, choices, kinds)) for _, label, p in variants]
            simple = [(label, p) for (label, p), (_, _, orig) in zip(simple, variants) if p != orig]
            if not simple:
                continue
            over = [(label, p) for label, p in simple if latency_fn(build(space, p)) > budget_ms]
            label, start = over[0] if over else simple[-1]
            fitted = step_down(space, start, choices, latency_fn, budget_ms)
            if fitted is not None and fitted[0] not in seen:
                seen.append(fitted[0])
                out.append((f"{label}, {name}" + (", fitted to the budget" if fitted[0] != start else ""), fitted[0]))
    return out
