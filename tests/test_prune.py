"""NetAdapt pruning: units, torch-pruning surgery on every model family, arch_of/rebuild, ONNX, resume, bad targets."""
import dataclasses
import io
import json
import os
import random
import subprocess
import sys
import warnings

import onnxruntime as ort
import pandas as pd
import pytest
import torch

from mnas import data as datasets
from mnas.errors import UserError
from mnas.nn.arch import ArchConfig
from mnas.nn.models import build, get_model
from mnas.nn.proxy import proxy_arch
from mnas.nn.space import load_space
from mnas.nn.stats import count
from mnas.nn.units import channels, minimal_arch, random_pruned, smallest_keep, units
from mnas.prune.netadapt import arch_of, checkpoint_path, netadapt, prune_unit, read_history
from mnas.prune.run import path_label, run_prune
from mnas.prune.settings import Settings
from mnas.train import evaluate, load_checkpoint

ARCHS = {"mobilenet_v1": get_model("mobilenet_v1", 0.25, 64), "mobilenet_v2": get_model("mobilenet_v2", 0.35, 64),
         "mobilenet_v3_large": get_model("mobilenet_v3_large", 0.5, 64),
         "mobilenet_v3_small": get_model("mobilenet_v3_small", 0.5, 64),
         "v3_small space": load_space("v3_small").random_arch(random.Random(3)).replace(resolution=64)}
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FAST = dict(finetune_steps=2, batch_size=32, eval_images=64, seed=0, threads=1, bn_recalibration=False)


def mac_latency(arch):
    """Stand-in latency for tests: 1 ms per MMAC at the deployment shape (predict() is tested in test_latency)."""
    return count(arch).macs / 1e6


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def digits():
    return datasets.load("digits")


def onnx_outputs(model, x):
    buf = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(model.eval(), (x,), buf, dynamo=False, opset_version=17, input_names=["x"])
    return ort.InferenceSession(buf.getvalue(), providers=["CPUExecutionProvider"]).run(None, {"x": x.numpy()})[0]


def same_outputs(model, x):
    """build(arch_of(model)) with model's weights computes what model computes."""
    rebuilt = build(arch_of(model)).eval()
    rebuilt.load_state_dict(model.state_dict())
    with torch.no_grad():
        return torch.allclose(rebuilt(x), model.eval()(x), atol=1e-5)


def test_units_follow_the_coupling():
    a = get_model("mobilenet_v2", 1.0)
    names = [u.name for u in units(a)]
    assert len(names) == 16 + 9  # 16 expansions; stem, 7 stages (blocks 1-2, 3-5, ... coupled by residuals), head
    assert "out blocks.3..blocks.5" in names and "out blocks.2" not in names and "exp blocks.0" not in names
    assert minimal_arch(a).blocks[4].out == 8 and minimal_arch(a).head[0].out == 8 and mac_latency(minimal_arch(a)) > 0
    v3 = get_model("mobilenet_v3_large", 1.0)  # stem 16 -> ds block 16 (residual): one unit; SE squeezes follow
    assert [u.name for u in units(v3)][0] == "out stem..blocks.0" and units(v3)[-1].name == "hidden"
    assert minimal_arch(v3).blocks[3].se == 8 and minimal_arch(v3).hidden == 8


def test_random_cuts_leave_shapes_a_pruning_run_could():
    """random_pruned (the fidelity benchmark's pruned networks): seeded, only whole steps of 8 removed, never
    below 8, residual-coupled widths kept equal, the result builds and runs."""
    v2 = get_model("mobilenet_v2", 1.0)
    a, b = (random_pruned(v2, random.Random(3), 10) for _ in range(2))
    assert a == b and a != v2
    for u in units(v2):
        before, after = channels(v2, u), channels(a, u)
        assert after <= before and (before - after) % 8 == 0 and after >= min(8, before), u.name
        assert len({channels(a, dataclasses.replace(u, layers=(i,))) for i in u.layers} | {after}) == 1
    assert sum(channels(a, u) != channels(v2, u) for u in units(v2)) <= 10
    assert build(proxy_arch(a, 10))(torch.randn(1, 3, 32, 32)).shape == (1, 10)


@pytest.mark.parametrize("name", ["mobilenet_v3_large", "v3_small space"])
def test_every_unit_prunes_to_a_rebuildable_arch(name):
    """Each unit at its smallest width: torch-pruning's result equals the predicted ArchConfig (prune_unit checks
    it) and build(arch) + the pruned weights computes the same function (depthwise, SE, residual, hidden)."""
    proxy = proxy_arch(ARCHS[name], num_classes=10)
    x = torch.randn(2, 3, 32, 32)
    for u in units(proxy):
        keep = smallest_keep(proxy, u)
        if keep < channels(proxy, u):
            model = build(proxy)
            prune_unit(model, u, keep)
            assert channels(model.arch, u) == keep and same_outputs(model, x), u.name


@pytest.mark.parametrize("name", ARCHS)
def test_one_iteration_prunes_forwards_and_exports(name, digits, tmp_path):
    deploy = ARCHS[name]
    model = build(proxy_arch(deploy, digits.num_classes))
    start = mac_latency(deploy)
    s = Settings(delta=0.15, max_iterations=1, **FAST)
    pruned, deploy_p, hist = netadapt(model, deploy, digits, 0.3 * start, mac_latency, tmp_path, s, progress=False)
    assert list(hist["iteration"]) == [0, 1] and hist["channels_after"].iloc[1] < hist["channels_before"].iloc[1]
    assert hist["latency_ms"].iloc[1] == mac_latency(deploy_p) <= hist["goal_ms"].iloc[1] < start
    assert ArchConfig.from_string(deploy_p.to_string()) == deploy_p == ArchConfig.from_string(hist["arch"].iloc[1])
    assert pruned.arch == arch_of(pruned) and deploy_p.blocks[0].stride == deploy.blocks[0].stride
    x = torch.randn(2, 3, 32, 32)
    assert same_outputs(pruned, x)
    with torch.no_grad():
        y = pruned.eval()(x)
    assert y.shape == (2, 10) and torch.isfinite(y).all()
    assert abs(onnx_outputs(pruned, x) - y.numpy()).max() < 1e-4
    assert load_checkpoint(tmp_path / "iters" / "iter_001.pt").arch == pruned.arch
    props = pd.read_csv(tmp_path / "proposals.csv")
    assert props["chosen"].sum() == 1 and props.loc[props["chosen"], "score"].item() == props["score"].max()


def test_select_accuracy_keeps_the_most_accurate(digits, tmp_path):
    deploy = ARCHS["mobilenet_v3_small"]
    s = Settings(delta=0.1, max_iterations=1, select="accuracy", **FAST)
    netadapt(build(proxy_arch(deploy, 10)), deploy, digits, 0.5 * mac_latency(deploy), mac_latency, tmp_path, s,
             progress=False)
    props = pd.read_csv(tmp_path / "proposals.csv")
    best = props[props["val_acc"] == props["val_acc"].max()]
    assert len(props) > 1 and props.loc[props["chosen"], "unit"].item() == best.loc[best["latency_ms"].idxmin(), "unit"]


def test_proposals_scored_without_finetune_then_chosen_one_finetuned(digits, tmp_path):
    """finetune_steps=0: each proposal is scored as pruned (BatchNorm re-estimated); chosen_steps fine-tune the kept
    one, whose accuracy (after that fine-tune) is the history's and the next iteration's reference."""
    deploy = ARCHS["mobilenet_v2"]
    digits = dataclasses.replace(digits, val=digits.val.take(slice(0, 64)), test=digits.test.take(slice(0, 64)))
    s = Settings(delta=0.2, proxy_resolution=16, chosen_steps=3, **dict(FAST, finetune_steps=0, bn_recalibration=True))
    result = run_prune(deploy, digits, "0.8x", mac_latency, tmp_path, s, init_steps=2, final_steps=1,
                       device="stand-in", progress=False)
    assert result["reached"] and result["total_steps"] == 2 + result["iterations"] * 3 + 1
    hist, props = read_history(tmp_path), pd.read_csv(tmp_path / "proposals.csv")
    chosen = props[props["chosen"]].set_index("iteration")
    for _, row in hist[hist["iteration"] > 0].iterrows():  # the history's accuracy is the fine-tuned network's
        model = load_checkpoint(checkpoint_path(tmp_path, int(row["iteration"])))
        assert model.arch == proxy_arch(ArchConfig.from_string(row["arch"]), 10)
        assert row["unit"] == chosen.loc[row["iteration"], "unit"]
        assert evaluate(model, digits.val, 16)[0] == pytest.approx(row["val_acc"])  # saved after its fine-tune
    pruned = load_checkpoint(checkpoint_path(tmp_path, 1))
    scored = Settings(proxy_resolution=16, **dict(FAST, bn_recalibration=True)).score(pruned, digits, 0, seed=0)
    assert 0 <= scored <= 1
    with pytest.raises(UserError, match="chosen_steps=-1"):
        Settings(chosen_steps=-1).check()


def test_jobs_score_proposals_in_workers_with_the_same_choices(digits, tmp_path):
    """jobs=2 scores each iteration's proposals in 2 worker processes: the same proposals, accuracies and choices
    as jobs=1 (both 1 thread), and the kept network is the one fine-tuned in a worker (its weights came back)."""
    deploy = ARCHS["mobilenet_v2"]
    digits = dataclasses.replace(digits, val=digits.val.take(slice(0, 64)))
    runs = {}
    for jobs in (1, 2):
        s = Settings(delta=0.03, max_iterations=1, jobs=jobs, proxy_resolution=16, **FAST)
        torch.manual_seed(0)
        model, _, _ = netadapt(build(proxy_arch(deploy, 10)), deploy, digits, 0.2 * mac_latency(deploy),
                               mac_latency, tmp_path / str(jobs), s, progress=False)
        runs[jobs] = model, pd.read_csv(tmp_path / str(jobs) / "proposals.csv")
    (one, props1), (two, props2) = runs[1], runs[2]
    assert len(props1) > 2 and props1.drop(columns="score").equals(props2.drop(columns="score"))
    w1, w2 = one.state_dict(), two.state_dict()  # equal weights (outputs may differ in the last bit: fit leaves
    assert w1.keys() == w2.keys() and all(torch.equal(w1[k], w2[k]) for k in w1)  # one in channels_last)
    x = torch.randn(2, 3, 16, 16)
    start = build(proxy_arch(deploy, 10))
    assert not torch.allclose(start.eval()(x), two.eval()(x))  # pruned and fine-tuned, not the start network
    with pytest.raises(UserError, match="jobs=0 is invalid"):
        Settings(jobs=0).check()


def test_resume_after_interruption(digits, tmp_path):
    """Killed between an iteration's checkpoint and its history row: the rerun redoes that iteration only."""
    deploy = ARCHS["mobilenet_v2"]
    s = Settings(delta=0.1, max_iterations=2, **FAST)
    calls = []

    def measure_then_die(archs):
        calls.append(archs)
        if len(calls) == 3:  # start, iteration 1, then iteration 2 is "killed"
            raise KeyboardInterrupt
        return [mac_latency(a) for a in archs]

    with pytest.raises(KeyboardInterrupt):
        netadapt(build(proxy_arch(deploy, 10)), deploy, digits, 0.2 * mac_latency(deploy), mac_latency, tmp_path, s,
                 measure_then_die, progress=False)
    assert list(read_history(tmp_path)["iteration"]) == [0, 1] and (tmp_path / "iters" / "iter_002.pt").exists()
    first = (tmp_path / "iters" / "iter_001.pt").stat().st_mtime_ns
    _, _, hist = netadapt(None, deploy, digits, 0.2 * mac_latency(deploy), mac_latency, tmp_path, s,
                          lambda archs: [mac_latency(a) for a in archs], progress=False)
    assert list(hist["iteration"]) == [0, 1, 2] and hist["measured_ms"].notna().all()
    assert (tmp_path / "iters" / "iter_001.pt").stat().st_mtime_ns == first  # iteration 1 was not redone
    props = pd.read_csv(tmp_path / "proposals.csv")
    assert not props.duplicated(["iteration", "unit"]).any() and set(props["iteration"]) == {1, 2}
    assert props.groupby("iteration")["chosen"].sum().tolist() == [1, 1]


@pytest.mark.parametrize("target, message", [("1.5x", "(0, 1)"), ("0x", "(0, 1)"), ("0ms", "positive"),
                                             ("-3ms", "positive"), ("1000ms", "not below the start"),
                                             ("0.01x", "minimum reachable target is")])
def test_bad_targets(target, message, digits, tmp_path):
    (tmp_path / "keep.txt").write_text("earlier work")
    with pytest.raises(UserError, match=message.replace("(", r"\(").replace(")", r"\)")):
        run_prune(ARCHS["mobilenet_v2"], digits, target, mac_latency, tmp_path, Settings(**FAST), progress=False)
    assert [p.name for p in tmp_path.iterdir()] == ["keep.txt"]
    assert (tmp_path / "keep.txt").read_text() == "earlier work"


def test_cli_bad_target_is_one_line_exit_2():
    r = subprocess.run([sys.executable, "-m", "mnas.prune", "device=pixel", "target=1000ms"], capture_output=True,
                       text=True, cwd=ROOT)
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and "not below the start latency" in r.stderr


def test_run_prune_writes_a_loadable_result_and_compares(digits, tmp_path):
    deploy = ARCHS["mobilenet_v2"]
    digits = dataclasses.replace(digits, val=digits.val.take(slice(0, 64)), test=digits.test.take(slice(0, 64)))
    s = Settings(delta=0.2, proxy_resolution=16, **FAST)
    result = run_prune(deploy, digits, "0.85x", mac_latency, tmp_path, s, init_steps=2, final_steps=1,
                       compare=("mobilenet_v2", 0.35), device="stand-in", progress=False,
                       measure_fn=lambda archs: [mac_latency(a) for a in archs])
    assert (tmp_path / "width_match.csv").exists()  # measured: the width matched on measured latency
    arch = ArchConfig.from_json((tmp_path / "arch.json").read_text())
    assert arch == ArchConfig.from_string((tmp_path / "arch.txt").read_text().strip()) == \
        ArchConfig.from_string(result["final"]["arch"])
    assert result["reached"] and mac_latency(arch) <= 0.85 * mac_latency(deploy) + 1e-9
    assert result["total_steps"] == 2 + result["iterations"] * 2 + 1
    model = load_checkpoint(tmp_path / "model.pt")
    assert model.arch == proxy_arch(arch, 10) and model(torch.randn(1, 3, 16, 16)).shape == (1, 10)
    table = pd.read_csv(tmp_path / "compare.csv")
    assert len(table) == 3 and set(table["steps"]) == {result["total_steps"]} and table["val_acc"].between(0, 1).all()
    width_row = table[table["network"].str.startswith("mobilenet_v2 x")].iloc[0]
    assert abs(width_row["latency_ms"] - result["final"]["latency_ms"]) < 0.25 * result["final"]["latency_ms"]
    assert (tmp_path / "path.png").stat().st_size > 0 and json.loads((tmp_path / "result.json").read_text()) == result
    again = run_prune(deploy, digits, "0.85x", mac_latency, tmp_path, s, init_steps=2, final_steps=1,
                      compare=("mobilenet_v2", 0.35), device="stand-in", progress=False)  # finished: nothing redone
    assert again == result and len(pd.read_csv(tmp_path / "compare.csv")) == 3
    assert json.loads((tmp_path / "compare.json").read_text())["checks"]["drop_spread"] is None  # 1 run: no spread
    first = pd.read_csv(tmp_path / "compare.csv")
    run_prune(deploy, digits, "0.85x", mac_latency, tmp_path, s, init_steps=2, final_steps=1,
              compare=("mobilenet_v2", 0.35), device="stand-in", progress=False, compare_seeds=2)  # adds run 1 only
    table = pd.read_csv(tmp_path / "compare.csv")
    assert sorted(table.groupby("network").size()) == [2, 2, 2] and set(table["run"]) == {0, 1}
    pd.testing.assert_frame_equal(table[table["run"] == 0].reset_index(drop=True), first)  # run 0 kept as it was
    checks = json.loads((tmp_path / "compare.json").read_text())["checks"]
    by = table.groupby("network")["test_acc"].mean()
    name = [n for n in by.index if n.startswith("unpruned")][0]
    assert checks["runs"] == 2 and checks["latency"] == "measured"  # run 0 was measured
    assert checks["drop"] == pytest.approx(by[name] - by["pruned"])
    std = table.groupby("network")["test_acc"].std()
    assert checks["drop_spread"] == pytest.approx((std[name] ** 2 + std["pruned"] ** 2) ** 0.5)
    assert checks["speedup"] == pytest.approx(mac_latency(deploy) / result["final"]["latency_ms"])


def test_compare_seeds_must_be_positive(digits, tmp_path):
    with pytest.raises(UserError, match="compare_seeds=0 is invalid"):
        run_prune(ARCHS["mobilenet_v2"], digits, "0.85x", mac_latency, tmp_path, Settings(**FAST), compare_seeds=0,
                  progress=False)
    assert not any(tmp_path.iterdir())


def test_path_legend_says_how_proposals_were_scored():
    assert "no fine-tune" in path_label(Settings(finetune_steps=0, bn_recalibration=False))
    label = path_label(Settings(finetune_steps=0, chosen_steps=0))
    assert "BatchNorm re-estimated" in label and "fine-tune steps" not in label
    label = path_label(Settings(finetune_steps=20, chosen_steps=40))
    assert "20 fine-tune steps per proposal" in label and "40 more for the chosen one" in label


def test_oneshot_scores_slimmings_and_resumes(digits, tmp_path, monkeypatch):
    """method=oneshot: the slimmable network is trained once (cached), every kept network is its slimming with its
    first channels and no unit goes below slim_min_width; killed mid-run, the rerun resumes without retraining it;
    final_init=scratch trains the result for final_steps only, and the comparison trains the others as long."""
    from mnas.nn.units import channels, units
    from mnas.prune.oneshot import OneShot, slimming

    monkeypatch.chdir(tmp_path)  # the slimmable network's cache: runs/supernets/ under the working directory
    deploy = ARCHS["mobilenet_v2"]
    small = dataclasses.replace(digits, val=digits.val.take(slice(0, 64)), test=digits.test.take(slice(0, 64)))
    o = OneShot(epochs=1, min_width=0.5, n_random=1, final_init="scratch", lr=0.05)
    s = Settings(delta=0.1, max_iterations=3, **dict(FAST, finetune_steps=5))  # finetune_steps: ignored
    calls = []

    def measure_then_die(archs):
        calls.append(archs)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return [mac_latency(a) for a in archs]

    out = tmp_path / "run"
    with pytest.raises(KeyboardInterrupt):
        run_prune(deploy, small, "0.75x", mac_latency, out, s, measure_then_die, final_steps=3, oneshot=o,
                  label="v2", progress=False)
    cached = list((tmp_path / "runs" / "supernets").glob("*/checkpoint.pt"))
    assert len(cached) == 1 and list(read_history(out)["iteration"]) == [0, 1]
    slim = json.loads((cached[0].parent / "settings.json").read_text())
    assert slim["lr"] == 0.05 and slim["classifier_lr"] == "auto" and 0 < slim["classifier_lr_factor"] < 0.2
    stamp = cached[0].stat().st_mtime_ns
    result = run_prune(deploy, small, "0.75x", mac_latency, out, s, lambda a: [mac_latency(x) for x in a],
                       final_steps=3, oneshot=o, label="v2", compare=("mobilenet_v2", 0.35), progress=False)
    assert cached[0].stat().st_mtime_ns == stamp  # resumed from the cache, not retrained
    assert result["method"] == "oneshot" and result["final_init"] == "scratch" and result["total_steps"] == 3
    steps = len(small.train) // 128  # one epoch of the supernet recipe's batch 128
    assert result["start"]["steps"] == steps and result["start"]["subnet_passes"] == 3 * steps
    sl = slimming(deploy, "v2", o)
    hist = read_history(out)
    assert list(hist["iteration"]) == list(range(len(hist))) and len(hist) >= 2
    for a in hist["arch"]:
        arch = ArchConfig.from_string(a)
        sl.check(arch)
        assert all(sl.floor(u) <= channels(arch, u) for u in units(deploy))
    assert not pd.read_csv(out / "proposals.csv")["val_acc"].isna().any()
    kept = load_checkpoint(out / "iters" / "iter_001.pt")
    start = load_checkpoint(out / "iters" / "iter_000.pt")
    # a kept network carries the first channels of the slimmable weights: its conv weights are slices of the start's
    for name, t in kept.state_dict().items():
        if name.endswith("conv_pw.weight") or name.endswith("conv_pwl.weight"):
            full = start.state_dict()[name]
            assert full[tuple(slice(0, n) for n in t.shape)].equal(t), name
    table = pd.read_csv(out / "compare.csv")
    assert set(table["steps"]) == {3} and len(table) == 3


@pytest.mark.parametrize("args, message", [
    (["method=magic"], "method='magic' is invalid: use one of surgery, oneshot"),
    (["method=oneshot", "final_init=warm"], "final_init='warm' is invalid: use one of finetune, scratch"),
    (["method=oneshot", "slim_min_width=0"], "slim_min_width=0.0 is invalid"),
    (["method=oneshot", "slim_lr=-0.1"], "slim_lr=-0.1 is invalid: use a positive learning rate"),
    (["method=oneshot", "target=0.01x"], "at the slimmable network's narrowest widths"),
])
def test_cli_bad_oneshot_options_are_one_line_exit_2(args, message, tmp_path):
    r = subprocess.run([sys.executable, "-m", "mnas.prune", "device=pixel", *args, f"out_dir={tmp_path / 'run'}"],
                       capture_output=True, text=True, cwd=ROOT)
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and message in r.stderr, r.stderr
    assert not (tmp_path / "run").exists()


def test_the_width_baseline_matches_the_measured_latency_when_there_is_one(tmp_path):
    """On a measured device the width multiplier is matched to the pruned network's *measured* latency: a pruned
    network that measures 15% slower than predicted gets a wider baseline than the predicted match, and a resumed
    comparison keeps the width its rows name."""
    from mnas.prune.run import matching_width, measured_width, width_of_rows
    start = get_model("mobilenet_v2", 1.0, 224)
    pruned = get_model("mobilenet_v2", 0.6, 224).replace(num_classes=start.num_classes)
    w0 = matching_width("mobilenet_v2", 1.0, start, mac_latency(pruned), mac_latency)
    w = measured_width("mobilenet_v2", 1.0, start, pruned, w0,  # the pruned network is timed 15% slower
                       lambda archs: [mac_latency(a) * (1.15 if a is pruned else 1.0) for a in archs], tmp_path)
    table = pd.read_csv(tmp_path / "width_match.csv")
    assert table["network"].iloc[0] == "pruned" and len(table) >= 4
    assert w > w0 and mac_latency(get_model("mobilenet_v2", w, 224)) > mac_latency(pruned)
    chosen = table[table["width"] == w]["minus_pruned_ms"].abs().item()
    assert chosen == table["minus_pruned_ms"].iloc[1:].abs().min()
    rows = [{"network": "pruned"}, {"network": "unpruned mobilenet_v2 x1"}, {"network": "mobilenet_v2 x0.705"}]
    assert width_of_rows(rows, "mobilenet_v2") == 0.705 and width_of_rows(rows[:2], "mobilenet_v2") is None
