"""Trials derived from the hand designs (mnas.search.derive): simplified, stepped down to the budget, enqueued."""
import pandas as pd
import pytest

from mnas.latency import predict
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
    off = tmp_path / "off"
    run_search(space, pixel, estimate, SearchSettings(budget_ms=15.0, sampler="random", n_trials=4,
                                                      measure_repeats=0, derived=False), off, progress=False)
    assert pd.read_csv(off / "trials.csv")["derived"].isna().all()
