"""Latency-aware architecture search with Optuna: `python -m mnas.search device=pixel budget=15ms`.

Define-by-run objective: the space proposes choices through the trial, the objective builds the ArchConfig,
predicts its latency at the deployment shape with the device's latency table, and (if it fits the budget, or
always with the soft MnasNet objective) asks the accuracy estimator on the proxy task. The study lives in a
storage URL (SQLite in the run directory by default), so a rerun with `resume=<run dir>` continues it and
several workers can share one study (`storage=postgresql://...` or `storage=journal:<file>`).
"""
from __future__ import annotations

import base64
import json
import math
import random
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import optuna
from optuna.trial import TrialState

from mnas.errors import UserError
from mnas.latency.predict import speed_around
from mnas.nn.arch import ArchConfig
from mnas.nn.models import hand_designs
from mnas.nn.space import Space
from mnas.nn.stats import count
from mnas.search import report
from mnas.search.derive import derived_trials, fill_rows, fills, fills_text
from mnas.search.ship import (
    filled_archs,
    hand_rivals,
    measured_fills,
    measured_text,
    recommend,
    recommendation_text,
    tie_text,
)

SAMPLERS = ("tpe", "nsga2", "random")
OBJECTIVES = ("constraint", "soft")
STUDY_NAME = "mnas-search"


@dataclass
class SearchSettings:
    budget_ms: float
    sampler: str = "tpe"
    objective: str = "constraint"  # hard budget via trial.set_constraint, or MnasNet's soft ACC * (LAT/T)^w
    w: float = -0.07
    n_trials: int = 50
    timeout: float | None = None
    seed: int = 0
    n_startup_trials: int = 10
    population_size: int = 20
    tie_z: float = 2.0  # final choice: trials within tie_z paired standard errors of the best estimate are tied,
    #                     and the tied one with the most MACs is chosen (0: the best estimate alone); see final_choice
    ship_margin: float = 0.0  # points: the find is recommended over a scored in-budget hand design only when its
    #                           estimate is higher by more than this (the estimator's own noise); see recommend
    band: float = 0.0  # constraint objective: searched archs faster than band * budget are infeasible too, and not
    #                    estimated (0 = no lower bound); the hand designs are scored wherever they fall
    derived: bool = True  # enqueue the hand designs' simplified variants fitted to the budget (mnas.search.derive)
    measure_repeats: int = 30  # on a live device (this machine): the in-budget trials and the hand designs near the
    #                            budget are measured (each alone, warm; the fastest of this many runs) and the budget
    #                            holds for the measured latency too (0 = predicted latency only; measure_candidates)

    def __post_init__(self):
        """Bad settings are refused here, when the command builds them, before data or a supernet is loaded."""
        s = self
        if s.sampler not in SAMPLERS:
            raise UserError(f"unknown sampler {s.sampler!r}: available {', '.join(SAMPLERS)}")
        if s.objective not in OBJECTIVES:
            raise UserError(f"objective={s.objective!r} is invalid: use one of {', '.join(OBJECTIVES)}")
        if s.n_trials is not None and s.n_trials < 1:
            raise UserError(f"n_trials={s.n_trials} is invalid: use a positive count")
        if isinstance(s.tie_z, bool) or not isinstance(s.tie_z, (int, float)) or not s.tie_z >= 0:
            raise UserError(f"tie_z={s.tie_z} is invalid: use a number of standard errors >= 0 (0 = no ties)")
        if isinstance(s.ship_margin, bool) or not isinstance(s.ship_margin, (int, float)) or not s.ship_margin >= 0:
            raise UserError(f"ship_margin={s.ship_margin} is invalid: use accuracy points >= 0 (0 = any margin)")
        if isinstance(s.band, bool) or not isinstance(s.band, (int, float)) or not 0 <= s.band < 1:
            raise UserError(f"band={s.band} is invalid: use a fraction of the budget in [0, 1) (0 = no lower bound)")
        if not isinstance(s.derived, bool):
            raise UserError(f"derived={s.derived!r} is invalid: use true or false")
        if isinstance(s.measure_repeats, bool) or not isinstance(s.measure_repeats, int) or s.measure_repeats < 0:
            raise UserError(f"measure_repeats={s.measure_repeats} is invalid: use a count of timed runs >= 0 "
                            "(0 = the budget checked on predicted latency only)")


def make_sampler(s: SearchSettings) -> optuna.samplers.BaseSampler:
    if s.sampler == "tpe":
        return optuna.samplers.TPESampler(seed=s.seed, multivariate=True, group=True,
                                          n_startup_trials=s.n_startup_trials)
    if s.sampler == "nsga2":
        return optuna.samplers.NSGAIISampler(seed=s.seed, population_size=s.population_size)
    if s.sampler == "random":
        return optuna.samplers.RandomSampler(seed=s.seed)
    raise UserError(f"unknown sampler {s.sampler!r}: available {', '.join(SAMPLERS)}")


def open_storage(url: str):
    """An Optuna storage from a URL: any SQLAlchemy RDB URL, or 'journal:<file>' for a journal file."""
    if url.startswith("journal:"):
        from optuna.storages.journal import JournalFileBackend, JournalStorage
        return JournalStorage(JournalFileBackend(url.removeprefix("journal:")))
    from sqlalchemy.exc import IntegrityError, ProgrammingError
    for attempt in range(6):
        try:
            return optuna.storages.RDBStorage(url, heartbeat_interval=30, grace_period=120)
        except (IntegrityError, ProgrammingError) as e:  # workers started together race to create the schema
            if attempt == 5:
                raise UserError(f"cannot create the study tables in {url!r}: {str(e).splitlines()[0]}") from None
            time.sleep(0.2 + random.random())
        except Exception as e:  # a bad URL, a missing driver or an unreachable server: one line
            raise UserError(f"cannot open storage {url!r}: {str(e).splitlines()[0]} "
                        "(use sqlite:///<file>, postgresql://user@host/db or journal:<file>)") from None


def open_study(storage_url: str, s: SearchSettings) -> optuna.Study:
    multi = s.sampler == "nsga2"
    directions = ["maximize", "minimize"] if multi else ["maximize"]
    try:
        return optuna.create_study(storage=open_storage(storage_url), study_name=STUDY_NAME, directions=directions,
                                   sampler=make_sampler(s), load_if_exists=True)
    except ValueError as e:
        raise UserError(f"cannot use the study in {storage_url}: {e}") from None


def recover_interrupted(study: optuna.Study) -> int:
    """Trials left RUNNING by a killed process: mark them FAIL and enqueue their parameters again, so nothing is
    lost and no finished trial is repeated. Only for `resume=` (the user says that process is gone)."""
    n = 0
    for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        study.tell(t.number, state=TrialState.FAIL, skip_if_finished=True)
        keep = {k: v for k, v in t.user_attrs.items() if k in ("baseline", "derived")}
        study.enqueue_trial(t.params, user_attrs=keep,
                            skip_if_exists=False)
        n += 1
    return n


def space_baselines(space: Space) -> dict[ArchConfig, tuple[str, dict]]:
    """The published hand designs (mnas.nn.models.HAND_DESIGNS) that are points of the space, at its deployment
    shape: arch -> (label, e.g. "MobileNetV3-Small 0.75", the space's parameters)."""
    found = {}
    for _, _, label, arch in hand_designs(space.resolution, space.num_classes):
        if (params := space.params_for(arch)) is not None:
            found[arch] = (label, params)
    return found


def enqueue_baselines(study: optuna.Study, space: Space) -> list[str]:
    """The hand designs that the space can express (e.g. MobileNetV3-Small 0.5/0.75/1.0 in v3_small), as the
    first trials."""
    names = []
    for label, params in space_baselines(space).values():
        study.enqueue_trial(params, user_attrs={"baseline": label}, skip_if_exists=True)
        names.append(label)
    return names


def enqueue_derived(study: optuna.Study, space: Space, latency_fn, budget_ms: float) -> list[str]:
    """The hand designs' simplified variants fitted to the budget (mnas.search.derive), as the next trials; they
    are searched candidates (no `baseline`), labelled `derived`."""
    names = []
    for label, params in derived_trials(space, space_baselines(space), latency_fn, budget_ms):
        study.enqueue_trial(params, user_attrs={"derived": label}, skip_if_exists=True)
        names.append(label)
    return names


def pack(v) -> str:
    """A 0/1 vector (per-image correctness) as base64 of its bits: ~1.7 kB for 10k images, a trial attribute."""
    return base64.b64encode(np.packbits(np.asarray(v, dtype=bool)).tobytes()).decode()


def unpack(text: str, n: int) -> np.ndarray:
    return np.unpackbits(np.frombuffer(base64.b64decode(text), np.uint8))[:n].astype(np.float64)


def make_objective(space: Space, latency_fn, estimate_fn, s: SearchSettings, correct_fn=None):
    multi = s.sampler == "nsga2"

    def objective(trial: optuna.Trial):
        arch = space.sample(trial.suggest_categorical)
        lat = float(latency_fn(arch))
        c = count(arch)
        low = s.band * s.budget_ms if s.objective == "constraint" else 0.0
        feasible = low <= lat <= s.budget_ms
        trial.set_user_attr("arch", arch.to_string())
        trial.set_user_attr("latency_ms", lat)
        trial.set_user_attr("macs", c.macs)
        trial.set_user_attr("params", c.params)
        if s.objective == "constraint":
            trial.set_constraint("latency", max(lat - s.budget_ms, low - lat))
        # over budget (or under the band): not worth estimating (the constraint tells the sampler why), except an
        # enqueued hand design, which the summary compares with the best wherever it falls
        estimated = feasible or s.objective == "soft" or "baseline" in trial.user_attrs
        if estimated:
            t0 = time.perf_counter()
            acc = float(estimate_fn(arch))
            trial.set_user_attr("estimate_s", time.perf_counter() - t0)
            v = correct_fn(arch) if correct_fn is not None else None
            if v is not None:  # kept with the trial: the final choice compares trials paired, in any process
                trial.set_user_attr("correct", pack(v))
                trial.set_user_attr("correct_n", len(v))
        else:
            acc = 0.0
        trial.set_user_attr("accuracy", acc)
        trial.set_user_attr("estimated", estimated)
        if multi:
            return acc, lat
        return acc * (lat / s.budget_ms) ** s.w if s.objective == "soft" else acc

    return objective


def estimated_in_budget(study: optuna.Study, budget_ms: float, measured: dict | None = None) -> list:
    """The completed trials that were estimated and fit the budget: by predicted latency and, for the archs in
    `measured` (arch string -> measured ms: measure_candidates), by measured latency too."""
    measured = measured or {}
    return [t for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
            if t.user_attrs.get("estimated") and t.user_attrs["latency_ms"] <= budget_ms
            and measured.get(t.user_attrs["arch"], 0.0) <= budget_ms]


MEASURE_SLACK = 1.25  # hand designs predicted up to this factor over the budget are measured too: the cpu
#                       predictions of whole networks miss by up to ~20% (docs/latency.md)


def measure_candidates(study: optuna.Study, space: Space, latency_fn, budget_ms: float, repeats: int,
                       progress: bool = False, derived: bool = False) -> tuple[dict[str, float], list]:
    """On a live device (`latency_fn.live`: this machine, e.g. device=cpu) with repeats > 0: the measured latency (ms)
    of every estimated trial predicted within the budget and of every hand design predicted within MEASURE_SLACK
    x the budget and of each width family at the multiplier that fills the budget (with `derived`, the simplified
    families' too: mnas.search.derive.fills), by arch string, all measured in one call (`latency_fn.measure`: each
    network alone and warm, as a user's benchmark times it). The budget is the user's contract with their own
    benchmark, so a trial the table under-predicts cannot be shipped over it. Returns ({arch string: ms}, the
    machine's speed against its table just before and after measuring: latency_fn.speed); ({}, []) on a predicted
    device."""
    if not repeats or not getattr(latency_fn, "live", False):
        return {}, []
    archs = [t.user_attrs["arch"] for t in estimated_in_budget(study, budget_ms)]
    archs += [a.to_string() for _, _, _, a in hand_designs(space.resolution, space.num_classes)
              if latency_fn(a) <= MEASURE_SLACK * budget_ms]
    found = [(family, w, arch, None) for family, (w, arch) in filled_archs(space, latency_fn, budget_ms).items()]
    if derived:
        found += [(family, w, arch, transform) for family, _, w, arch, transform in fills(space, latency_fn, budget_ms)]
    archs += [arch.to_string() for _, _, arch, _ in found]
    archs = list(dict.fromkeys(archs))
    if not archs:
        return {}, []

    def measure() -> dict[str, float]:
        ms = latency_fn.measure([ArchConfig.from_string(a) for a in archs], repeats, progress)
        out = {a: float(m) for a, m in zip(archs, ms)}
        one = lambda a: latency_fn.measure(a, repeats)  # noqa: E731
        # predicted to fill the budget, measured over it: each width stepped down by measurement
        out.update(measured_fills(found, budget_ms, out, one, space.resolution, space.num_classes))
        return out
    return speed_around(latency_fn.speed, measure)


def best_trial(trials: list):
    """The most accurate of `trials` (estimated_in_budget's), the faster on a tie; None if there is none."""
    return max(trials, key=lambda t: (t.user_attrs["accuracy"], -t.user_attrs["latency_ms"]), default=None)


def tied_with(leader, trials, z: float) -> list[dict]:
    """The trials whose estimate is below the leader's by at most z standard errors of the paired difference on
    the same validation images (the leader included), each as {trial, diff, se} in points; trials without
    per-image results are left out."""
    a = leader.user_attrs
    if "correct" not in a:
        return []
    base, out = unpack(a["correct"], a["correct_n"]), []
    for t in trials:
        b = t.user_attrs
        if "correct" not in b or b.get("correct_n") != a["correct_n"]:
            continue
        d = base - unpack(b["correct"], b["correct_n"])
        diff, se = d.mean(), d.std(ddof=1) / math.sqrt(len(d)) if len(d) > 1 else 0.0
        if diff <= z * se:
            out.append({"trial": t, "diff": 100 * diff, "se": 100 * se})
    return out


def final_choice(study: optuna.Study, budget_ms: float, z: float, measured: dict | None = None):
    """(the trial to ship, the leader, the tie as tied_with's rows). The leader is the best estimate within the
    budget. Where the estimator keeps per-image results, the trials it cannot tell from the leader (tied_with,
    z > 0) are a tie, and the tied trial with the most MACs at the deployment shape wins it: on the proxy, accuracy
    rises with MACs (Kendall tau 0.69 over the space's latency range, 0.36 at equal latency; README), while the
    1-epoch supernet's estimates of equal-latency archs agree with their stand-alone order no better (tau 0.29).
    `measured` (measure_candidates): trials measured over the budget are not candidates."""
    ok = estimated_in_budget(study, budget_ms, measured)
    leader = best_trial(ok)
    if leader is None or not z:
        return leader, leader, []
    tied = tied_with(leader, ok, z)
    if len(tied) < 2:
        return leader, leader, tied
    return max(tied, key=lambda r: (r["trial"].user_attrs["macs"], -r["diff"]))["trial"], leader, tied


def check_budget(space: Space, latency_fn, s: SearchSettings) -> float:
    """The fastest arch's latency; a hard budget below it is a UserError that says it."""
    fastest = float(latency_fn(space.extreme(largest=False)))
    if s.objective == "constraint" and s.budget_ms < fastest:
        raise UserError(f"budget {s.budget_ms:g} ms is below the fastest arch of space {space.name} "
                        f"({fastest:.2f} ms predicted): raise the budget or use a smaller space")
    return fastest


def run_search(space: Space, latency_fn, estimate_fn, settings: SearchSettings, out_dir: Path,
               storage: str | None = None, resume: bool = False, progress: bool = True,
               meta: dict | None = None, correct_fn=None, score_fn=None) -> dict:
    """Run (or continue) the study; write trials.csv, pareto.png, best.json into out_dir; return best.json's dict.
    correct_fn(arch) -> per-image results of the estimate (Estimator.correct), kept with each trial for the final
    choice (final_choice); None: the best estimate is the choice. score_fn(arch, start) (Estimator.score_slimming)
    scores the hand designs between the space's widths (ship.hand_rivals)."""
    s = settings
    fastest = check_budget(space, latency_fn, s)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    storage = storage or f"sqlite:///{out_dir / 'study.db'}"
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    study = open_study(storage, s)
    if resume and (n := recover_interrupted(study)):
        print(f"resuming: {n} interrupted trial(s) queued again")
    baselines = enqueue_baselines(study, space)
    if s.derived:
        enqueue_derived(study, space, latency_fn, s.budget_ms)
    done = lambda: len(study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)))  # noqa: E731
    remaining = max(0, s.n_trials - done()) if s.n_trials else None
    if remaining != 0:
        callbacks = [optuna.study.MaxTrialsCallback(s.n_trials)] if s.n_trials else []
        study.optimize(make_objective(space, latency_fn, estimate_fn, s, correct_fn), n_trials=remaining,
                       timeout=s.timeout, callbacks=callbacks, show_progress_bar=progress, gc_after_trial=True)
    return write_results(study, space, s, out_dir, fastest, baselines, meta or {}, latency_fn, score_fn)


def write_results(study, space, s: SearchSettings, out_dir: Path, fastest: float, baselines, meta,
                  latency_fn, score_fn=None) -> dict:
    trials = report.trials_frame(study)
    measured, speed = measure_candidates(study, space, latency_fn, s.budget_ms, s.measure_repeats, derived=s.derived)
    trials["measured_ms"] = trials["arch"].map(measured)
    trials.to_csv(out_dir / "trials.csv", index=False)
    best, leader, tie = final_choice(study, s.budget_ms, s.tie_z, measured)
    result = {"arch": None, "budget_ms": s.budget_ms, "fastest_ms": fastest, "n_complete": int(
        (trials["state"] == "COMPLETE").sum()) if len(trials) else 0, **meta}
    if measured:
        over = trials[trials["measured_ms"] > s.budget_ms].drop_duplicates("arch")
        over = over[over["baseline"].isna()]
        result["measured"] = {"how": latency_fn.how_measured(s.measure_repeats), "networks": len(measured),
                              "speed": [round(f, 3) for f in speed if f is not None],
                              "over_budget": [{"trial": int(r.number), "latency_ms": float(r.latency_ms),
                                               "measured_ms": float(r.measured_ms)} for r in over.itertuples()]}
    if best is not None:
        a = best.user_attrs
        result.update(arch=a["arch"], latency_ms=a["latency_ms"], measured_ms=measured.get(a["arch"]),
                      macs=a["macs"], params=a["params"],
                      accuracy=a["accuracy"], trial=best.number, baseline=a.get("baseline"),
                      leader_trial=leader.number,
                      tie=[{"trial": r["trial"].number, "baseline": r["trial"].user_attrs.get("baseline"),
                            "latency_ms": r["trial"].user_attrs["latency_ms"], "macs": r["trial"].user_attrs["macs"],
                            "accuracy": r["trial"].user_attrs["accuracy"], "diff": r["diff"], "se": r["se"]}
                           for r in tie])
        arch = ArchConfig.from_string(a["arch"])
        result["arch_json"] = arch.to_dict()
    device = meta.get("device", "?")
    rivals = hand_rivals(space, latency_fn, s.budget_ms, trials, measured, score_fn)
    result.update(hand_designs=rivals, recommendation=recommend(result, rivals, device, out_dir, s.ship_margin),
                  derived_fills=fill_rows(space, latency_fn, s.budget_ms, measured, score_fn) if s.derived else [])
    (out_dir / "best.json").write_text(json.dumps(result, indent=2))
    report.pareto_plot(trials, s.budget_ms, out_dir / "pareto.png",
                       title=f"search {space.name}: estimated accuracy (proxy) vs predicted latency "
                             f"({meta.get('device', '?')}, 224x224)")
    print(report.summary_table(trials, s.budget_ms, best.number if best else None))
    if measured:
        print(measured_text(result, s.budget_ms))
    if best is None:
        print(f"no completed trial fits {s.budget_ms:g} ms yet")
    elif line := tie_text(result, s.tie_z):
        print(line)
    if result["derived_fills"]:
        print(fills_text(result["derived_fills"], s.budget_ms))
    print(recommendation_text(result["recommendation"], rivals, s.budget_ms, space.name, device))
    return result
