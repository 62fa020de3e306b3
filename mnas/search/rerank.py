"""The search's second stage (`rerank.k` > 0): its top trials and every hand design within the budget, trained.

The supernet's estimates order archs of equal latency little better than counting MACs (docs/proxy.md: Kendall
tau 0.29 for the 1-epoch default on 17 archs at 13-16.4 ms, and a second training of the same supernet reorders
them), so which of a search's top trials is best, and whether it beats a hand design of about the same latency,
is mostly the luck of one supernet training. This stage settles it the way MnasNet scored every sample: by
training. The k in-budget trials the estimator rates highest (the final choice among them), the trials derived
from the hand designs (mnas.search.derive: few, and what a noisy estimate cannot rank), the same simplified hand
designs at the width multiplier filling the budget (derived fills: not trials, as they lie between the space's
widths; one may become best.json's find, with `trial` None and `derived` its name), and every published
MobileNetV1/V2/V3 variant within the budget (a point of the space or not) are each trained from scratch `seeds`
times with mnas.compare's 600-step recipe, on the proxy task's training split, and scored on its validation split.
The training seeds start at `first_seed` (100), so these trainings share no seed with mnas.compare's (0, 1, ...,
scored on the test split): a comparison run afterwards is an independent check, not the same draw again.

The find is the best searched candidate by mean validation accuracy; it is recommended over the best hand design
only when it leads by more than the combined seed spread sqrt(std_find^2 + std_hand^2) (mnas.compare's win rule);
otherwise the hand design is. A find picked as the best of several on the same seeds is scored too high by the pick
itself (the winner's curse: on 2026-12-07 a +1.31 lead at selection became -0.35 in mnas.compare), so a find that
wins this way is trained again on `confirm` fresh seeds, and the decision is taken on those alone against the hand
designs' trainings (which no pick has biased). Each training is cached under `cache_dir` (mnas.compare's cache,
keyed by arch, recipe and seed), so a killed search resumed with resume=<run> trains only what is missing, and a
rerun costs nothing. Writes <run>/rerank.csv; best.json's arch becomes the re-ranked find, with `rerank` and
`recommendation`.
"""
from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import pandas as pd

from mnas.compare.run import Recipe, scaled_proxy, train_all
from mnas.errors import UserError
from mnas.nn.arch import ArchConfig
from mnas.nn.models import hand_designs, variant
from mnas.nn.space import Space

COLUMNS = ["model", "kind", "trial", "latency_ms", "macs", "estimate", "steps", "val_acc", "val_std", "test_acc",
           "seeds", "val_acc_per_seed", "arch"]


@dataclass(frozen=True)
class RerankSettings:
    k: int = 0               # top in-budget trials by the estimate (0 = no second stage)
    seeds: int = 2           # trainings per candidate (>= 2: the spread decides the recommendation)
    first_seed: int = 100    # training seeds first_seed .. first_seed + seeds - 1 (mnas.compare uses 0, 1, ...)
    max_steps: int = 600     # mnas.compare's README recipe: 600 steps of 64 images, lr 0.1, cosine
    batch_size: int = 64
    lr: float = 0.1
    settle_steps: int = 1200  # a tie the find leads: it and the hand designs it does not beat, trained this long
    settle_seeds: int = 4     # ... on this many fresh seeds (after the pick's), which decide (0 = no settling)
    confirm: int = 2         # fresh seeds a winning find is trained on before it is recommended (0 = no check)
    jobs: int = 1            # trainings side by side in 1-thread worker processes (2 on a 2-core machine)
    cache_dir: str = "runs/compare/cache"

    def __post_init__(self):
        for key in ("k", "first_seed", "settle_steps"):
            v = getattr(self, key)
            if isinstance(v, bool) or not isinstance(v, int) or v < 0:
                raise UserError(f"rerank.{key}={v!r} is invalid: use a whole number >= 0")
        for key in ("seeds", "max_steps", "batch_size", "jobs"):
            v = getattr(self, key)
            if isinstance(v, bool) or not isinstance(v, int) or v < (2 if key == "seeds" else 1):
                floor = "2 (the spread decides the recommendation)" if key == "seeds" else "1"
                raise UserError(f"rerank.{key}={v!r} is invalid: use a whole number >= {floor}")
        for key in ("confirm", "settle_seeds"):
            v = getattr(self, key)
            if isinstance(v, bool) or not isinstance(v, int) or v < 0 or v == 1:
                off = "no check" if key == "confirm" else "no settling"
                raise UserError(f"rerank.{key}={v!r} is invalid: use 0 ({off}) or a whole number >= 2 (the spread "
                                "decides)")
        if isinstance(self.lr, bool) or not isinstance(self.lr, (int, float)) or not self.lr > 0:
            raise UserError(f"rerank.lr={self.lr!r} is invalid: use a learning rate > 0")


def candidates(trials: pd.DataFrame, best: dict, space: Space, k: int, proxy_resolution: int) -> list[dict]:
    """The k in-budget searched trials of highest estimate (distinct archs; the final choice always among them), the
    derived trials, the derived fills (best.json's `derived_fills`: searched candidates that are not trials,
    `trial` None) and every hand design within the budget (best.json's `hand_designs`, the widths filling the
    budget among them), as mnas.compare rows."""
    budget = best["budget_ms"]
    done = trials[(trials["state"] == "COMPLETE") & (trials["estimated"] == True)  # noqa: E712
                  & (trials["latency_ms"] <= budget) & trials["baseline"].isna()]
    if "measured_ms" in done:  # a live device: measured over the budget is out (mnas.search.study.measure_candidates)
        done = done[~(done["measured_ms"] > budget)]
    done = done.sort_values(["accuracy", "latency_ms"], ascending=[False, True]).drop_duplicates("arch")
    picked = done.head(k)
    if best.get("arch") and not best.get("baseline") and best["arch"] not in set(picked["arch"]):
        picked = pd.concat([picked, done[done["arch"] == best["arch"]]])
    if "derived" in done:  # the hand designs' simplified variants (mnas.search.derive): always trained
        picked = pd.concat([picked, done[done["derived"].notna() & ~done["arch"].isin(picked["arch"])]])

    def name_of(t) -> str:
        derived = getattr(t, "derived", None)
        return f"trial {int(t.number)}" + (f" ({derived})" if isinstance(derived, str) else "")
    rows = [dict(model=name_of(t), kind="search", trial=int(t.number), arch=ArchConfig.from_string(
                 t.arch), latency_ms=float(t.latency_ms), macs=float(t.macs), estimate=float(t.accuracy))
            for t in picked.itertuples()]
    rivals = {r["model"]: r for r in best.get("hand_designs") or []}
    trial_of = dict(zip(trials["baseline"], trials["number"]))
    for _, _, label, arch in hand_designs(space.resolution, space.num_classes):
        if (row := rivals.get(label)) is not None:
            rows.append(dict(model=label, kind="hand", trial=trial_of.get(label), arch=arch,
                             latency_ms=row["latency_ms"], macs=row["macs"], estimate=row.get("accuracy")))
    for row in rivals.values():  # a family's width multiplier filling the budget (mnas.search.ship.filled_width)
        if row.get("filled"):
            rows.append(dict(model=row["model"], kind="hand", trial=None, arch=variant(
                row["family"], row["variant"], space.resolution, space.num_classes)[2], latency_ms=row["latency_ms"],
                macs=row["macs"], estimate=row.get("accuracy")))
    for row in best.get("derived_fills") or []:  # simplified hand designs at the filling width: not trials
        rows.append(dict(model=row["model"], kind="search", trial=None, arch=ArchConfig.from_string(row["arch"]),
                         latency_ms=row["latency_ms"], macs=row["macs"], estimate=row.get("accuracy")))
    for r in rows:
        r["proxy_resolution"] = scaled_proxy(r["arch"].resolution, space.resolution, proxy_resolution)
    return rows


def recipe_of(data_cfg: dict, s: RerankSettings, max_stride: int = 8) -> Recipe:
    """mnas.compare's Recipe for these trainings: the search's proxy task and split sizes, the rerank schedule."""
    return Recipe(data=data_cfg["name"], data_root=data_cfg.get("root"), val_size=data_cfg.get("val_size", 0.1),
                  train_subset=data_cfg.get("train_subset"), proxy_resolution=data_cfg.get("proxy_resolution", 32),
                  max_steps=s.max_steps, batch_size=s.batch_size, lr=s.lr, max_stride=max_stride)


def decide(table: pd.DataFrame) -> dict:
    """The re-ranked find (the best searched candidate by mean validation accuracy), the best hand design by the same
    mean, and what to ship: the find only when it beats every hand design by more than their combined seed spread;
    `rival` is the hand design that comes closest to that (lead minus spread), `lead_points`/`spread_points` are
    against it; `close` the hand designs the find does not beat beyond the spread."""
    search, hand = table[table["kind"] == "search"], table[table["kind"] == "hand"]
    find = search.loc[search["val_acc"].idxmax()] if len(search) else None
    top = hand.loc[hand["val_acc"].idxmax()] if len(hand) else None
    out = {"find": None if find is None else find["model"], "hand": None if top is None else top["model"],
           "rival": None, "lead_points": None, "spread_points": None, "wins": None, "close": []}
    if find is not None and top is not None:
        rows = [(float(100 * (find["val_acc"] - h.val_acc)), float(100 * math.hypot(find["val_std"], h.val_std)),
                 h.model) for h in hand.itertuples()]
        lead, spread, rival = min(rows, key=lambda r: r[0] - r[1])
        close = [m for a, b, m in rows if a <= b]
        out.update(rival=rival, lead_points=lead, spread_points=spread, wins=not close, close=close)
    out["ship"] = "found" if find is not None and (top is None or out["wins"]) else out["hand"]
    return out


def scored(row: dict, results: dict, i: int, seeds: range, steps: int | None = None) -> dict:
    """A candidate row with its trainings' mean and spread over `seeds` (validation decides, test is recorded)."""
    val = pd.Series([results[i, j]["val_acc"] for j in seeds])
    return dict(row, arch=row["arch"].to_string(), seeds=len(seeds), val_acc=val.mean(), val_std=val.std(), steps=steps,
                test_acc=sum(results[i, j]["test_acc"] for j in seeds) / len(seeds),
                val_acc_per_seed=";".join(f"{v:.4f}" for v in val))


def settle(rows: list[dict], table: pd.DataFrame, choice: dict, recipe: Recipe, data, s: RerankSettings,
           progress: bool = True) -> tuple[pd.DataFrame, dict, int, Recipe]:
    """A tie the find leads, decided by longer trainings on more seeds: the find and every hand design it does not
    beat beyond the spread, trained `s.settle_steps` steps on `s.settle_seeds` fresh seeds (after the pick's), which
    decide. Why (docs/results.md, 2026-12-07, pixel 15 ms): at 600 steps one training's spread (0.5-1.1 points on
    the proxy) is as large as the gaps between the best candidates, and it is about 0.4 at 1200 (V3-Small 0.95
    without SE led 0.88 by +0.39, spread 1.20, at 600 steps; by +1.27, spread 0.54, at 1200 on six seeds); and a
    spread from two seeds is itself a guess (0.88's two 1200-step trainings on the pick's seeds: spread 1.22, against
    0.36 over six). Fresh seeds also leave the pick's own bias behind, so a find that wins here is not confirmed
    again. The hand designs it beats already stay beaten. (the settling round's rows, the decision taken on them
    with the pick's under `pick`, trainings done now, its recipe)."""
    longer = replace(recipe, max_steps=s.settle_steps)
    picked = [r for r in rows if r["model"] in (choice["find"], *choice["close"])]
    first = s.first_seed + s.seeds
    seeds = range(first, first + s.settle_seeds)
    results, trained = train_all(picked, longer, data, s.settle_seeds, Path(s.cache_dir), progress=progress,
                                 jobs=s.jobs, first_seed=first, desc=f"re-rank: settling at {s.settle_steps} steps")
    settled = pd.DataFrame([scored(r, results, i, seeds, s.settle_steps) for i, r in enumerate(picked)],
                           columns=COLUMNS).sort_values("val_acc", ascending=False)
    again = decide(settled)
    pick = {k: choice[k] for k in ("rival", "lead_points", "spread_points", "wins")}
    return settled, dict(again, find=choice["find"], pick=pick, settle_steps=s.settle_steps,
                         settle_seeds=list(seeds)), trained, longer


def confirm(row: dict, table: pd.DataFrame, choice: dict, recipe: Recipe, data, s: RerankSettings,
            progress: bool = True) -> tuple[dict, dict, int]:
    """The winning find trained on `s.confirm` fresh seeds (after the selection's), and the decision taken again with
    those trainings alone against the hand designs': (the final choice, with the selection's figures under
    `selection`; the find's fresh row, kind "confirm"; trainings done now)."""
    first = s.first_seed + s.seeds
    seeds = range(first, first + s.confirm)
    results, trained = train_all([row], recipe, data, s.confirm, Path(s.cache_dir), progress=progress, jobs=s.jobs,
                                 first_seed=first, desc="re-rank: confirming the find")
    fresh = dict(scored(row, results, 0, seeds, recipe.max_steps), kind="confirm")
    again = decide(pd.concat([pd.DataFrame([dict(fresh, kind="search")]), table[table["kind"] == "hand"]]))
    selection = {k: choice[k] for k in ("rival", "lead_points", "spread_points", "wins")}
    final = dict(choice, **{k: again[k] for k in ("rival", "lead_points", "spread_points", "wins", "close", "ship")},
                 selection=selection, confirm_seeds=list(seeds))
    return final, fresh, trained


def rerank(run: Path, space: Space, data_cfg: dict, s: RerankSettings, max_stride: int = 8,
           progress: bool = True) -> dict:
    """The second stage on a finished search in `run` (trials.csv, best.json); returns the updated best.json."""
    run = Path(run)
    best = json.loads((run / "best.json").read_text())
    if not s.k or not best.get("arch"):
        return best
    trials = pd.read_csv(run / "trials.csv")
    recipe = recipe_of(data_cfg, s, max_stride)
    rows = candidates(trials, best, space, s.k, recipe.proxy_resolution)
    n_search = sum(r["kind"] == "search" for r in rows)
    print(f"re-rank: {n_search} searched trials and {len(rows) - n_search} hand designs within "
          f"{best['budget_ms']:g} ms, each trained {s.seeds}x from scratch ({s.max_steps} steps of {s.batch_size}, "
          f"seeds {s.first_seed}-{s.first_seed + s.seeds - 1}; cached in {s.cache_dir})")
    data = recipe.load_data()
    results, trained = train_all(rows, recipe, data, s.seeds, Path(s.cache_dir), progress=progress,
                                 jobs=s.jobs, first_seed=s.first_seed, desc="re-rank: training")
    seeds = range(s.first_seed, s.first_seed + s.seeds)
    table = pd.DataFrame([scored(r, results, i, seeds, s.max_steps) for i, r in enumerate(rows)], columns=COLUMNS)
    table = table.sort_values("val_acc", ascending=False)
    choice, deciding_recipe = decide(table), recipe
    settling = bool(s.settle_steps and s.settle_seeds and choice["wins"] is False and choice["lead_points"] > 0)
    if settling:
        settled, choice, n, deciding_recipe = settle(rows, table, choice, recipe, data, s, progress)
        trained += n
        table = pd.concat([table, settled], ignore_index=True)
    elif choice["ship"] == "found" and choice["hand"] is not None and s.confirm:
        row = next(r for r in rows if r["model"] == choice["find"])
        choice, fresh, n = confirm(row, table, choice, recipe, data, s, progress)
        trained += n
        table = pd.concat([table, pd.DataFrame([fresh], columns=COLUMNS)], ignore_index=True)
    table.to_csv(run / "rerank.csv", index=False)
    find = table[(table["kind"] == "search") & (table["model"] == choice["find"])].iloc[0]
    best = with_find(best, trials, find)
    best["rerank"] = dict(asdict(s), **choice, trained_now=trained, candidates=len(rows),
                          recipe=asdict(recipe), deciding_recipe=asdict(deciding_recipe))
    rec = best.get("recommendation") or {}
    rec.update(ship=choice["ship"], source="rerank", against=choice["rival"] if choice["ship"] == "found" else "found",
               margin_points=choice["lead_points"] if choice["ship"] == "found" else
               (None if choice["lead_points"] is None else -choice["lead_points"]),
               spread_points=choice["spread_points"], unscored=[],
               within_noise=bool(choice["wins"] is False and (choice["lead_points"] or 0) > 0), best_is_hand=False,
               tied=False)
    best["recommendation"] = rec
    (run / "best.json").write_text(json.dumps(best, indent=2))
    print(text(table, choice, s))
    return best


def with_find(best: dict, trials: pd.DataFrame, find) -> dict:
    """best.json with the re-ranked find (a rerank.csv row) as its arch: a trial, or a derived fill (`trial` None,
    `derived` its name); the estimate's own choice is kept as `estimate_choice`."""
    if pd.isna(find["trial"]):
        row = next(r for r in best["derived_fills"] if r["model"] == find["model"])
        if row["arch"] == best.get("arch"):
            return best
        return dict(best, estimate_choice=best.get("trial"), trial=None, derived=row["model"], arch=row["arch"],
                    latency_ms=row["latency_ms"], measured_ms=row.get("measured_ms"), macs=row["macs"],
                    params=row["params"], accuracy=row["accuracy"], baseline=None, tie=[],
                    arch_json=ArchConfig.from_string(row["arch"]).to_dict())
    t = trials[trials["number"] == find["trial"]].iloc[0]
    if int(t["number"]) == best.get("trial"):
        return best
    return dict(best, estimate_choice=best.get("trial"), trial=int(t["number"]), derived=None, arch=t["arch"],
                latency_ms=float(t["latency_ms"]), macs=float(t["macs"]), params=float(t["params"]),
                measured_ms=None if pd.isna(t.get("measured_ms")) else float(t["measured_ms"]),
                accuracy=float(t["accuracy"]), baseline=None, tie=[],
                arch_json=ArchConfig.from_string(t["arch"]).to_dict())


def text(table: pd.DataFrame, choice: dict, s: RerankSettings) -> str:
    """The re-rank's summary: each candidate's mean (and spread) and what to ship."""
    lines = [f"re-rank, proxy validation accuracy after {s.max_steps} steps from scratch (mean +- std of {s.seeds}):"]
    rounds = table[table["kind"] != "confirm"]
    for r in rounds[rounds["steps"] != choice.get("settle_steps")].itertuples():
        est = "" if pd.isna(r.estimate) else f", estimate {100 * r.estimate:.2f}%"
        lines.append(f"  {r.model:28} {r.latency_ms:6.2f} ms  {100 * r.val_acc:.2f} +- {100 * r.val_std:.2f}%{est}")
    if "pick" in choice:
        pick = choice["pick"]
        lines.append(f"  a tie that {choice['find']} leads ({pick['lead_points']:+.2f} points against {pick['rival']}, "
                     f"spread {pick['spread_points']:.2f}), settled at {choice['settle_steps']} steps on fresh seeds "
                     f"{choice['settle_seeds'][0]}-{choice['settle_seeds'][-1]}:")
        for r in rounds[rounds["steps"] == choice["settle_steps"]].itertuples():
            lines.append(f"  {r.model:28} {r.latency_ms:6.2f} ms  {100 * r.val_acc:.2f} +- {100 * r.val_std:.2f}%")
    if "selection" in choice:
        fresh, sel = table[table["kind"] == "confirm"].iloc[0], choice["selection"]
        seeds = choice["confirm_seeds"]
        lines.append(f"  {choice['find']} won ({sel['lead_points']:+.2f} points against {sel['rival']}, "
                     f"spread {sel['spread_points']:.2f}); on fresh seeds {seeds[0]}-{seeds[-1]}: "
                     f"{100 * fresh.val_acc:.2f} +- {100 * fresh.val_std:.2f}%, which decides")
    final = "recommended (second stage, final)"
    if choice["hand"] is None:
        lines.append(f"{final}: the find ({choice['find']}); no hand design fits the budget")
    elif choice["ship"] == "found":
        lines.append(f"{final}: the find ({choice['find']}): it beats every hand design within the budget beyond "
                     f"the combined seed spread; the closest, {choice['rival']}, by {choice['lead_points']:+.2f} "
                     f"points (spread {choice['spread_points']:.2f})")
    else:
        lines.append(f"{final}: {choice['hand']}, a hand design: the best find ({choice['find']}) is "
                     f"{choice['lead_points']:+.2f} points against {choice['rival']}, combined seed spread "
                     f"{choice['spread_points']:.2f}: no win beyond the spread")
    return "\n".join(lines)
