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
notch down where it loses the fewest MACs per millisecond saved, until the latency is within the budget. The space's
width choices are coarse (head 288/432/576, hidden 512/768/1024 in v3_small), so a step-down can cost more than it
needs: at pixel 15 ms it halved V3-Small 1.0's hidden layer (1024 -> 512) and the result tied V3-Small 0.88
(docs/results.md, 2026-12-07). So each simplification is also made to fit the way a user fits a hand design, by the
width multiplier that fills the budget (`fills`: V3-Small 0.95 without SE at pixel 15 ms, the network that beat every
width of V3-Small on six seeds). Such a network lies between the space's widths: it is not a trial, the supernet
scores it as a slimming of the simplified published variant just wider than it (where that is a point of the
space), and the second stage trains it beside the trials (mnas.search.rerank).
"""
from __future__ import annotations

from functools import partial

from mnas.nn.arch import ArchConfig
from mnas.nn.models import FAMILIES, hand_designs
from mnas.nn.space import Space
from mnas.nn.stats import count
from mnas.search.ship import WIDTH_FAMILIES, filled_archs, measured_fills, slimming_starts

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


def simplified(arch: ArchConfig, kinds, smallest_kernel: int = 3) -> ArchConfig:
    """`arch` with squeeze-excite off in every block ("se" in kinds) and/or every depthwise kernel at the smallest
    ("kernel"): the same simplification as `simplify`, on a network rather than on trial parameters."""
    def one(b):
        kw = {}
        if "se" in kinds and b.se:
            kw["se"] = 0
        if "kernel" in kinds and b.type in ("ir", "ds") and b.kernel > smallest_kernel:
            kw["kernel"] = smallest_kernel
        return b.replace(**kw) if kw else b
    return arch.replace(blocks=tuple(one(b) for b in arch.blocks))


def fill_transforms(space: Space) -> list[tuple[str, str, object]]:
    """[(family, simplification name, transform)] for each width family with a published variant in the space and
    each simplification the space offers that changes that family's networks."""
    choices = _choices(space)
    kernels = [min(v) for n, v in choices.items() if n.endswith("_kernel")]
    smallest = min(kernels) if kernels else 3
    designs = hand_designs(space.resolution, space.num_classes)
    families = [f for f in WIDTH_FAMILIES if any(fam == f and space.params_for(a) is not None
                                                  for fam, _, _, a in designs)]
    out = []
    for family in families:
        sample = next(a for fam, _, _, a in designs if fam == family)
        for name, kinds in SIMPLIFICATIONS.items():
            if not any(n.endswith("_" + k) for k in kinds for n in choices):
                continue
            transform = partial(simplified, kinds=kinds, smallest_kernel=smallest)
            if transform(sample) != sample:
                out.append((family, name, transform))
    return out


def fills(space: Space, latency_fn, budget_ms: float) -> list[tuple[str, str, float, ArchConfig, object]]:
    """[(family, simplification, width, arch, transform)]: each simplified family (fill_transforms) at the width
    multiplier that fills the budget (mnas.search.ship.filled_width), distinct networks."""
    out, seen = [], set()
    for family, name, transform in fill_transforms(space):
        for _, (w, arch) in filled_archs(space, latency_fn, budget_ms, [family], transform).items():
            if arch not in seen:
                seen.add(arch)
                out.append((family, name, w, arch, transform))
    return out


def measure_fills(space: Space, latency_fn, budget_ms: float, measured: dict, measure) -> dict[str, float]:
    """On a device measured here: for each fill (by the prediction) that `measured` (arch string -> ms) puts over
    the budget, its width stepped down by 0.01 until it measures within (mnas.search.ship.measured_fills); the new
    {arch string: ms}."""
    found = [(family, w, arch, transform) for family, _, w, arch, transform in fills(space, latency_fn, budget_ms)]
    return measured_fills(found, budget_ms, measured, measure, space.resolution, space.num_classes)


def fill_rows(space: Space, latency_fn, budget_ms: float, measured: dict | None = None, score_fn=None) -> list[dict]:
    """best.json's `derived_fills`: each fill (`fills`, by measured latency where `measured` holds it) as a row like
    mnas.search.ship.hand_rivals' (model, family, variant, arch, latency_ms, measured_ms, macs, accuracy,
    scored_as) plus `simplification` and `start` (an arch string, or None): the simplified published variant of
    its family that is the narrowest at least as wide and a point of the space, of which the fill is a slimming;
    accuracy is score_fn(arch, start) (None: not scored)."""
    measured = measured or {}
    deciding = lambda a: measured.get(a.to_string(), latency_fn(a))  # noqa: E731
    rows = []
    designs = hand_designs(space.resolution, space.num_classes)
    for family, name, w, arch, transform in fills(space, deciding, budget_ms):
        row = dict(model=f"{FAMILIES[family][1]} {w:g}, {name} (width filling the budget)", family=family,
                   variant=w, simplification=name, arch=arch.to_string(), latency_ms=float(latency_fn(arch)),
                   measured_ms=measured.get(arch.to_string()), macs=count(arch).macs, params=count(arch).params,
                   accuracy=None, scored_as=None, start=None)
        label, start = next(iter(slimming_starts(space, family, w, designs, transform)), (None, None))
        if start is not None:
            row["start"] = start.to_string()
            if score_fn is not None and (acc := score_fn(arch, start)) is not None:
                row.update(accuracy=acc, scored_as=f"a slimming of {label}, {name}")
        rows.append(row)
    return rows


def fills_text(rows: list[dict], budget_ms: float) -> str:
    """The summary's line on the derived fills (fill_rows): not trials, trained by the second stage."""
    ms = lambda r: r["latency_ms"] if r["measured_ms"] is None else r["measured_ms"]  # noqa: E731
    return (f"derived from the hand designs, at the width filling {budget_ms:g} ms (not points of the space; the "
            "second stage, rerank.k > 0, trains them beside the trials): " + ", ".join(
                f"{r['model'].replace(' (width filling the budget)', '')} {ms(r):.2f} ms"
                + ("" if r["accuracy"] is None else f" ({100 * r['accuracy']:.2f}%, as {r['scored_as']})")
                for r in rows))
