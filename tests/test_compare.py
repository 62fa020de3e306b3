"""mnas.compare: outputs and columns, the training cache, the win rule, the V2 curve, acceptance checks, bad input."""
import json
import math
import os
import subprocess
import sys

import pandas as pd
import pytest
import yaml

import mnas.compare.run as compare
from mnas.compare.__main__ import main as compare_main
from mnas.compare.report import COLUMNS, check_best_in_budget, check_speedup, latency_at_accuracy, p_value, wins
from mnas.compare.run import Recipe, find_pruned, run_compare, scaled_proxy
from mnas.errors import UserError
from mnas.latency import Device
from mnas.nn.models import get_model

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RECIPE = Recipe(data="digits", val_size=0.05, test_images=50, max_steps=2, batch_size=16, bn_recalibration=False)
VARIANTS = {"v2": [0.35, 0.5], "v2_res": [48]}  # baselines at 64x64 keep latency predictions cheap
FOUND = get_model("mobilenet_v3_small", 0.5, 64)
PRUNED = get_model("mobilenet_v3_small", 0.35, 64)


pytestmark = pytest.mark.usefixtures("one_thread")


def search_run(path, arch=FOUND.to_string(), budget=8.0):
    path.mkdir(parents=True)
    (path / "best.json").write_text(json.dumps({"arch": arch, "budget_ms": budget}))
    return path


def prune_run(path, search):
    path.mkdir(parents=True)
    (path / "config.yaml").write_text(yaml.safe_dump({"search": str(search)}))
    (path / "result.json").write_text(json.dumps({"final": {"arch": PRUNED.to_string()}}))
    return path


def test_outputs_and_cache(tmp_path, monkeypatch):
    trainings = []
    real_train = compare.train_from_scratch
    monkeypatch.setattr(compare, "train_from_scratch", lambda *a, **k: trainings.append(1) or real_train(*a, **k))
    run, pruned = search_run(tmp_path / "search"), prune_run(tmp_path / "prune", tmp_path / "search")
    kw = dict(device="pixel", recipe=RECIPE, variants=VARIANTS, seeds=2, budget_ms=8.0, run=run, pruned=pruned,
              resolution=64, cache_dir=tmp_path / "cache", progress=False,
              measure_fn=lambda archs: [1.0 + i for i in range(len(archs))])
    first = run_compare(out_dir=tmp_path / "out1", speed_fn=lambda: 1.02, **kw)
    assert first["trained"] == len(trainings) == 5 * 2 and len(list((tmp_path / "cache").glob("*.json"))) == 10
    slowing = iter([0.8, 1.0])  # the machine 25% slower than its table when the measuring starts
    second = run_compare(out_dir=tmp_path / "out2", speed_fn=lambda: next(slowing), **kw)
    assert second["trained"] == 0 and len(trainings) == 10  # everything came from the cache
    for out in (tmp_path / "out1", tmp_path / "out2"):
        assert {p.name for p in out.iterdir()} == {"comparison.csv", "pareto.png", "report.md"}
        assert (out / "pareto.png").stat().st_size > 10_000
    t = pd.read_csv(tmp_path / "out2" / "comparison.csv")
    assert list(t.columns) == COLUMNS and len(t) == 5
    assert list(t.model) == ["MobileNetV2 0.35", "MobileNetV2 0.5", "MobileNetV2 1.0 r48", "found", "pruned"]
    assert list(t.proxy_resolution) == [32, 32, 24, 32, 32] and t.measured_ms.tolist() == [1.0, 2.0, 3.0, 4.0, 5.0]
    assert t.test_acc.between(0, 1).all() and (t.test_std >= 0).all() and (t.seeds == 2).all()
    assert t.test_acc.round(4).tolist() == pd.read_csv(tmp_path / "out1" / "comparison.csv").test_acc.round(4).tolist()
    assert [len(s.split(";")) for s in t.test_acc_per_seed] == [2] * 5
    assert len(second["checks"]) == 2 * 2 * 2  # (a), (b) x found, pruned x predicted, measured
    assert {c["result"] for c in second["checks"]} <= {"PASS", "FAIL", "n.a."}
    text = (tmp_path / "out2" / "report.md").read_text()
    for needle in ("proxy task `digits`", "64x64x3, 1000 classes", "`pixel`", "over 2 seeds", "Win rule",
                   "fewer than 3 seeds", "## Acceptance checks", "(b) >= 1.5x faster than V2", "0 trainings run now",
                   "before and after: 0.80x and 1.00x", "**Measured figures not steady**: this machine ran 25% slower"):
        assert needle in text, needle
    text = (tmp_path / "out1" / "report.md").read_text()
    assert "before and after: 1.02x and 1.02x" in text and "not steady" not in text  # within 10%: no warning


def test_recipe_change_misses_the_cache(tmp_path):
    arch = get_model("mobilenet_v2", 0.35, 64)
    keys = {compare.cache_key(arch, 32, r, s) for r in (RECIPE, Recipe(**{**RECIPE.__dict__, "lr": 0.2}))
            for s in (0, 1)}
    assert len(keys) == 4 and compare.cache_key(arch, 32, RECIPE, 0) != compare.cache_key(arch, 24, RECIPE, 0)


def test_win_rule():
    assert wins(0.80, 0.01, 0.78, 0.01)  # 2 points > sqrt(2) points
    assert not wins(0.80, 0.01, 0.79, 0.01) and not wins(0.78, 0.01, 0.80, 0.01)
    assert not wins(0.80, 0.0, 0.80, 0.0) and wins(0.8001, 0.0, 0.80, 0.0)


def test_a_win_by_the_rule_on_three_seeds_is_flagged_when_not_significant():
    # the cpu 1.5 ms record's seeds 0-2: the find's +0.61 over V3-Small 0.87 passed the rule (spread 0.34), p 0.08
    assert p_value(0.8092, 0.0007, 3, 0.8031, 0.0033, 3) == pytest.approx(0.079, abs=0.002)
    assert math.isnan(p_value(0.80, 0.01, 1, 0.70, 0.01, 3))  # one seed
    assert math.isnan(p_value(0.80, 0.0, 3, 0.70, 0.0, 3))  # no spread on either side
    t = frame([("MobileNetV3-Small 0.87", "v3_small", 1.38, 0.8031, 0.0033), ("found", "found", 1.27, 0.8092, 0.0007)])
    t["seeds"] = 3
    result, detail = check_best_in_budget(t, t.iloc[1], 1.5, "latency_ms")
    assert result == "PASS" and "(Welch p 0.08)" in detail
    assert "not significant at 0.05 against MobileNetV3-Small 0.87" in detail
    t.loc[1, "test_acc"] = 0.8200  # a lead of 1.69 points: significant, nothing flagged
    result, detail = check_best_in_budget(t, t.iloc[1], 1.5, "latency_ms")
    assert result == "PASS" and "not significant" not in detail and "(Welch p 0.0" in detail


def test_v2_curve_interpolation():
    assert latency_at_accuracy([10, 20, 30], [0.70, 0.80, 0.90], 0.85) == pytest.approx(25)
    assert latency_at_accuracy([30, 10, 20], [0.90, 0.70, 0.80], 0.70) == pytest.approx(10)
    # a slower but less accurate point is off the upper envelope: 0.80 lies between (10, 0.70) and (30, 0.90)
    assert latency_at_accuracy([10, 20, 30], [0.70, 0.65, 0.90], 0.80) == pytest.approx(20)
    assert latency_at_accuracy([10, 20], [0.70, 0.80], 0.69) is None
    assert latency_at_accuracy([10, 20], [0.70, 0.80], 0.81) is None


def frame(rows):
    return pd.DataFrame([dict(zip(["model", "family", "latency_ms", "test_acc", "test_std"], r)) for r in rows])


def test_acceptance_checks():
    t = frame([("MobileNetV1 0.25", "v1", 5.0, 0.70, 0.005), ("MobileNetV2 0.35", "v2", 8.0, 0.74, 0.005),
               ("MobileNetV2 1.0", "v2", 20.0, 0.84, 0.005), ("MobileNetV3-Small 1.0", "v3_small", 7.0, 0.90, 0.01),
               ("found", "found", 9.0, 0.79, 0.005), ("pruned", "pruned", 9.5, 0.745, 0.005)])
    found, pruned = t.iloc[4], t.iloc[5]
    result, detail = check_best_in_budget(t, found, 10.0, "latency_ms")  # V3-Small 1.0 fits and is not beaten
    assert result == "FAIL" and "not beaten: MobileNetV3-Small 1.0" in detail and "MobileNetV2 0.35" not in detail
    assert check_best_in_budget(t.drop(index=[3]), found, 10.0, "latency_ms")[0] == "PASS"  # beats V1 and V2
    result, detail = check_best_in_budget(t, pruned, 10.0, "latency_ms")  # 0.745 vs 0.74: within the spread
    assert result == "FAIL" and "MobileNetV2 0.35" in detail and "MobileNetV1" not in detail
    assert check_best_in_budget(t, found, 8.5, "latency_ms")[0] == "FAIL"  # found itself is over the budget
    assert check_best_in_budget(t, found, None, "latency_ms")[0] == "n.a."
    assert check_best_in_budget(t.drop(index=[0, 1, 3]), found, 10.0, "latency_ms")[0] == "n.a."  # none fits
    result, detail = check_speedup(t, found, "latency_ms")  # curve: 0.79 at 14 ms -> 14 / 9 = 1.56x
    assert result == "PASS" and "1.56x" in detail
    assert check_speedup(t, pruned, "latency_ms")[0] == "FAIL"  # 0.745 at 8.6 ms -> 0.91x
    slow = t.copy()
    slow.loc[4, "test_acc"] = 0.95
    result, detail = check_speedup(slow, slow.iloc[4], "latency_ms")
    assert result == "n.a." and "outside the V2 width curve" in detail and "above" in detail


def test_proxy_resolution_rule():
    assert [scaled_proxy(r, 224, 32) for r in (224, 192, 160, 128, 96)] == [32, 28, 24, 20, 12]
    assert scaled_proxy(48, 64, 32) == 24


def test_bad_runs_are_user_errors(tmp_path):
    kw = dict(device="pixel", recipe=RECIPE, variants={"v2": [0.35]}, seeds=2, resolution=64,
              cache_dir=tmp_path / "cache", progress=False)
    bad = tmp_path / "corrupt"
    bad.mkdir()
    (bad / "best.json").write_text("{not json")
    cases = [(tmp_path / "missing", "no best.json"), (bad, "corrupt"),
             (search_run(tmp_path / "null", arch=None), "no arch"), (search_run(tmp_path / "bad", "r64-xx"), "invalid")]
    for run, message in cases:
        with pytest.raises(UserError, match=message):
            run_compare(run=run, **kw)
    with pytest.raises(UserError, match="no result.json"):
        run_compare(run=search_run(tmp_path / "ok"), pruned=tmp_path / "ok", **kw)
    with pytest.raises(UserError, match="resolution=224"):
        run_compare(**{**kw, "resolution": 224}, run=tmp_path / "ok", pruned=None)
    with pytest.raises(UserError, match="unknown device"):
        run_compare(**{**kw, "device": "nope"})
    with pytest.raises(UserError, match="seeds"):
        run_compare(**{**kw, "seeds": 1})
    assert not (tmp_path / "cache").exists()  # all refused before any training


def test_pruned_auto_detect(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    run = search_run(tmp_path / "runs" / "search" / "pixel" / "1")
    other = search_run(tmp_path / "runs" / "search" / "pixel" / "2")
    prune_run(tmp_path / "runs" / "prune" / "pixel" / "20260101-000000", run)
    prune_run(tmp_path / "runs" / "prune" / "pixel" / "20260102-000000", other)
    assert find_pruned("auto", run, "pixel").name == "20260101-000000"
    assert find_pruned("auto", other, "pixel").name == "20260102-000000"
    assert find_pruned("auto", run, "cpu") is None and find_pruned("none", run, "pixel") is None
    inside = prune_run(run / "prune", run)  # the main command's pipeline prunes into <search run>/prune
    assert find_pruned("auto", run, "pixel") == inside and find_pruned("auto", run, "cpu") == inside


def test_jobs_train_in_workers_like_one_process(tmp_path):
    """jobs=2 (spawned 1-thread workers) fills the same cache entries with the same accuracies as jobs=1."""
    kw = dict(device="pixel", recipe=RECIPE, variants={"v2": [0.35]}, seeds=2, resolution=64, progress=False)
    one = run_compare(cache_dir=tmp_path / "c1", out_dir=tmp_path / "o1", **kw)
    two = run_compare(cache_dir=tmp_path / "c2", out_dir=tmp_path / "o2", jobs=2, **kw)
    assert one["trained"] == two["trained"] == 2
    names = [sorted(p.name for p in (tmp_path / c).glob("*.json")) for c in ("c1", "c2")]
    assert names[0] == names[1]
    cols = ["model", "test_acc_per_seed", "val_acc"]
    pd.testing.assert_frame_equal(one["table"][cols], two["table"][cols])
    with pytest.raises(UserError, match="jobs=0 is invalid"):
        run_compare(cache_dir=tmp_path / "c3", jobs=0, **kw)


def test_main_fills_the_recipe_and_takes_the_runs_budget(tmp_path):
    """The recipe's keys with the command's overrides, the search run's budget, and (filled=true, the default) the
    listed family also at the width multiplier that fills that budget: the strongest rival a user makes by hand."""
    from hydra import compose, initialize_config_dir

    from mnas.compare.__main__ import with_filled
    from mnas.nn.models import get_model
    run = search_run(tmp_path / "search")
    args = [f"run={run}", "data=digits", "recipe=quick", "seeds=2", "families=[v2]",
            "variants={v1: [0.25], v2: [0.35]}", "max_steps=1", "batch_size=16", "test_images=20", "val_size=0.05",
            "bn_recalibration=false", "resolution=64", "pruned=none", f"cache_dir={tmp_path / 'cache'}"]
    with initialize_config_dir(config_dir=os.path.join(ROOT, "conf"), version_base=None):
        cfg = compose("compare", args + [f"out_dir={tmp_path / 'out'}"])
        only = compose("compare", args + ["filled=false", f"out_dir={tmp_path / 'only'}"])
    ms = Device("pixel")
    assert ms(get_model("mobilenet_v2", 1.11, 64)) <= 8 < ms(get_model("mobilenet_v2", 1.12, 64))  # the run's 8 ms
    result = compare_main(cfg)
    assert list(result["table"].model) == ["MobileNetV2 0.35", "MobileNetV2 1.11", "found"] and result["trained"] == 6
    assert list(compare_main(only)["table"].model) == ["MobileNetV2 0.35", "found"]  # the listed variants only
    assert with_filled({"v2": [0.35, 1.11]}, 8.0, ms, 64) == ({"v2": [0.35, 1.11]}, {})  # listed already
    assert with_filled({"v2": [0.35]}, None, ms, 64) == ({"v2": [0.35]}, {})  # no budget, nothing fills it
    assert with_filled({"v2_res": [96]}, 8.0, ms, 64)[1] == {}  # a resolution family has no width to fill
    saved = yaml.safe_load((tmp_path / "out" / "config.yaml").read_text())
    assert saved["train_subset"] == 2000 and saved["epochs"] == 1 and saved["val_size"] == 0.05  # quick's, then ours
    assert saved["data"]["name"] == "digits"
    text = (tmp_path / "out" / "report.md").read_text()
    recipe = "Recipe** `quick (max_steps=1, batch_size=16, val_size=0.05, test_images=20, bn_recalibration=False)`"
    assert "**Budget** 8 ms" in text and recipe in text and "20 test images" in text  # the overrides are named


def cli(*args, cwd):
    env = dict(os.environ, PYTHONPATH=ROOT)
    return subprocess.run([sys.executable, "-m", "mnas.compare", *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=120)


def test_cli_bad_input(tmp_path):
    for args, message in ((["budget=abc", "data=digits"], "budget 'abc' is invalid"),
                          ([f"run={tmp_path}", "budget=15ms"], "is not a search run directory")):
        p = cli(*args, cwd=tmp_path)
        assert p.returncode == 2 and p.stderr.count("\n") == 1 and message in p.stderr, p.stderr


def test_train_table_is_the_comparisons_table_from_its_cache(tmp_path):
    """train_table (what the records under runs/results/ call): rows without a proxy resolution get the recipe's,
    the trainings land in (and come back from) mnas.compare's cache, and the table is mnas.compare's."""
    from mnas.compare.run import table, train_all, train_table
    rows = [dict(model="MobileNetV2 0.35", arch=get_model("mobilenet_v2", 0.35, 64, 10))]
    t = train_table(rows, RECIPE, 2, "pixel", cache_dir=tmp_path)
    assert len(list(tmp_path.glob("*.json"))) == 2 and list(t.proxy_resolution) == [RECIPE.proxy_resolution]
    res, trained = train_all([dict(rows[0], proxy_resolution=32)], RECIPE, None, 2, tmp_path, progress=False)
    assert trained == 0  # the same cache entries
    pd.testing.assert_frame_equal(t, table([dict(rows[0], proxy_resolution=32)], res, 2, "pixel"))
    assert "proxy_resolution" not in rows[0]  # the caller's rows are left as they were
