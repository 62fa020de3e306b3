"""Search: budget parsing, a tiny study on digits, resume, shared storage, outputs."""
import json

import optuna
import pandas as pd
import pytest

from mnas.cli import parse_ms
from mnas.data import load
from mnas.errors import UserError
from mnas.nn.stats import count
from mnas.search.estimators import TrainEstimator
from mnas.search.study import SearchSettings, open_study, run_search


def mac_latency(arch):
    """A stand-in latency model for tests: 1 ms per MMAC at 64x64 (predict() is tested in test_latency)."""
    return count(arch).macs / 1e6


@pytest.fixture(scope="module")
def space(tiny_space):
    return tiny_space


@pytest.fixture(scope="module")
def estimator():
    return TrainEstimator(load("digits", val_size=0.2), max_steps=8, batch_size=64, resolution=32)


@pytest.mark.parametrize("text,ms", [("15ms", 15), ("15 ms", 15), ("0.015s", 15), ("15000us", 15), ("2.5", 2.5)])
def test_parse_budget(text, ms):
    assert parse_ms(text) == pytest.approx(ms)


@pytest.mark.parametrize("bad", ["-5ms", "0", "0ms", "abc", "15 parsecs", "1e9ms", "", "15msms", "nan"])
def test_bad_budget(bad):
    with pytest.raises(UserError, match="budget .* is invalid"):
        parse_ms(bad)


@pytest.mark.parametrize("sampler", ["tpe", "random", "nsga2"])
def test_tiny_search_writes_results_within_budget(tmp_path, space, estimator, sampler):
    lats = sorted(mac_latency(space.random_arch(__import__("random").Random(i))) for i in range(40))
    budget = lats[len(lats) // 2]
    s = SearchSettings(budget_ms=budget, sampler=sampler, n_trials=6, n_startup_trials=3, population_size=4)
    best = run_search(space, mac_latency, estimator, s, tmp_path, progress=False)
    trials = pd.read_csv(tmp_path / "trials.csv")
    assert (trials["state"] == "COMPLETE").sum() == 6
    assert best["latency_ms"] <= budget and 0 < best["accuracy"] <= 1
    feasible = trials[(trials["latency_ms"] <= budget)]
    assert best["accuracy"] == feasible["accuracy"].max()
    assert (trials.loc[trials["latency_ms"] > budget, "estimated"] == False).all()  # noqa: E712
    assert (tmp_path / "pareto.png").stat().st_size > 1000
    saved = json.loads((tmp_path / "best.json").read_text())
    assert saved["arch"] == best["arch"] and saved["recommendation"]["ship"] in ("found", *saved["recommendation"][
        "unscored"], *(r["model"] for r in saved["hand_designs"]))


def test_band_estimates_only_searched_archs_near_the_budget(tmp_path, space, estimator):
    lats = sorted(mac_latency(space.random_arch(__import__("random").Random(i))) for i in range(40))
    budget = lats[-5]
    s = SearchSettings(budget_ms=budget, sampler="random", n_trials=8, band=0.6)
    best = run_search(space, mac_latency, estimator, s, tmp_path, progress=False)
    trials = pd.read_csv(tmp_path / "trials.csv")
    inside = trials["latency_ms"].between(0.6 * budget, budget)
    assert (trials["estimated"] == inside).all()  # no hand design is a point of the tiny space
    assert (~inside).any() and inside.any()  # the random draws fell on both sides of the band
    assert 0.6 * budget <= best["latency_ms"] <= budget
    with pytest.raises(UserError, match=r"band=1.2 is invalid: use a fraction of the budget in \[0, 1\)"):
        SearchSettings(budget_ms=budget, band=1.2)


def test_soft_objective_estimates_everything(tmp_path, space, estimator):
    s = SearchSettings(budget_ms=0.5, objective="soft", sampler="random", n_trials=3)
    run_search(space, mac_latency, estimator, s, tmp_path, progress=False)
    trials = pd.read_csv(tmp_path / "trials.csv")
    assert trials["estimated"].all()


def test_budget_below_fastest_says_fastest(tmp_path, space, estimator):
    with pytest.raises(UserError, match=r"below the fastest arch .*\(\d+\.\d+ ms"):
        run_search(space, mac_latency, estimator, SearchSettings(budget_ms=0.01), tmp_path, progress=False)


class _Here:
    """A device measured on this machine, for the tests: predicts mac_latency; its measurement runs `slow` times
    slower for the archs in `slow_archs` and 5% faster for the rest."""
    live = True

    def __init__(self, slow_archs=(), slow=2.0):
        self.slow_archs, self.slow, self.measured = set(slow_archs), slow, []

    def __call__(self, arch):
        return mac_latency(arch)

    def measure(self, archs, repeats=100, progress=False):
        self.measured += [a.to_string() for a in archs]
        return [mac_latency(a) * (self.slow if a.to_string() in self.slow_archs else 0.95) for a in archs]

    def how_measured(self, repeats=100):
        return f"test clock, fastest of {repeats}"

    def speed(self):  # the machine 30% slower than its table before measuring, level after
        self.speeds = getattr(self, "speeds", 0) + 1
        return 0.7 if self.speeds == 1 else 1.0


def test_on_a_live_device_a_trial_measured_over_the_budget_is_not_chosen(tmp_path, space, estimator, capsys):
    """The budget is checked against measured latency too: the best estimate, measured over the budget, is left
    out of the final choice and named; every in-budget trial and the hand designs near the budget are measured
    once, side by side; trials.csv and best.json carry the measurements; measure_repeats=0 measures nothing."""
    from mnas.search.study import write_results
    lats = sorted(mac_latency(space.random_arch(__import__("random").Random(i))) for i in range(40))
    budget = lats[3 * len(lats) // 4]
    s = SearchSettings(budget_ms=budget, sampler="random", n_trials=8, tie_z=0)
    first = run_search(space, mac_latency, estimator, s, tmp_path / "a", progress=False)
    assert first["measured_ms"] is None and "measured" not in first  # a predicted device: nothing measured
    study = open_study(f"sqlite:///{tmp_path / 'a' / 'study.db'}", s)
    in_budget = {t.user_attrs["arch"] for t in study.trials
                 if t.user_attrs.get("estimated") and t.user_attrs["latency_ms"] <= budget}
    assert first["arch"] in in_budget and len(in_budget) >= 2
    here = _Here(slow_archs=[first["arch"]])
    best = write_results(study, space, s, tmp_path / "a", 0.0, [], {"device": "here"}, here)
    assert best["arch"] != first["arch"] and best["arch"] in in_budget
    assert best["measured_ms"] == pytest.approx(0.95 * best["latency_ms"]) and best["measured_ms"] <= budget
    assert [r["measured_ms"] for r in best["measured"]["over_budget"]] == [pytest.approx(2 * first["latency_ms"])]
    assert in_budget <= set(here.measured) and len(here.measured) == len(set(here.measured))
    trials = pd.read_csv(tmp_path / "a" / "trials.csv")
    fit = trials[trials["arch"].isin(in_budget)]
    assert fit["measured_ms"].notna().all() and trials.loc[trials["latency_ms"] > budget, "measured_ms"].isna().all()
    out = capsys.readouterr().out
    assert f"trial {best['measured']['over_budget'][0]['trial']} (" in out and "ran over it and are left out" in out
    assert "meas ms" in out and "test clock, fastest of 30" in out
    assert best["measured"]["speed"] == [0.7, 1.0] and "warning: this machine ran 43% slower than when its" in out
    assert all(r["measured_ms"] is not None and r["measured_ms"] <= budget for r in best["hand_designs"])
    none = _Here(slow_archs=[first["arch"]])
    again = write_results(study, space, SearchSettings(budget_ms=budget, sampler="random", n_trials=8, tie_z=0,
                                                       measure_repeats=0), tmp_path / "a", 0.0, [], {}, none)
    assert again["arch"] == first["arch"] and none.measured == []


def test_resume_keeps_finished_trials(tmp_path, space, estimator):
    s = SearchSettings(budget_ms=100, sampler="random", n_trials=3)
    run_search(space, mac_latency, estimator, s, tmp_path, progress=False)
    first = pd.read_csv(tmp_path / "trials.csv")
    # simulate a killed worker: a trial left RUNNING in the storage
    study = open_study(f"sqlite:///{tmp_path / 'study.db'}", s)
    t = study.ask()
    space.sample(t.suggest_categorical)
    s.n_trials = 5
    run_search(space, mac_latency, estimator, s, tmp_path, resume=True, progress=False)
    after = pd.read_csv(tmp_path / "trials.csv")
    assert (after["state"] == "COMPLETE").sum() == 5
    assert set(first["arch"]) <= set(after.loc[after["state"] == "COMPLETE", "arch"])
    assert (after["state"] == "RUNNING").sum() == 0
    failed = after[after["state"] == "FAIL"]
    assert len(failed) == 1  # the interrupted trial, whose parameters were queued again


def test_two_workers_share_one_journal(tmp_path, space, estimator):
    storage = f"journal:{tmp_path / 'study.log'}"
    s = SearchSettings(budget_ms=100, sampler="random", n_trials=4)
    for w in range(2):  # two workers, one after the other here; test_reliability runs them concurrently
        run_search(space, mac_latency, estimator, s, tmp_path / f"w{w}", storage=storage, progress=False)
    study = optuna.load_study(study_name="mnas-search", storage=optuna.storages.journal.JournalStorage(
        optuna.storages.journal.JournalFileBackend(str(tmp_path / "study.log"))))
    assert len([t for t in study.trials if t.state.name == "COMPLETE"]) == 4


def test_pipeline_finetunes_prunes_and_exports_the_best_arch(tmp_path, space, estimator):
    from mnas.nn.arch import ArchConfig
    from mnas.pipeline import PipelineSettings, run_pipeline
    s = SearchSettings(budget_ms=100, sampler="random", n_trials=3)
    best = run_search(space, mac_latency, estimator, s, tmp_path, progress=False)
    p = PipelineSettings(finetune_steps=4, prune="0.9x", export="json,onnx", batch_size=32)
    run_pipeline(tmp_path, estimator, estimator.data, mac_latency, "test", p, progress=False)
    assert (tmp_path / "model.pt").exists()
    result = json.loads((tmp_path / "prune" / "result.json").read_text())
    assert result["final"]["latency_ms"] <= 0.9 * best["latency_ms"] + 1e-9
    manifest = json.loads((tmp_path / "export" / "export.json").read_text())
    pruned = ArchConfig.from_json((tmp_path / "prune" / "arch.json").read_text())
    assert manifest["ok"] and ArchConfig.from_string(manifest["arch"]).blocks == pruned.blocks


def test_hand_designs_in_budget_and_the_recommendation(tmp_path):
    """At pixel 15 ms the in-budget hand designs are named; MobileNetV3-Small 0.5 and 0.75 are points of v3_small
    (scored when a trial ran them), the others are not, so the find is recommended over the scored ones by its
    margin and only as unverified against the rest, with a compare command listing exactly them; a find scored
    below MobileNetV3-Small 0.75 loses the recommendation to it."""
    import yaml

    from mnas.latency import predict
    from mnas.nn.models import get_model
    from mnas.nn.space import load_space
    from mnas.search.ship import hand_rivals, recommend, recommendation_text

    space, pixel = load_space("v3_small"), lambda a: predict(a, "pixel")  # noqa: E731
    v3s = get_model("mobilenet_v3_small", 0.75).to_string()
    trials = pd.DataFrame([dict(state="COMPLETE", estimated=True, arch=v3s, accuracy=0.70),
                           dict(state="COMPLETE", estimated=True, arch="found-arch", accuracy=0.72)])
    rivals = hand_rivals(space, pixel, 15.0, trials)
    names = [r["model"] for r in rivals]
    assert {"MobileNetV1 0.25", "MobileNetV3-Small 0.75", "MobileNetV2 1.0 @96px"} <= set(names)
    assert "MobileNetV3-Small 1.0" not in names and all(r["latency_ms"] <= 15 for r in rivals)
    assert {r["model"] for r in rivals if r["in_space"]} == {"MobileNetV3-Small 0.5", "MobileNetV3-Small 0.75"}
    assert [r["model"] for r in rivals if r["accuracy"] is not None] == ["MobileNetV3-Small 0.75"]
    found = dict(arch="found-arch", accuracy=0.72)
    rec = recommend(found, rivals, "pixel", tmp_path)
    assert rec["ship"] == "found" and rec["against"] == "MobileNetV3-Small 0.75"
    assert rec["margin_points"] == pytest.approx(2.0)
    assert set(rec["unscored"]) == set(names) - {"MobileNetV3-Small 0.75"}
    families = yaml.safe_load(rec["check"].split("'families=")[1].split("'")[0])
    variants = yaml.safe_load(rec["check"].split("'variants=")[1].rstrip("'"))
    assert set(families) == set(variants) and sum(map(len, variants.values())) == len(rivals)
    assert 0.75 in variants["v3_small"] and 96 in variants["v2_res"]
    filled = {r["model"]: r for r in rivals if r["filled"]}  # each width family with a variant in budget, widened
    assert set(filled) == {"MobileNetV3-Small 0.88 (width filling the budget)", "MobileNetV1 0.29 (width filling "
                           "the budget)"} and all(not r["in_space"] and r["latency_ms"] <= 15 for r in filled.values())
    assert 0.88 in variants["v3_small"] and 0.29 in variants["v1"] and set(filled) <= set(rec["unscored"])
    text = recommendation_text(rec, rivals, 15.0, "v3_small", "pixel")
    assert "+2.00 points over MobileNetV3-Small 0.75" in text and "not shown to beat them" in text
    worse = recommend(dict(arch="found-arch", accuracy=0.69), rivals, "pixel", tmp_path)
    assert worse["ship"] == "MobileNetV3-Small 0.75" and worse["margin_points"] == pytest.approx(1.0)
    assert "a hand design" in recommendation_text(worse, rivals, 15.0, "v3_small", "pixel")
    close = recommend(found, rivals, "pixel", tmp_path, margin=2.5)  # a 2-point lead inside a 2.5-point noise
    assert close["ship"] == "MobileNetV3-Small 0.75" and close["within_noise"] and close["against"] == "found"
    assert close["margin_points"] == pytest.approx(-2.0)
    text = recommendation_text(close, rivals, 15.0, "v3_small", "pixel")
    assert "leads it by +2.00 points" in text and "inside the estimator's own noise (ship_margin 2.5" in text
    assert text.count("python -m mnas.compare") == 1  # once, in the unscored hand designs' line
    clear = recommend(found, rivals, "pixel", tmp_path, margin=1.5)
    assert clear["ship"] == "found" and not clear["within_noise"]
    starts = []
    score = lambda arch, start: starts.append((arch.to_string(), start.to_string())) or 0.73  # noqa: E731
    rivals = hand_rivals(space, pixel, 15.0, trials, score_fn=score)  # the search's estimator scores the filled widths
    v3 = {r["model"]: r for r in rivals}["MobileNetV3-Small 0.88 (width filling the budget)"]
    assert v3["accuracy"] == 0.73 and v3["scored_as"] == "a slimming of MobileNetV3-Small 1.0"
    assert starts == [(v3["arch"], get_model("mobilenet_v3_small", 1.0).to_string())]  # V1 is not in the space
    assert v3["arch"] == get_model("mobilenet_v3_small", 0.88).to_string()
    rec = recommend(found, rivals, "pixel", tmp_path, margin=2.6)
    assert rec["ship"] == v3["model"] and rec["margin_points"] == pytest.approx(1.0) and rec["against"] == "found"
    text = recommendation_text(rec, rivals, 15.0, "v3_small", "pixel")
    assert "(73.00%, as a slimming of MobileNetV3-Small 1.0)" in text and v3["model"] not in rec["unscored"]
    assert rec["train"] == ("python -m mnas.train model=mobilenet_v3_small width=0.88 proxy=false resolution=224 "
                            "data=imagefolder data.root=<your images>") and rec["train"] in text
    assert worse["train"].startswith("python -m mnas.train model=mobilenet_v3_small width=0.75 ")
    assert rec["train"].replace("0.88", "0.75") == worse["train"] and clear["train"] is None  # the find: its run dir


def test_filled_width_is_the_widest_multiplier_within_the_budget():
    """Bisection over widths 0.25-1.5 in steps of 0.01 on a latency that grows with the stem's channels."""
    from mnas.search.ship import filled_width
    def ms(arch):  # V3-Small's stem: 8 channels below width 0.56, 16 up to 1.11, then 24
        return float(arch.stem.out)
    assert filled_width("v3_small", ms, 16.0, 224, 1000) == 1.11 and filled_width("v3_small", ms, 8, 224, 1000) == 0.55
    assert filled_width("v3_small", ms, 7.0, 224, 1000) is None and filled_width("v3_small", ms, 99, 224, 1000) == 1.5


def _trial(macs, latency, correct, estimated=True, baseline=None):
    """A finished trial as the objective leaves it: per-image results packed, accuracy their mean."""
    from mnas.search.study import pack
    attrs = dict(arch=f"arch-{macs}", latency_ms=latency, macs=macs, params=1, estimated=estimated,
                 accuracy=sum(correct) / len(correct) if estimated else 0.0)
    if correct is not None and estimated:
        attrs.update(correct=pack(correct), correct_n=len(correct))
    if baseline:
        attrs["baseline"] = baseline
    return optuna.trial.create_trial(value=attrs["accuracy"], user_attrs=attrs)


def test_final_choice_breaks_a_tie_by_macs_and_only_a_tie():
    """Trials the estimator cannot tell from the best (paired on the same images, within tie_z standard errors)
    are a tie won by the most MACs; a clearly worse trial, one over budget and one without per-image results are
    not in it; tie_z=0 keeps the best estimate."""
    from mnas.search.study import final_choice, pack, unpack
    leader = [1] * 60 + [0] * 40
    near = [1] * 58 + [0] * 42          # 2 images fewer: diff 2 points, se 1.4 -> z 1.4
    far = [1] * 20 + [0] * 80           # 40 points below
    study = optuna.create_study(direction="maximize")
    for t in (_trial(10, 9.0, leader), _trial(30, 9.5, near), _trial(100, 9.9, far), _trial(200, 12.0, leader)):
        study.add_trial(t)
    no_vector = _trial(50, 8.0, near)
    del no_vector.user_attrs["correct"]
    study.add_trial(no_vector)
    chosen, leader, tie = final_choice(study, 10.0, 2.0)
    assert chosen.user_attrs["macs"] == 30 and leader.user_attrs["macs"] == 10
    assert sorted(r["trial"].user_attrs["macs"] for r in tie) == [10, 30]
    near_row = next(r for r in tie if r["trial"].user_attrs["macs"] == 30)
    assert near_row["diff"] == pytest.approx(2.0) and 1.0 < near_row["se"] < 2.0
    assert final_choice(study, 10.0, 0.0)[0].user_attrs["macs"] == 10
    assert final_choice(study, 10.0, 1.0)[0].user_attrs["macs"] == 10  # z 1.4 > 1: no longer a tie
    assert list(unpack(pack(near), 100)) == near


def test_search_keeps_per_image_results_and_reports_the_tie(tmp_path, space, estimator, capsys):
    """With a correct_fn every estimated trial carries its per-image results; identical results tie every
    in-budget trial, so the choice is the one with the most MACs, marked in the summary (even when its estimate
    is not among the top rows), and best.json says which trial led."""
    s = SearchSettings(budget_ms=1e9, sampler="random", n_trials=4)
    best = run_search(space, mac_latency, estimator, s, tmp_path, progress=False, correct_fn=lambda arch: [1, 0, 1])
    trials = pd.read_csv(tmp_path / "trials.csv")
    assert best["macs"] == trials["macs"].max() and len(best["tie"]) == 4
    out = capsys.readouterr().out
    assert f"*{best['trial']:>6} " in out and "final choice: 4 in-budget trials" in out
    assert best["leader_trial"] in trials["number"].tolist()
    study = optuna.load_study(study_name="mnas-search", storage=f"sqlite:///{tmp_path / 'study.db'}")
    assert all(t.user_attrs["correct_n"] == 3 for t in study.trials)
    for bad in (-1, "abc", float("nan")):
        with pytest.raises(UserError, match=f"tie_z={bad} is invalid"):
            run_search(space, mac_latency, estimator, SearchSettings(budget_ms=1e9, tie_z=bad), tmp_path,
                       progress=False)


def test_a_filled_width_that_measures_over_the_budget_steps_down():
    """On a device measured here the filled width is stepped down by 0.01 until it measures within the budget
    (measured_fill), and the summary's rival (hand_rivals) and mnas.compare's added width are that one. The
    "machine" here runs every network 5% slower than the pixel table predicts."""
    from mnas.compare.__main__ import with_filled
    from mnas.latency import predict
    from mnas.nn.models import variant
    from mnas.nn.space import load_space
    from mnas.search.ship import filled_width, hand_rivals, measured_fill

    pixel = lambda a: predict(a, "pixel")  # noqa: E731
    slow = lambda archs: [1.05 * pixel(a) for a in archs]  # noqa: E731
    net = lambda w: variant("v3_small", w)[2]  # noqa: E731
    w = filled_width("v3_small", pixel, 15.0, 224, 1000)
    fit, seen = measured_fill("v3_small", w, 15.0, slow, 224, 1000)
    assert fit < w and 1.05 * pixel(net(fit)) <= 15.0 < 1.05 * pixel(net(round(fit + 0.01, 2)))
    assert len(seen) == round(100 * (w - fit)) + 1 and seen[net(fit).to_string()] <= 15.0
    assert measured_fill("v3_small", w, 15.0, slow, 224, 1000, tries=1) == (None, {net(w).to_string(): 1.05 * pixel(
        net(w))})
    trials = pd.DataFrame(columns=["state", "estimated", "arch", "accuracy"])
    rows = {r["model"]: r for r in hand_rivals(load_space("v3_small"), pixel, 15.0, trials, measured=seen)}
    assert rows[f"MobileNetV3-Small {fit:g} (width filling the budget)"]["measured_ms"] <= 15.0
    assert with_filled({"v3_small": [0.75]}, 15.0, pixel, 224, slow)[1] == {"v3_small": fit}
    assert with_filled({"v3_small": [0.75]}, 15.0, pixel, 224)[1] == {"v3_small": w}
