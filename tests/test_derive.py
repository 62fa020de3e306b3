"""Trials derived from the hand designs (mnas.search.derive): simplified, stepped down to the budget, enqueued."""
import json

import pandas as pd
import pytest

from mnas.latency import predict
from mnas.nn.arch import ArchConfig
from mnas.nn.models import mobilenet_v3_small
from mnas.nn.space import load_space
from mnas.nn.stats import count
from mnas.search.derive import _choices, build, derived_trials, step_down
from mnas.search.study import SearchSettings, run_search, space_baselines


def pixel(arch):
    return predict(arch, "pixel")


@pytest.fixture(scope="module")
def space():
    return load_space("v3_small")


@pytest.fixture(scope="module")
def derived(space):
    return {label: build(space, p) for label, p in derived_trials(space, space_baselines(space), pixel, 15.0)}


def test_derived_trials_drop_the_priced_choice_and_fill_the_budget(space, derived):
    assert set(derived) == {"MobileNetV3-Small 1.0, no SE, fitted to the budget",
                            "MobileNetV3-Small 1.0, smallest kernels, fitted to the budget",
                            "MobileNetV3-Small 1.0, no SE, smallest kernels"}
    hand = {a.to_string() for a in space_baselines(space)}
    for label, arch in derived.items():
        assert space.params_for(arch) is not None and arch.to_string() not in hand
        assert 0.9 * 15 < pixel(arch) <= 15  # within the budget, and filling most of it
        assert all(not b.se for b in arch.blocks) == ("no SE" in label)
        assert all(b.kernel == 3 for b in arch.blocks) == ("kernels" in label)
    # V3-Small 1.0 without SE runs 15.6 ms; stepped down, it keeps every block and nearly all its MACs
    no_se = derived["MobileNetV3-Small 1.0, no SE, fitted to the budget"]
    full = mobilenet_v3_small(1.0)
    assert len(no_se.blocks) == len(full.blocks) and count(no_se).macs > 0.95 * count(full).macs


def test_step_down_takes_width_choices_only_and_gives_up_below_the_smallest(space):
    params = space.params_for(mobilenet_v3_small(1.0))
    choices = _choices(space)
    fitted, lat = step_down(space, params, choices, pixel, 12.0)
    assert lat <= 12.0 and lat == pixel(build(space, fitted))
    changed = {k for k in params if fitted[k] != params[k]}
    assert changed and all(k.endswith(("_out", "_expand")) for k in changed)  # never kernel, SE, act or depth
    assert all(fitted[k] < params[k] for k in changed)
    assert step_down(space, params, choices, pixel, 1.0) is None  # below what the widths alone can reach


def test_search_enqueues_them_and_the_second_stage_trains_them(tmp_path, space):
    from mnas.search.rerank import candidates
    estimate = lambda arch: count(arch).macs / 1e9  # noqa: E731  (a stand-in estimator: MACs)
    s = SearchSettings(budget_ms=15.0, sampler="random", n_trials=7, measure_repeats=0)
    run_search(space, pixel, estimate, s, tmp_path, progress=False)
    trials = pd.read_csv(tmp_path / "trials.csv")
    labels = set(trials["derived"].dropna())
    assert len(labels) == 3 and "MobileNetV3-Small 1.0, no SE, fitted to the budget" in labels
    assert trials.loc[trials["derived"].notna(), "estimated"].all()
    assert trials["baseline"].notna().sum() == 3  # V3-Small 0.5, 0.75, 1.0 as before
    rows = candidates(trials, dict(budget_ms=15.0, hand_designs=[], arch=None), space, k=1, proxy_resolution=32)
    searched = [r["model"] for r in rows if r["kind"] == "search"]
    assert len(searched) >= 3 and sum("(MobileNetV3-Small 1.0, no SE" in m for m in searched) == 2
    best = json.loads((tmp_path / "best.json").read_text())
    fills = best["derived_fills"]
    assert [r["model"] for r in fills] == ["MobileNetV3-Small 0.95, no SE (width filling the budget)",
                                           "MobileNetV3-Small 0.93, smallest kernels (width filling the budget)",
                                           "MobileNetV3-Small 1.04, no SE, smallest kernels (width filling the budget)"]
    rows = candidates(trials, best, space, k=1, proxy_resolution=32)
    filled = [r for r in rows if r["trial"] is None and r["kind"] == "search"]
    assert [r["model"] for r in filled] == [r["model"] for r in fills]  # trained by the second stage as finds
    assert all(r["arch"].to_string() == f["arch"] for r, f in zip(filled, fills))
    off = tmp_path / "off"
    run_search(space, pixel, estimate, SearchSettings(budget_ms=15.0, sampler="random", n_trials=4,
                                                      measure_repeats=0, derived=False), off, progress=False)
    assert pd.read_csv(off / "trials.csv")["derived"].isna().all()


def test_simplified_drops_se_and_large_kernels_only():
    from mnas.search.derive import simplified
    arch = mobilenet_v3_small(0.75)
    no_se, k3 = simplified(arch, ("se",)), simplified(arch, ("kernel",))
    assert any(b.se for b in arch.blocks) and not any(b.se for b in no_se.blocks)
    assert [b.kernel for b in no_se.blocks] == [b.kernel for b in arch.blocks]
    assert any(b.kernel == 5 for b in arch.blocks) and all(b.kernel == 3 for b in k3.blocks)
    assert [b.se for b in k3.blocks] == [b.se for b in arch.blocks]
    assert [b.out for b in no_se.blocks] == [b.out for b in arch.blocks] and no_se.head == arch.head


def test_fills_widen_each_simplified_family_to_the_budget_and_score_it_as_a_slimming(space):
    from mnas.search.derive import fill_rows, simplified
    calls = []

    def score(arch, start):
        calls.append((arch, start))
        return count(arch).macs / 1e9
    rows = {r["simplification"]: r for r in fill_rows(space, pixel, 15.0, score_fn=score)}
    assert set(rows) == {"no SE", "smallest kernels", "no SE, smallest kernels"}
    for name, r in rows.items():
        arch = ArchConfig.from_string(r["arch"])
        wider = simplified(mobilenet_v3_small(r["variant"] + 0.01), {"no SE": ("se",), "smallest kernels": (
            "kernel",), "no SE, smallest kernels": ("se", "kernel")}[name])
        assert pixel(arch) <= 15.0 < pixel(wider)  # the widest multiplier that fits
        assert space.params_for(arch) is None  # between the space's widths: not a trial
    no_se = rows["no SE"]
    assert no_se["variant"] == 0.95 and no_se["start"] == simplified(mobilenet_v3_small(1.0), ("se",)).to_string()
    assert no_se["accuracy"] == count(ArchConfig.from_string(no_se["arch"])).macs / 1e9
    assert "a slimming of MobileNetV3-Small 1.0, no SE" == no_se["scored_as"]
    start = ArchConfig.from_string(no_se["start"])
    assert space.params_for(start) is not None
    arch = ArchConfig.from_string(no_se["arch"])
    assert all(a.out <= b.out and a.exp <= b.exp for a, b in zip(arch.blocks, start.blocks))
    both = rows["no SE, smallest kernels"]  # wider than 1.0: no published variant of the space holds it
    assert both["variant"] > 1.0 and both["start"] is None and both["accuracy"] is None
    assert len(calls) == 2


def test_a_device_measured_here_steps_a_fill_down_until_it_measures_within(space):
    from mnas.search.derive import fills, measure_fills
    first = {f[3].to_string(): 1.1 * 15.0 for f in fills(space, pixel, 15.0)}  # every fill measured 10% over
    timed = []

    def measure(archs):
        timed.extend(archs)
        return [1.05 * pixel(a) for a in archs]  # the device runs 5% slower than predicted
    out = measure_fills(space, pixel, 15.0, first, measure)
    assert timed and all(ms == 1.05 * pixel(ArchConfig.from_string(a)) for a, ms in out.items())
    within = [a for a, ms in out.items() if ms <= 15.0]
    assert len(within) == 3  # one per simplification, each the first width down that measures within
    assert measure_fills(space, pixel, 15.0, {}, measure) == {}  # nothing measured over: nothing to step


def test_a_fill_that_wins_the_second_stage_becomes_best_json_find():
    from mnas.search.rerank import with_find
    fill = dict(model="MobileNetV3-Small 0.95, no SE (width filling the budget)",
                arch=mobilenet_v3_small(0.95).to_string(), latency_ms=14.8, measured_ms=None, macs=5e7, params=2e6,
                accuracy=0.66)
    trials = pd.DataFrame([dict(number=4, arch=mobilenet_v3_small(0.75).to_string(), latency_ms=13.0, macs=4e7,
                                params=1.5e6, accuracy=0.65, measured_ms=None)])
    best = dict(trial=4, arch=trials["arch"][0], derived_fills=[fill], tie=[dict(trial=4)])
    out = with_find(best, trials, pd.Series(dict(model=fill["model"], trial=float("nan"))))
    assert out["trial"] is None and out["derived"] == fill["model"] and out["arch"] == fill["arch"]
    assert out["estimate_choice"] == 4 and out["tie"] == [] and out["latency_ms"] == 14.8
    assert out["arch_json"]["blocks"][0] == mobilenet_v3_small(0.95).to_dict()["blocks"][0]
    assert with_find(best, trials, pd.Series(dict(model="trial 4", trial=4))) is best  # the choice stands
