"""Latency tables, live profiling, calibration and predict on tiny networks (32-64 px inputs, few repeats)."""
import importlib
import subprocess
import sys
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from mnas.errors import UserError
from mnas.latency import measure_arch, predict, profile_ops
from mnas.latency import profile as profile_mod
from mnas.latency.fidelity import run_fidelity, summarize
from mnas.latency.predict import build_table, calibrate, fit_calibration, measure_missing, pick_anchors
from mnas.latency.table import (
    COLUMNS,
    ROOT,
    append_rows,
    empty_table,
    load_device,
    load_table,
    lookup,
    ms_by_key,
    new_meta,
    read_table,
    save_table,
)
from mnas.nn.arch import ArchConfig, BlockConfig
from mnas.nn.ops import KEY_COLUMNS, arch_ops

FAST = dict(repeats=3, warmup=1, chunk=2, progress=False)


def tiny(width: int = 8, depth: int = 1, res: int = 32) -> ArchConfig:
    blocks = [BlockConfig("ir", 3, 2, width, "relu", exp=2 * width)]
    blocks += [BlockConfig("ir", 5, 1, width, "hswish", exp=3 * width, se=8, residual=True)] * (depth - 1)
    return ArchConfig(stem=BlockConfig("conv", 3, 2, 8, "hswish"), blocks=tuple(blocks),
                      head=(BlockConfig("conv", 1, 1, 2 * width, "hswish"),), num_classes=10, resolution=res)


@pytest.fixture
def cpu_meta():
    return new_meta(load_device("cpu"), "test", 32, 10)


@pytest.fixture
def count_runners(monkeypatch):
    """Counts ops/networks compiled for timing (one runner per measured op)."""
    calls = []
    real = profile_mod.make_runner
    monkeypatch.setattr(profile_mod, "make_runner", lambda *a, **k: calls.append(1) or real(*a, **k))
    return calls


def test_profile_ops_rows_and_runtimes():
    keys = arch_ops(tiny())
    for runtime in ("onnxruntime", "torch"):
        rows = profile_ops(keys, runtime=runtime, **FAST)
        assert list(rows.columns) == COLUMNS and len(rows) == len(keys)
        assert (rows.ms > 0).all() and (rows.spread >= 0).all() and (rows.n == 3).all()
        assert [tuple(r) for r in rows[KEY_COLUMNS].itertuples(index=False)] == [k.astuple() for k in keys]
    assert measure_arch(tiny(), repeats=3) > 0


def test_save_load_roundtrip(tmp_path, cpu_meta):
    p = tmp_path / "t.parquet"
    df = append_rows(empty_table(cpu_meta), profile_ops(arch_ops(tiny()), **FAST))
    save_table(df, p)
    back = load_table("cpu", p)
    assert back.attrs["meta"] == cpu_meta and len(back) == len(df)
    key = arch_ops(tiny())[1]
    assert lookup(back, key) == pytest.approx(df.ms.iloc[1])


def test_corrupt_or_foreign_files_are_user_errors(tmp_path, cpu_meta):
    bad = tmp_path / "corrupt.parquet"
    bad.write_bytes(b"PAR1 this is not parquet")
    with pytest.raises(UserError, match="not a readable Parquet"):
        load_table("cpu", bad)
    plain = tmp_path / "plain.parquet"
    pd.DataFrame({"a": [1]}).to_parquet(plain)
    with pytest.raises(UserError, match="no mnas metadata"):
        load_table("cpu", plain)
    cols = tmp_path / "cols.parquet"
    t = pa.Table.from_pandas(pd.DataFrame({"op": ["stem"], "ms": [1.0]}))
    pq.write_table(t.replace_schema_metadata({b"mnas": b'{"device": "cpu"}'}), cols)
    with pytest.raises(UserError, match="needs exactly"):
        load_table("cpu", cols)
    with pytest.raises(UserError, match="no latency table"):
        load_table("cpu", tmp_path / "absent.parquet")


@pytest.mark.parametrize("field,value", [("device", "pixel"), ("runtime", "torch"), ("threads", 2)])
def test_table_from_another_device_or_runtime(tmp_path, cpu_meta, field, value):
    p = tmp_path / "t.parquet"
    save_table(empty_table({**cpu_meta, field: value}), p)
    with pytest.raises(UserError, match="was measured for") as e:
        load_table("cpu", p)
    assert "\n" not in str(e.value)


def test_unknown_device_lists_available():
    with pytest.raises(UserError, match="available.*cpu.*pixel"):
        load_device("nokia3310")


def test_missing_key_names_key_and_command(cpu_meta):
    key = arch_ops(tiny())[0]
    with pytest.raises(UserError) as e:
        lookup(empty_table(cpu_meta), key)
    assert str(key) in str(e.value) and "python -m mnas.latency build device=cpu" in str(e.value)


def test_predict_without_measuring_names_missing_key(tmp_path, cpu_meta):
    p = tmp_path / "t.parquet"
    save_table(empty_table(cpu_meta), p)
    with pytest.raises(UserError, match="op OpKey.*stem.*python -m mnas.latency build"):
        predict(tiny(), "cpu", p, measure=False)


def test_build_resumes_after_interruption(tmp_path, monkeypatch, count_runners):
    p, keys = tmp_path / "t.parquet", arch_ops(tiny(depth=3))
    real, rounds = profile_mod.time_alone, []

    def interrupted(*a):
        if len(rounds) == 2:
            raise KeyboardInterrupt
        rounds.append(1)
        return real(*a)
    monkeypatch.setattr(profile_mod, "time_alone", interrupted)
    with pytest.raises(KeyboardInterrupt):
        build_table("cpu", keys, [], p, **FAST)
    assert len(read_table(p)) == 4  # two chunks of two ops were saved
    monkeypatch.setattr(profile_mod, "time_alone", real)
    count_runners.clear()
    anchors = pick_anchors(ms_by_key(read_table(p)))  # re-timed beside every chunk, to catch speed drift
    df = build_table("cpu", keys, [], p, **FAST)
    assert len(count_runners) == len(set(keys)) - 4 + len(anchors) and len(df) == len(set(keys))
    count_runners.clear()
    build_table("cpu", keys, [], p, **FAST)
    assert count_runners == []


def test_a_device_predicts_and_on_this_machine_measures(tmp_path, monkeypatch):
    """Device: calling it is predict(arch, name); a live device measures networks alone and warm; an estimated
    device refuses to measure in one line; an unknown name lists the known ones."""
    from mnas.latency import Device
    pred = importlib.import_module("mnas.latency.predict")  # the package exports a function of that name

    small, arch = tiny(8, 1, 64), tiny(16, 2, 64)
    build_table("cpu", arch_ops(small), [small, tiny(32, 3, 64)], tmp_path / "t.parquet", arch_repeats=3, **FAST)
    monkeypatch.setattr(pred, "table_path", lambda device: tmp_path / "t.parquet")
    cpu = Device("cpu")
    assert cpu(arch) == cpu.predict(arch) == predict(arch, "cpu") > 0 and cpu.live
    ms = cpu.measure_fn(repeats=3)([small, arch])
    assert len(ms) == 2 and all(m > 0 for m in ms) and "each network alone" in cpu.how_measured(3)
    pixel = Device("pixel")
    assert pixel(arch) == predict(arch, "pixel") and pixel.measure_fn() is None and pixel.how_measured() == ""
    with pytest.raises(UserError, match="not measured on this machine"):
        pixel.measure([arch])
    with pytest.raises(UserError, match="unknown device 'phone'.*available"):
        Device("phone")


def test_a_build_notices_the_machine_changing_speed(tmp_path, monkeypatch, capsys):
    """From the third chunk on every op takes twice as long (load came onto the machine): the anchor ops re-timed
    beside each chunk catch it; those chunks are scaled back into the table's units, recorded in its metadata
    and reported in one line each."""
    chunks = []
    cost = lambda module, x: (sum(p.numel() for p in module.parameters()) + x.numel()) / 1e4  # noqa: E731

    def fake_times(runners, repeats, warmup, threads=1):
        chunks.append(len(runners))
        slow = 2.0 if len(chunks) >= 3 else 1.0
        return np.array([[r * slow] * repeats for r in runners])
    monkeypatch.setattr(profile_mod, "make_runner", lambda module, x, *a, **k: cost(module, x))
    monkeypatch.setattr(profile_mod, "time_alone", fake_times)
    keys = list(dict.fromkeys(arch_ops(tiny(8, 2)) + arch_ops(tiny(16, 2)) + arch_ops(tiny(24, 2))))
    p = tmp_path / "t.parquet"
    measure_missing("cpu", keys, p, **FAST)
    table = load_table("cpu", p)
    ms = ms_by_key(table)
    assert len(chunks) >= 4 and chunks[0] == 2 and all(c > 2 for c in chunks[1:])  # anchors from chunk 2 on
    assert all(ms[k.astuple()] == pytest.approx(cost(*profile_mod.op_module(k))) for k in keys)  # not 2x
    assert [d["factor"] for d in table.attrs["meta"]["drift"]] == [1.0] + [0.5] * (len(chunks) - 2)
    err = capsys.readouterr().err
    assert err.count("ran 100% slower than the table's anchor ops") == len(chunks) - 2


def test_calibrated_predict_measures_on_demand_and_is_monotone(tmp_path, count_runners):
    p = tmp_path / "t.parquet"
    small, big = tiny(8, 1, 64), tiny(64, 4, 64)
    build_table("cpu", arch_ops(small), [small, tiny(32, 3, 64)], p, arch_repeats=3, **FAST)
    meta = load_table("cpu", p).attrs["meta"]
    assert len(meta["calibration"]["points"]) == 2 and meta["calibration"]["b"] > 0
    rows = len(read_table(p))
    count_runners.clear()
    assert predict(small, "cpu", p) > 0 and count_runners == []
    fresh = len(set(arch_ops(big)) - set(arch_ops(small)) - set(arch_ops(tiny(32, 3, 64))))
    anchors = len(set(arch_ops(big))) - fresh  # big's ops already in the table, timed again beside the new ones
    assert predict(big, "cpu", p) > predict(small, "cpu", p)
    assert len(read_table(p)) == rows + fresh and len(count_runners) == fresh + anchors
    calibrate("cpu", [small], p, repeats=3, progress=False)  # already a point: nothing re-measured
    assert len(count_runners) == fresh + anchors


@pytest.fixture
def op_clock(monkeypatch):
    """profile_ops replaced by a clock: an op takes `factor` x (1 + cout / 8) ms (set clock.factor to change the
    machine's speed); clock.runs lists the keys of each profile_ops call."""
    pred = importlib.import_module("mnas.latency.predict")  # the package exports a function of that name
    clock = SimpleNamespace(factor=1.0, runs=[])

    def fake_profile(keys, *a, on_chunk=None, **k):
        keys = list(keys)
        clock.runs.append(keys)
        rows = pd.DataFrame([x.astuple() for x in keys], columns=KEY_COLUMNS)
        rows["ms"], rows["spread"], rows["n"] = [clock.factor * (1 + x.cout / 8) for x in keys], 0.0, 3
        if on_chunk:
            on_chunk(rows)
        return rows

    monkeypatch.setattr(pred, "profile_ops", fake_profile)
    return clock


def test_on_demand_ops_are_scaled_into_the_tables_units(tmp_path, op_clock):
    """Ops measured later, under other conditions (here: everything timed at half its build-time value), are
    scaled by the anchors' ratio into the table's units; without anchors they would come out at half."""
    pred = importlib.import_module("mnas.latency.predict")  # the package exports a function of that name
    p = tmp_path / "t.parquet"
    small, big = tiny(8, 1, 64), tiny(16, 2, 64)
    measure_missing("cpu", arch_ops(small), p)
    op_clock.factor, op_clock.runs = 0.5, []
    pred.op_latencies(big, "cpu", p)
    new = set(arch_ops(big)) - set(arch_ops(small))
    assert [len(r) for r in op_clock.runs] == [len(new) + len(set(arch_ops(big)) - new)]  # one run, anchors included
    table = ms_by_key(load_table("cpu", p))
    assert all(table[k.astuple()] == pytest.approx(1 + k.cout / 8) for k in new)  # not 0.5 * that


def test_machine_speed_times_the_tables_anchor_ops_again(tmp_path, op_clock):
    """machine_speed: the table's anchor ops timed now at half their table values -> 2.0 (twice as fast); the
    one-line warning only beyond 10%; no table or a predicted device -> None."""
    pred = importlib.import_module("mnas.latency.predict")  # the package exports a function of that name
    p = tmp_path / "t.parquet"
    assert pred.machine_speed("cpu", p) is None  # no table yet
    measure_missing("cpu", arch_ops(tiny(16, 2, 64)), p)
    op_clock.factor, op_clock.runs = 0.5, []
    assert pred.machine_speed("cpu", p) == pytest.approx(2.0)
    assert op_clock.runs == [pick_anchors(ms_by_key(load_table("cpu", p)))]  # only the anchors, in one run
    assert pred.speed_note([1.05, 0.95]) is None and pred.speed_note([]) is None
    assert "25% slower than when its latency table was measured" in pred.speed_note([1.0, 0.8])
    assert "50% faster" in pred.speed_note([2.0])  # its times half the table's, as a build's drift line says
    from mnas.latency import Device
    assert Device("pixel").speed() is None


def test_uncalibrated_table_says_how_to_finish(tmp_path):
    p = tmp_path / "t.parquet"
    measure_missing("cpu", arch_ops(tiny()), p, **FAST)
    with pytest.raises(UserError, match="not calibrated yet.*build device=cpu"):
        predict(tiny(), "cpu", p)


def test_fit_calibration_recovers_line():
    rng = np.random.default_rng(0)
    x = rng.uniform(1, 20, 50)
    a, b = fit_calibration(x, 0.7 + 0.85 * x)
    assert a == pytest.approx(0.7, abs=1e-9) and b == pytest.approx(0.85, abs=1e-9)
    a, b = fit_calibration(x, (0.7 + 0.85 * x) * rng.normal(1, 0.01, 50))
    assert abs(a - 0.7) < 0.2 and abs(b - 0.85) < 0.02


def test_per_op_form_recovers_its_terms_and_needs_enough_networks():
    """fit_form: the per-kind slopes and the per-op term of synthetic networks are recovered; a kind no network
    has is left out; too few networks for its terms: None (the line is used)."""
    from mnas.latency.predict import POINTS_PER_TERM, fit_form
    rng = np.random.default_rng(1)
    true = {"1": 0.3, "n_ops": -0.04, "sum_stem": 1.2, "sum_ds": 0.9, "sum_ir": 1.05, "sum_classifier": 0.8}
    rows = [{"1": 1.0, "n_ops": float(rng.integers(8, 24)), "sum_stem": rng.uniform(.1, .5),
             "sum_ds": rng.uniform(.1, 3), "sum_ir": rng.uniform(0, 10), "sum_head": 0.0,
             "sum_classifier": rng.uniform(.05, .5)} for _ in range(60)]
    y = [sum(true[t] * r[t] for t in true) for r in rows]
    coef = fit_form(rows, y)
    assert set(coef) == set(true) and all(coef[t] == pytest.approx(v, abs=1e-9) for t, v in true.items())
    assert fit_form(rows[:POINTS_PER_TERM * len(true) - 1], y[:POINTS_PER_TERM * len(true) - 1]) is None


def test_predict_uses_the_tables_per_op_form(tmp_path):
    """A table calibrated with the per-op form predicts with it (a kind missing from it gets the line's slope);
    without it, with the line."""
    from mnas.latency.predict import features, op_latencies
    from mnas.latency.table import save_table
    p = tmp_path / "t.parquet"
    small, big = tiny(8, 1, 64), tiny(32, 3, 64)
    build_table("cpu", arch_ops(small) + arch_ops(big), [small, big], p, arch_repeats=3, **FAST)
    df = load_table("cpu", p)
    c = df.attrs["meta"]["calibration"]
    assert c["form"] == "line" and "coef" not in c  # two networks: too few for the per-op form
    line = predict(big, "cpu", p)
    assert line == pytest.approx(c["a"] + c["b"] * sum(op_latencies(big, "cpu", p)))
    c["coef"] = {"1": 0.1, "n_ops": 0.01, "sum_stem": 2.0, "sum_ds": 1.0, "sum_ir": 1.5, "sum_head": 1.0}
    save_table(df, p)
    f = features(arch_ops(big), op_latencies(big, "cpu", p))
    want = 0.1 + 0.01 * f["n_ops"] + 2 * f["sum_stem"] + f["sum_ds"] + 1.5 * f["sum_ir"] + f["sum_head"] \
        + c["b"] * f["sum_classifier"]
    assert f["sum_classifier"] > 0 and predict(big, "cpu", p) == pytest.approx(want) and want != pytest.approx(line)


def test_fidelity_summary_and_files(tmp_path, monkeypatch):
    s = summarize([1.0, 2.0, 3.0, 4.0], [1.0, 2.0, 3.3, 3.0])
    assert s["mape"] == pytest.approx((0.3 / 3.3 + 1 / 3) / 4 * 100) and s["within10"] == 75
    assert s["tau"] == pytest.approx(2 / 3)
    space = tmp_path / "mini.yaml"
    space.write_text("name: mini\nresolution: 32\nnum_classes: 10\nstem: {kernel: 3, stride: 2, out: 8, act: relu}\n"
                     "block: {kernel: [3], expand: [3], se: [false], act: [relu, hswish]}\n"
                     "stages: [{depth: [1, 2], out: [8, 16], stride: 2}]\nhead: {out: 32, act: hswish}\n")
    table = tmp_path / "t.parquet"
    build_table("cpu", [], [tiny()], table, arch_repeats=3, **FAST)
    import mnas.nn.models
    monkeypatch.setattr(mnas.nn.models, "hand_designs", lambda: [("v1", 0.5, "small", tiny(8)),
                                                                 ("v1", 1.0, "big", tiny(16, 2)),
                                                                 ("v3_small", 1.0, "deep", tiny(8, 3))])
    summary, out = run_fidelity("cpu", 4, str(space), repeats=3, out_dir=tmp_path / "fid", progress=False, path=table)
    csv = pd.read_csv(out / "fidelity.csv")
    assert len(csv) == 7 and (csv.predicted > 0).all() and (out / "fidelity.png").stat().st_size > 1000
    assert list(csv.family.unique()) == ["mini random", "v1", "v3_small"] and list(csv.name[4:6]) == ["small", "big"]
    families = summary["families"]
    assert summary["n"] == 7 and [families[f]["n"] for f in ("mini random", "v1", "v3_small")] == [4, 2, 1]
    text = (out / "summary.txt").read_text().splitlines()
    assert text[0].startswith("cpu: MAPE")
    assert [x.split(":")[0] for x in text[1:4]] == ["  mini random", "  v1", "  v3_small"]
    assert len(text) == 4
    assert abs(summary["worst"]) == pytest.approx(100 * (csv.error.abs().max()))
    other = tmp_path / "wide.yaml"
    other.write_text(space.read_text().replace("name: mini", "name: wide").replace("[8, 16]", "[24, 32]"))
    summary, out = run_fidelity("cpu", 2, [str(space), str(other)], repeats=3, out_dir=tmp_path / "f2",
                                progress=False, path=table, baselines=False, extra=[("pruned", "cut", tiny(8, 2))])
    csv = pd.read_csv(out / "fidelity.csv")
    assert summary["n"] == 5 and list(csv.family.unique()) == ["mini random", "wide random", "pruned"]
    assert list(summary["families"]) == ["mini random", "wide random", "pruned"] and csv.name.iloc[-1] == "cut"


def test_cli_unknown_device_is_one_line_exit_2():
    r = subprocess.run([sys.executable, "-m", "mnas.latency", "build", "device=nokia3310"], cwd=ROOT,
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and r.stderr.strip().count("\n") == 0 and "available" in r.stderr, r.stderr



def test_networks_are_timed_alone_and_warm():
    """time_alone never runs another network between a network's timed calls (a cache-sensitive runner stays
    fast), where round-robin would time every call just after another network (slow)."""
    import time
    last = [None]

    def runner(name):
        def run():
            cold, last[0] = last[0] != name, name
            end = time.perf_counter() + (0.004 if cold else 0.0005)
            while time.perf_counter() < end:
                pass
        return run
    runners = [runner("a"), runner("b")]
    alone = profile_mod.time_alone(runners, 10, warmup=2, threads=2, rounds=3)
    mixed = profile_mod.time_interleaved(runners, 10, 2, threads=2)
    assert alone.shape == mixed.shape == (2, 10)
    assert np.median(alone) < 2 and np.median(mixed) > 3.5  # ms: 0.5 warm, 4 cold


def test_a_table_calibrated_the_old_way_is_recalibrated(tmp_path):
    """Calibration points stored before networks were timed alone are refused by predict with the rebuild
    command, and measured again by calibrate (the ops are kept)."""
    p, small, other = tmp_path / "t.parquet", tiny(8, 1, 32), tiny(16, 2, 32)
    build_table("cpu", arch_ops(small), [small, other], p, arch_repeats=3, **FAST)
    df = load_table("cpu", p)
    df.attrs["meta"]["calibration"].pop("timing")
    save_table(df, p)
    with pytest.raises(UserError, match="timed interleaved.*python -m mnas.latency build device=cpu"):
        predict(small, "cpu", p)
    rows = len(read_table(p))
    calibrate("cpu", [small, other], p, repeats=3, progress=False)
    assert load_table("cpu", p).attrs["meta"]["calibration"]["timing"] == "alone" and len(read_table(p)) == rows
    assert predict(small, "cpu", p) > 0


def test_fidelity_adds_pruned_hand_designs():
    """The fidelity command's pruned family: each start network in turn, seeded, each pruned below its start."""
    from mnas.latency.__main__ import PRUNE_STARTS, pruned_archs
    from mnas.nn.models import get_model
    from mnas.nn.stats import count

    rows = pruned_archs(5, seed=0)
    assert rows == pruned_archs(5, seed=0) and rows != pruned_archs(5, seed=1)
    assert [f for f, _, _ in rows] == ["pruned"] * 5 and rows[4][1].startswith(PRUNE_STARTS[0])
    for (_, name, arch), start in zip(rows, [*PRUNE_STARTS, PRUNE_STARTS[0]]):
        assert name.startswith(start) and count(arch).macs < count(get_model(start)).macs


def test_passes_time_each_network_in_new_sessions_and_keep_the_median(monkeypatch):
    """measure_archs(passes=3) exports each network once, opens a new session for it in every pass, and reports
    the median of its three passes' figures (not the minimum of all runs)."""
    made, exported, calls = [], [], iter([10.0, 30.0, 20.0])
    real_bytes, real_runner = profile_mod.onnx_bytes, profile_mod.session_runner
    monkeypatch.setattr(profile_mod, "onnx_bytes", lambda m, x: exported.append(1) or real_bytes(m, x))
    monkeypatch.setattr(profile_mod, "session_runner", lambda b, x, t=1: made.append(1) or real_runner(b, x, t))
    monkeypatch.setattr(profile_mod, "time_alone",  # one pass over both networks per call: 10, then 30, then 20 ms
                        lambda runners, repeats, warmup, threads: np.full((len(runners), repeats), next(calls)))
    m = profile_mod.measure_archs([tiny(8, 1), tiny(16, 1)], repeats=4, chunk=2, passes=3, progress=False)
    assert len(exported) == 2 and len(made) == 6
    assert list(m.ms) == [20.0, 20.0] and list(m.n) == [12, 12]
    with pytest.raises(UserError, match="passes"):
        profile_mod.measure_archs([tiny(8, 1)], repeats=4, passes=0, progress=False)


def test_a_table_of_ops_timed_round_robin_is_refused_and_rebuilt_by_build(tmp_path, capsys):
    """Ops profiled the old way (round-robin over a chunk, before 2026-12-07) are not mixed with ops timed alone:
    predict names the rebuild command; build moves the old table aside and measures anew."""
    p, small = tmp_path / "t.parquet", tiny(8, 1, 32)
    build_table("cpu", arch_ops(small), [], p, **FAST)
    df = read_table(p)
    assert df.attrs["meta"]["op_timing"] == "alone"
    df.attrs["meta"].pop("op_timing")
    save_table(df, p)
    with pytest.raises(UserError, match="round-robin.*python -m mnas.latency build device=cpu"):
        predict(small, "cpu", p)
    build_table("cpu", arch_ops(small), [], p, **FAST)
    assert (tmp_path / "t.interleaved.parquet").exists() and "building it anew" in capsys.readouterr().err
    assert load_table("cpu", p).attrs["meta"]["op_timing"] == "alone" and len(read_table(p)) == len(df)
