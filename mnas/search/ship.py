"""What to ship after a search: the hand designs within the budget, the recommendation (the find or a hand
design, by the search's own estimate), and the summary's closing lines (final-choice tie, measured budget check,
recommendation). mnas.search.study.write_results calls them."""
from __future__ import annotations

from pathlib import Path

from mnas.latency.predict import speed_note
from mnas.nn.arch import ArchConfig
from mnas.nn.models import FAMILIES, HAND_DESIGNS, hand_designs, variant
from mnas.nn.space import Space
from mnas.nn.stats import count

WIDTH_FAMILIES = ("v1", "v2", "v3_small", "v3_large")  # families whose width multiplier a user can set freely


def at_width(family: str, width: float, resolution: int, num_classes: int, transform=None) -> ArchConfig:
    """A family's network at `width`, passed through `transform(arch) -> arch` when given (mnas.search.derive's
    simplifications: squeeze-excite off, the smallest kernels)."""
    arch = variant(family, width, resolution, num_classes)[2]
    return arch if transform is None else transform(arch)


def filled_width(family: str, latency_fn, budget_ms: float, resolution: int, num_classes: int,
                 transform=None) -> float | None:
    """The widest multiplier of a family, in steps of 0.01 from 0.25 to 1.5, whose network (through `transform`,
    at_width) has a latency within the budget (bisection: latency does not fall as every layer widens), or None
    when 0.25 does not fit."""
    fits = lambda w: latency_fn(at_width(family, w / 100, resolution, num_classes, transform)) <= budget_ms  # noqa
    lo, hi = 25, 150
    if not fits(lo):
        return None
    if fits(hi):
        return hi / 100
    while hi - lo > 1:
        mid = (lo + hi) // 2
        lo, hi = (mid, hi) if fits(mid) else (lo, mid)
    return lo / 100


def measured_fill(family: str, width: float, budget_ms: float, measure, resolution: int, num_classes: int,
                  tries: int = 10, transform=None) -> tuple[float | None, dict[str, float]]:
    """On a device measured here: `width` (filled_width by the prediction) stepped down by 0.01 until the
    network's measured latency (`measure(archs) -> [ms]`) is within the budget, since the table under-predicts
    some networks by a few percent. (that width or None after `tries`, {arch string: ms} of every network
    measured), so a caller's `measured` figures decide for each of them."""
    seen = {}
    for i in range(tries):
        w = round(width - i / 100, 2)
        if w < 0.25:
            break
        arch = at_width(family, w, resolution, num_classes, transform)
        seen[arch.to_string()] = ms = float(measure([arch])[0])
        if ms <= budget_ms:
            return w, seen
    return None, seen


def measured_fills(found, budget_ms: float, measured: dict, measure, resolution: int,
                   num_classes: int) -> dict[str, float]:
    """On a device measured here: each filled network of `found` ([(family, width, arch, transform)], predicted to
    fill the budget) that `measured` (arch string -> ms) puts over it, stepped down by measurement (measured_fill);
    the new {arch string: ms}."""
    out = {}
    for family, w, arch, transform in found:
        if measured.get(arch.to_string(), 0.0) > budget_ms:
            out.update(measured_fill(family, w - 0.01, budget_ms, measure, resolution, num_classes,
                                     transform=transform)[1])
    return out


def slimming_starts(space: Space, family: str, width: float, designs, transform=None) -> list[tuple[str, ArchConfig]]:
    """[(label, arch)] of the family's published variants (`designs`: hand_designs) at least as wide as `width`,
    through `transform`, that are points of the space, narrowest first: what a network of that family at `width`
    is scored as a slimming of (Estimator.score_slimming)."""
    wider = sorted((v, label, a if transform is None else transform(a)) for f, v, label, a in designs
                   if f == family and v >= width)
    return [(label, a) for _, label, a in wider if space.params_for(a) is not None]


def filled_archs(space: Space, latency_fn, budget_ms: float, families=WIDTH_FAMILIES,
                 transform=None) -> dict[str, tuple]:
    """{family: (width, arch)} of each family's filled width (filled_width) at the space's deployment shape, where
    it is not a published width (with a `transform`, where the transformed network is not a published one)."""
    out = {}
    for family in families:
        w = filled_width(family, latency_fn, budget_ms, space.resolution, space.num_classes, transform)
        if w is None:
            continue
        arch = at_width(family, w, space.resolution, space.num_classes, transform)
        if w not in HAND_DESIGNS[family] or arch != variant(family, w, space.resolution, space.num_classes)[2]:
            out[family] = (w, arch)
    return out


def hand_rivals(space: Space, latency_fn, budget_ms: float, trials, measured: dict | None = None,
                score_fn=None) -> list[dict]:
    """Every published hand design (mnas.nn.models.HAND_DESIGNS) within the budget at the space's deployment shape,
    fastest first: its latency (and measured latency, where `measured` holds it: then that decides whether it
    fits) and MACs, whether it is a point of the space, and the search's estimate of it when a trial scored it
    (an enqueued baseline). Then, for each width family with a published variant within the budget, the same
    network at the width multiplier that fills the budget (filled_width; `filled`: True), unless that is a
    published width: the strongest rival a user gets by hand (at pixel 15 ms, 1200 steps, MobileNetV3-Small 0.88
    beat 0.75 beyond the seed spread and every find was level with it or below; docs/results.md, 2026-12-07).
    score_fn(arch, start) -> estimate or None (Estimator.score_slimming) scores a filled width as a slimming of
    its family's narrowest published variant in the space that is at least as wide (`scored_as`), so the
    recommendation weighs it like the trials (MobileNetV3-Small 0.88 as a slimming of 1.0 in v3_small)."""
    done = trials[(trials["state"] == "COMPLETE") & (trials["estimated"] == True)]  # noqa: E712
    scored, measured = dict(zip(done["arch"], done["accuracy"])), measured or {}
    rows = []
    deciding = lambda r: r["measured_ms"] if r["measured_ms"] is not None else r["latency_ms"]  # noqa: E731

    def row(model, family, v, arch, filled=False):
        return dict(model=model, family=family, variant=v, arch=arch.to_string(), latency_ms=float(latency_fn(arch)),
                    measured_ms=measured.get(arch.to_string()), macs=count(arch).macs,
                    in_space=space.params_for(arch) is not None, accuracy=scored.get(arch.to_string()),
                    filled=filled, scored_as=None)
    designs = list(hand_designs(space.resolution, space.num_classes))
    for family, v, label, arch in designs:
        r = row(label, family, v, arch)
        if deciding(r) <= budget_ms:
            rows.append(r)
    published = [f for f in WIDTH_FAMILIES if any(r["family"] == f for r in rows)]
    deciding_ms = lambda a: measured.get(a.to_string(), latency_fn(a))  # noqa: E731
    for family, (w, arch) in filled_archs(space, deciding_ms, budget_ms, published).items():
        r = row(f"{FAMILIES[family][1]} {w:g} (width filling the budget)", family, w, arch, True)
        if deciding(r) > budget_ms:
            continue
        for label, start in slimming_starts(space, family, w, designs) if score_fn is not None else ():
            if (acc := score_fn(arch, start)) is not None:
                r.update(accuracy=acc, scored_as=f"a slimming of {label}")
                break
        rows.append(r)
    return sorted(rows, key=deciding)


def recommend(best: dict, rivals: list[dict], device: str, out_dir: Path, margin: float = 0.0) -> dict:
    """Which model to ship, by the search's own estimator: the find, or an in-budget hand design that the
    estimator scored at least as high and that the final choice's tie (best["tie"]) did not settle for the find.
    With margin > 0 (points) the find must beat the best scored hand design by more than that: a smaller lead is
    inside the estimator's own noise (supernets trained with other seeds reorder archs of equal latency by about
    that much), so the published design, known to work, is recommended and the lead reported (`within_noise`).
    Hand designs outside the space were not scored: they are named, with the mnas.compare command that trains them
    beside the find, so a loss to one cannot pass silently."""
    scored = [r for r in rivals if r["accuracy"] is not None]
    unscored = [r for r in rivals if r["accuracy"] is None]
    top = max(scored, key=lambda r: r["accuracy"], default=None)
    tied = {r.get("baseline") or f"trial {r['trial']}" for r in best.get("tie") or []}
    out = {"ship": None, "margin_points": None, "against": None, "unscored": [r["model"] for r in unscored],
           "check": None, "best_is_hand": bool(best.get("baseline")), "tied": False, "within_noise": False,
           "ship_margin": margin, "train": None}
    if best.get("arch") is None:
        out["ship"] = top["model"] if top is not None else None  # a scored hand design, else none yet
    elif best.get("baseline"):  # the final choice is a hand design (the best estimate, or the tie's most MACs)
        out.update(ship=best["baseline"], against="found")
    elif top is not None and top["accuracy"] >= best["accuracy"] and top["model"] not in tied:
        out.update(ship=top["model"], margin_points=100 * (top["accuracy"] - best["accuracy"]), against="found")
    elif top is not None and margin > 0 and 100 * (best["accuracy"] - top["accuracy"]) <= margin:
        out.update(ship=top["model"], margin_points=100 * (top["accuracy"] - best["accuracy"]), against="found",
                   within_noise=True)
    else:
        out["ship"] = "found"
        if top is not None:
            out.update(margin_points=100 * (best["accuracy"] - top["accuracy"]), against=top["model"],
                       tied=top["model"] in tied)
    ship = next((r for r in rivals if r["model"] == out["ship"]), None)
    if ship is not None:  # a hand design: the deployment network to train on the user's images
        width, res, _ = variant(ship["family"], ship["variant"], ArchConfig.from_string(ship["arch"]).resolution)
        out["train"] = (f"python -m mnas.train model={FAMILIES[ship['family']][0]} width={width:g} proxy=false "
                        f"resolution={res} data=imagefolder data.root=<your images>")
    if rivals:
        variants = {}
        for r in rivals:
            variants.setdefault(r["family"], []).append(r["variant"])
        listed = ", ".join(f"{f}: [{', '.join(f'{v:g}' for v in vs)}]" for f, vs in variants.items())
        out["check"] = (f"python -m mnas.compare device={device} run={out_dir} recipe=medium max_steps=600 "
                        f"'families=[{','.join(variants)}]' 'variants={{{listed}}}'")
    return out


def measured_text(best: dict, budget_ms: float) -> str:
    """The summary's line on the measured budget check (best["measured"]: measure_candidates' outcome)."""
    m = best["measured"]
    over = m["over_budget"]
    line = f"measured here ({m['how']}): {m['networks']} in-budget trials and hand designs near the budget; "
    line += (f"{len(over)} trial(s) predicted within {budget_ms:g} ms ran over it and are left out: " + ", ".join(
        f"trial {r['trial']} ({r['latency_ms']:.2f} ms predicted, {r['measured_ms']:.2f} measured)" for r in over[:5])
        + (", ..." if len(over) > 5 else "")) if over else f"every in-budget trial measured within {budget_ms:g} ms"
    if best.get("measured_ms") is not None:
        line += f"; the choice measured {best['measured_ms']:.2f} ms ({best['latency_ms']:.2f} predicted)"
    if note := speed_note(m.get("speed") or ()):
        line += f"\nwarning: {note} (python -m mnas.search resume=<this run> measures again)"
    return line


def tie_text(best: dict, z: float) -> str | None:
    """The summary's line on the final choice, when a tie decided it."""
    tie = best.get("tie") or []
    if len(tie) < 2:
        return None
    lead = next(r for r in tie if r["trial"] == best["leader_trial"])
    names = ", ".join(r.get("baseline") or f"trial {r['trial']}" for r in sorted(tie, key=lambda r: r["diff"]))
    return (f"final choice: {len(tie)} in-budget trials are within {z:g} paired standard errors of the best estimate "
            f"(trial {best['leader_trial']}, {100 * lead['accuracy']:.2f}%; the estimator cannot tell them apart): "
            f"{names}; the one with the most MACs is chosen: trial {best['trial']}, {best['macs'] / 1e6:.1f} M "
            f"MACs, {best['latency_ms']:.2f} ms")


def recommendation_text(rec: dict, rivals: list[dict], budget_ms: float, space_name: str, device: str) -> str:
    """The summary's closing lines: the hand designs that fit, which were scored, what to ship and how sure."""
    if not rivals:
        return f"no hand-designed MobileNet fits {budget_ms:g} ms on {device}: nothing to compare the find with"
    measured = any(r.get("measured_ms") is not None for r in rivals)
    ms = lambda r: f"{r['measured_ms']:.2f} ms" if measured else f"{r['latency_ms']:.2f} ms"  # noqa: E731
    how = "measured here, each alone and warm" if measured else "predicted at the deployment shape"
    lines = [f"hand designs within {budget_ms:g} ms ({device}, {how}): " + ", ".join(
        f"{r['model']} {ms(r)}" + ("" if r["accuracy"] is None else f" ({100 * r['accuracy']:.2f}%"
                                   + (f", as {r['scored_as']}" if r.get("scored_as") else "") + ")")
        for r in rivals)]
    if rec["ship"] == "found":
        vs = "" if rec["against"] is None else \
            f", {rec['margin_points']:+.2f} points over {rec['against']} by the same estimate (proxy val)" + \
            (", a tie that the find's MACs decide" if rec["tied"] else "")
        lines.append(f"recommended: the find{vs}" + (", unverified against the hand designs below" if rec["unscored"]
                                                      else ""))
    elif rec.get("within_noise"):  # with unscored hand designs the command comes in their line below
        settle = "" if rec["unscored"] else f". Train both to settle it (proxy test, 3 seeds):\n  {rec['check']}"
        lines.append(f"recommended: {rec['ship']}, a hand design: the find's estimate leads it by "
                     f"{-rec['margin_points']:+.2f} points (proxy val), inside the estimator's own noise "
                     f"(ship_margin {rec['ship_margin']:g} points); a hand design wins a tie{settle}")
    elif rec["against"] == "found" and rec["best_is_hand"]:
        lines.append(f"recommended: {rec['ship']}, a hand design: no searched arch scored higher, or it won the "
                     "final choice's tie")
    elif rec["against"] == "found":
        lines.append(f"recommended: {rec['ship']}, a hand design: the estimator puts it {rec['margin_points']:.2f} "
                     "points at or above the find")
    elif rec["ship"] is not None:
        lines.append(f"recommended: {rec['ship']}, a hand design (no searched arch fits the budget)")
    else:
        lines.append("recommended: none yet, no searched arch fits the budget; compare the hand designs:\n  "
                     + rec["check"])
        return "\n".join(lines)
    if rec["unscored"]:
        inside = {r["model"] for r in rivals if r["in_space"]}
        outside = f"not a point of the {space_name} space"
        why = ", ".join(f"{m} ({'not a trial of this study' if m in inside else outside})" for m in rec["unscored"])
        lines.append(f"not scored by this search: {why}; the find is not shown to beat them. Before shipping, train "
                     "them side by side (proxy test, 3 seeds):\n  " + rec["check"])
    if rec.get("train"):
        lines.append(f"to train {rec['ship']} on your own images (the deployment network):\n  {rec['train']}")
    return "\n".join(lines)
