"""rank_check benchmark machinery on a tiny space with digits: archs spread over latency, stand-alone runs in two
worker processes equal in-process runs, every finished cell is kept (resume), the summary and plot are written."""
import dataclasses
import json

import numpy as np
import pandas as pd
import pytest
import torch

from mnas.bench.picks import spread_archs
from mnas.bench.rank_check import Standalone, rank_check, variant
from mnas.data import load
from mnas.nn.stats import count


def macs(arch):
    return count(arch).macs / 1e6


def test_workers_resume_and_summary(tiny_space, tmp_path):
    archs = spread_archs(tiny_space, 4, macs, pool=60)
    assert len(set(archs)) == 4 and [macs(a) for a in archs] == sorted(macs(a) for a in archs)
    standalone = Standalone(dict(name="digits", val_size=0.2), 32, 8, dict(max_steps=3, batch_size=32))
    summary = rank_check(archs, macs, macs, standalone, [0, 1], tmp_path, jobs=2)
    df = pd.read_csv(tmp_path / "rank.csv")
    assert len(df) == 4 and df[["standalone_seed0", "standalone_seed1", "supernet_acc"]].notna().all().all()
    assert list(df["supernet_acc"]) == [macs(a) for a in archs]
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:  # a worker's run is the run this process would make
        assert standalone(archs[1], 1) == df.at[1, "standalone_seed1"]
    finally:
        torch.set_num_threads(threads)
    assert json.loads((tmp_path / "summary.json").read_text())["n"] == 4 == summary["n"]
    assert -1 <= summary["seed_to_seed_tau"] <= 1 and (tmp_path / "rank.png").stat().st_size > 1000
    lo, hi = summary["kendall_tau_90"]
    assert -1 <= lo <= summary["kendall_tau"] <= hi <= 1 and len(summary["macs_tau_90"]) == 2

    def never(arch, seed):
        raise AssertionError("a finished cell was run again")
    again = rank_check(archs, macs, macs, never, [0, 1], tmp_path, jobs=1)
    assert again["kendall_tau"] == pytest.approx(summary["kendall_tau"])
    assert load("digits", val_size=0.2).num_classes == 10


def test_proxy_check_reference_is_reused_and_extended(tiny_space, tmp_path):
    """A proxy_check run as the reference: its cells are not retrained, the cells it lacks are, fill_gaps adds
    archs inside the reference's latency range, and a reference made on other data is refused in one line."""
    import yaml

    from mnas.bench.picks import fill_gaps
    from mnas.bench.references import check_reference, load_reference
    from mnas.errors import UserError

    base = spread_archs(tiny_space, 3, macs, pool=60)
    archs = fill_gaps(tiny_space, base, 2, macs, pool=60)
    assert len(set(archs)) == 5 and set(base) <= set(archs)
    assert [macs(a) for a in archs] == sorted(macs(a) for a in archs)
    assert macs(archs[0]) == macs(base[0]) and macs(archs[-1]) == macs(base[-1])  # the gaps lie inside the range
    ref = tmp_path / "proxy_check"
    ref.mkdir()
    cfg = dict(data="digits", val_size=0.2, train_subset=None, resolution=32, max_stride=8, data_options={},
               seeds=2, epochs=1, max_steps=3, batch_size=32, lr=0.1, archs=[a.to_string() for a in base])
    (ref / "config.yaml").write_text(yaml.safe_dump(cfg))
    rows = [f"{a.to_string()},{s},{0.5 + 0.1 * i},1.0,3,96,10.0,{7.0 + s}" for i, a in enumerate(base) for s in (0, 1)]
    (ref / "runs.csv").write_text("arch,seed,val_acc,val_loss,steps,images,img_per_s,seconds\n"
                                  + "\n".join(rows[:-1]) + "\n")  # the largest arch lacks seed 1
    got, known = load_reference(ref)
    assert got["archs"] == cfg["archs"] and known[(base[0].to_string(), 1)] == (0.5, 8.0)
    check_reference(got, dict(name="digits", val_size=0.2, proxy_resolution=32), 8, 0)
    with pytest.raises(UserError, match="data .'digits' there, 'fashion_mnist' here"):
        check_reference(got, dict(name="fashion_mnist", val_size=0.2, proxy_resolution=32), 8, 0)
    with pytest.raises(UserError, match="seed-0 split"):
        check_reference(got, dict(name="digits", val_size=0.2, proxy_resolution=32), 8, 1)

    trained = []

    def standalone(arch, seed):
        trained.append((arch, seed))
        return 0.25
    rank_check(archs, macs, macs, standalone, [0, 1], tmp_path / "out", known=known)
    new = [a for a in archs if a not in base]
    assert [s for _, s in trained] == sorted(s for _, s in trained)  # seed-major: all first seeds come first
    assert sorted(map(str, trained)) == sorted(map(str, [(base[-1], 1)] + [(a, s) for a in new for s in (0, 1)]))
    df = pd.read_csv(tmp_path / "out" / "rank.csv").set_index("arch")
    assert df.at[base[1].to_string(), "standalone_seed1"] == pytest.approx(0.6)
    assert df.at[base[1].to_string(), "standalone_s"] == pytest.approx(15.0)
    assert df.at[base[-1].to_string(), "standalone_seed1"] == 0.25


def test_fill_gaps_within_a_latency_range(tiny_space):
    """fill_ms=[lo, hi]: the added archs lie inside that range and split its widest gaps; a bad range is one line."""
    from mnas.bench.picks import fill_gaps
    from mnas.errors import UserError

    base = spread_archs(tiny_space, 3, macs, pool=60)
    lo, hi = macs(base[0]), macs(base[1])
    archs = fill_gaps(tiny_space, base, 2, macs, pool=60, within=(lo, hi))
    new = [a for a in archs if a not in base]
    assert len(new) == 2 and all(lo <= macs(a) <= hi for a in new)
    wide = fill_gaps(tiny_space, base, 2, macs, pool=60)
    assert any(macs(a) > hi for a in wide if a not in base)  # without the range the widest gap lies elsewhere
    with pytest.raises(UserError, match="fill_ms"):
        fill_gaps(tiny_space, base, 1, macs, pool=60, within=(hi, lo))


def test_plot_title_names_the_supernet_rule_and_fine_tune():
    """Both training rules are named (the default changed from one to the other); a fine-tune only when set."""
    assert variant({"smallest": False, "n_random": 3}) == "; supernet: largest + 3 random per step"
    title = variant({"smallest": True, "n_random": 2, "finetune_steps": 50})
    assert "largest + smallest + 2 random" in title and "fine-tuned 50 steps" in title
    assert "fine-tuned" not in variant({"smallest": True, "n_random": 2, "finetune_steps": 0})


def test_window_archs_share_a_latency_window_and_spread_over_macs(tiny_space):
    """window_ms=[lo, hi]: every arch lies inside the window, they are sorted and spread over MACs (the fewest and
    most of the window are both picked), and a window too narrow or reversed is one line."""
    from mnas.bench.picks import window_archs
    from mnas.errors import UserError

    params = lambda a: count(a).params / 1e3  # noqa: E731  # a 'latency' that is not MACs
    everything = spread_archs(tiny_space, 10, params, pool=200)
    lo, hi = params(everything[3]), params(everything[7])
    archs = window_archs(tiny_space, 4, params, macs, (lo, hi), pool=200)
    assert len(set(archs)) == 4 and all(lo <= params(a) <= hi for a in archs)
    assert [macs(a) for a in archs] == sorted(macs(a) for a in archs)
    import random
    rng = random.Random(0)
    inside = [a for a in dict.fromkeys(tiny_space.random_arch(rng) for _ in range(200)) if lo <= params(a) <= hi]
    assert macs(archs[0]) == min(map(macs, inside)) and macs(archs[-1]) == max(map(macs, inside))
    with pytest.raises(UserError, match="window_ms"):
        window_archs(tiny_space, 4, params, macs, (hi, lo), pool=200)
    with pytest.raises(UserError, match="widen the window"):
        window_archs(tiny_space, 4, params, macs, (lo, lo + 1e-9), pool=200)


def test_iso_window_and_the_hand_designs_inside_it():
    """iso_ms=15 is the +-10% window 13.5-16.5 ms; both iso_ms and window_ms, or a latency <= 0, is one line; the
    space's expressible V3 hand designs are found by name, and only when their latency lies in the window."""
    from mnas.bench.picks import iso_window, window_hand_designs
    from mnas.errors import UserError
    from mnas.latency import predict
    from mnas.nn.space import load_space

    assert iso_window(15, None) == pytest.approx((13.5, 16.5)) and iso_window(None, [1, 2]) == (1, 2)
    assert iso_window(None, None) is None
    with pytest.raises(UserError, match="not both"):
        iso_window(15, [1, 2])
    with pytest.raises(UserError, match="iso_ms=0"):
        iso_window(0, None)
    space = load_space("v3_small")
    pixel = lambda a: predict(a, "pixel")  # noqa: E731
    everywhere = window_hand_designs(space, (0, 1000), pixel)
    names = [f"MobileNetV3-Small {w}" for w in (0.5, 0.75, 1.0)]  # the hand designs v3_small expresses
    assert sorted(everywhere.values()) == names
    arch = {label: a for a, label in everywhere.items()}["MobileNetV3-Small 1.0"]
    ms = pixel(arch)
    assert window_hand_designs(space, (0.9 * ms, 1.1 * ms), pixel) == {arch: "MobileNetV3-Small 1.0"}
    assert set(window_hand_designs(space, (0.5 * ms, 0.9 * ms), pixel).values()) == {"MobileNetV3-Small 0.75"}


def test_standalone_accuracies_are_reused_from_another_run(tiny_space, tmp_path):
    """standalone_from: a second estimator setting on the same archs trains nothing again and keeps the first
    run's accuracies; a run of other archs, or a folder without rank.csv, is refused in one line."""
    from mnas.bench.references import load_standalone, standalone_archs
    from mnas.errors import UserError

    archs = spread_archs(tiny_space, 4, macs, pool=60)
    accs = {(a, s): 0.5 + 0.1 * i + 0.01 * s for i, a in enumerate(archs) for s in (0, 1)}
    rank_check(archs, macs, macs, lambda a, s: accs[(a, s)], [0, 1], tmp_path / "first",
               hand={archs[2]: "MobileNetV3-Small 1.0"})
    first = pd.read_csv(tmp_path / "first" / "rank.csv")
    assert list(first["hand"].fillna("")) == ["", "", "MobileNetV3-Small 1.0", ""]
    known = load_standalone(tmp_path / "first", archs, [0, 1])
    assert known[(archs[1].to_string(), 1)][0] == pytest.approx(0.61) and len(known) == 8

    def never(arch, seed):
        raise AssertionError("a reused stand-alone cell was trained again")
    params = lambda a: -count(a).params  # noqa: E731  # another 'estimator'
    rank_check(archs, macs, params, never, [0, 1], tmp_path / "second", known=known)
    second = pd.read_csv(tmp_path / "second" / "rank.csv")
    assert list(second["standalone_acc"]) == pytest.approx(list(first["standalone_acc"]))
    assert list(second["supernet_acc"]) == [params(a) for a in archs]
    with pytest.raises(UserError, match="other archs"):
        load_standalone(tmp_path / "first", archs[:3], [0, 1])
    with pytest.raises(UserError, match="rank.csv"):
        load_standalone(tmp_path, archs, [0, 1])
    picked, hand = standalone_archs(tmp_path / "first", tiny_space)  # what standalone_from= scores
    assert picked == archs and hand == {archs[2]: "MobileNetV3-Small 1.0"}
    first_stage = tiny_space.stages[0]
    narrower = dataclasses.replace(tiny_space, stages=(dataclasses.replace(first_stage, out=first_stage.out[:1]),
                                                       *tiny_space.stages[1:]))
    assert any(narrower.params_for(a) is None for a in archs)
    with pytest.raises(UserError, match="not points of space"):
        standalone_archs(tmp_path / "first", narrower)


def test_the_tau_interval_is_wide_on_few_archs_and_narrow_on_many():
    from mnas.bench.rank_check import tau_interval
    rng = np.random.default_rng(0)
    x = np.arange(40, dtype=float)
    y = x + rng.normal(0, 8, 40)  # a noisy but real agreement
    few, many = tau_interval(x[:8], y[:8]), tau_interval(x, y)
    assert few[1] - few[0] > many[1] - many[0] and many[0] > 0
    assert tau_interval(x, x) == pytest.approx([1.0, 1.0])


def test_several_runs_are_scored_as_one_set(tiny_space, tmp_path):
    """standalone_from=[a, b]: the archs of both runs in order (one shared arch once), each with its own cells."""
    from mnas.bench.references import from_runs

    archs = spread_archs(tiny_space, 5, macs, pool=60)
    acc = lambda a, s: 0.5 + 0.01 * archs.index(a) + 0.001 * s  # noqa: E731
    rank_check(archs[:3], macs, macs, acc, [0, 1], tmp_path / "a", hand={archs[1]: "MobileNetV3-Small 0.75"})
    rank_check(archs[2:], macs, macs, acc, [0, 1], tmp_path / "b")
    picked, hand, known = from_runs([str(tmp_path / "a"), str(tmp_path / "b")], tiny_space, [0, 1])
    assert picked == archs and hand == {archs[1]: "MobileNetV3-Small 0.75"} and len(known) == 10
    assert known[(archs[4].to_string(), 1)][0] == pytest.approx(acc(archs[4], 1))
    assert from_runs(str(tmp_path / "a"), tiny_space, [0, 1])[0] == archs[:3]  # one run, as a plain path


def test_score_only_and_a_summary_over_the_complete_archs(tiny_space, tmp_path):
    """jobs=0 trains nothing; with fewer than 3 archs holding every seed there is no ranking yet (rank.csv kept),
    once 3 do the summary covers exactly those; the lazy estimator is made on its first call only."""
    from mnas.bench.rank_check import Lazy

    archs = spread_archs(tiny_space, 4, macs, pool=60)
    calls = []
    lazy = Lazy(lambda: calls.append(1) or macs)
    assert calls == []
    known = {(a.to_string(), s): (0.5 + 0.1 * i, 1.0) for i, a in enumerate(archs[:2]) for s in (0, 1)}

    def never(arch, seed):
        raise AssertionError("jobs=0 trained a stand-alone cell")
    partial = rank_check(archs, macs, lazy, never, [0, 1], tmp_path, known=known, jobs=0)
    assert partial == {"n": 2, "n_archs": 4} and calls == [1] and not (tmp_path / "summary.json").exists()
    df = pd.read_csv(tmp_path / "rank.csv")
    assert df["supernet_acc"].notna().all() and df["standalone_seed1"].isna().sum() == 2
    known[(archs[2].to_string(), 0)] = known[(archs[2].to_string(), 1)] = (0.45, 1.0)
    summary = rank_check(archs, macs, Lazy(lambda: never), never, [0, 1], tmp_path, known=known, jobs=0)
    assert summary["n"] == 3 and summary["n_archs"] == 4  # the estimates were in rank.csv: no estimator made
    assert json.loads((tmp_path / "summary.json").read_text())["n"] == 3


def test_supernets_of_other_seeds_give_the_estimators_own_seed_to_seed_tau(tiny_space, tmp_path):
    """repeats: each arch is scored by the estimator of every other training seed (its own column, kept for a
    resume); the summary says how the estimates agree with each other and how their mean ranks."""
    from mnas.bench.rank_check import Lazy

    archs = spread_archs(tiny_space, 5, macs, pool=60)
    known = {(a.to_string(), s): (0.5 + 0.1 * i, 1.0) for i, a in enumerate(archs) for s in (0, 1)}
    reverse = lambda arch: -macs(arch)  # noqa: E731 - an estimator that disagrees with the first entirely

    def never(arch, seed):
        raise AssertionError("jobs=0 trained a stand-alone cell")
    s = rank_check(archs, macs, macs, never, [0, 1], tmp_path, known=known, jobs=0, repeats={1: macs, 2: reverse})
    df = pd.read_csv(tmp_path / "rank.csv")
    assert list(df["supernet_acc_seed1"]) == list(df["supernet_acc"]) == [macs(a) for a in archs]
    assert list(df["supernet_acc_seed2"]) == [-macs(a) for a in archs]
    assert s["estimator_retest_tau"] == pytest.approx((1 - 1 - 1) / 3)  # pairs: (0,1) agree, (0,2), (1,2) reverse
    assert s["each_estimate_tau"] == pytest.approx([1.0, 1.0, -1.0]) and -1 <= s["mean_estimate_tau"] <= 1
    again = rank_check(archs, macs, macs, never, [0, 1], tmp_path, known=known, jobs=0,
                       repeats={1: Lazy(lambda: never), 2: Lazy(lambda: never)})  # all in rank.csv: none made
    assert again["estimator_retest_tau"] == pytest.approx(s["estimator_retest_tau"])


def test_bias_table_names_the_choice_an_estimator_favours(tiny_space, tmp_path):
    """positions: the largest arch sits at 1 and the smallest at 0 in every kind the space varies, an arch outside
    the space gives None; an estimate that adds a kernel bonus to the stand-alone accuracy shows it as the largest
    tau_residual; rank_check given the space writes bias.csv."""
    import random

    from mnas.bench.bias import bias_table, positions
    big, small = tiny_space.extreme(largest=True), tiny_space.extreme(largest=False)
    assert {k: v for k, v in positions(tiny_space, big).items() if v == v} == \
        {k: 1.0 for k in ("kernel", "expand", "se", "act", "depth", "out")}
    assert all(v == 0.0 for v in positions(tiny_space, small).values() if v == v)
    assert positions(tiny_space, dataclasses.replace(big, blocks=big.blocks[:1])) is None
    rng = random.Random(0)
    archs = list(dict.fromkeys(tiny_space.random_arch(rng) for _ in range(40)))
    pos = [positions(tiny_space, a) for a in archs]
    standalone = [p["out"] + 0.5 * p["expand"] + 0.01 * i for i, p in enumerate(pos)]
    estimate = [s + 3 * p["kernel"] for s, p in zip(standalone, pos)]
    table = bias_table(tiny_space, archs, estimate, standalone).set_index("kind")
    assert table["tau_residual"].idxmax() == "kernel" and table.at["kernel", "tau_residual"] > 0.5
    assert table.at["out", "tau_standalone"] > 0.5
    known = {(a.to_string(), s): (standalone[i], 1.0) for i, a in enumerate(archs[:8]) for s in (0, 1)}
    score = dict(zip(archs, estimate))
    rank_check(archs[:8], macs, score.get, None, [0, 1], tmp_path, known=known, jobs=0, space=tiny_space)
    assert set(pd.read_csv(tmp_path / "bias.csv")["kind"]) <= set(table.index)
