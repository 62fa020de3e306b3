"""Supernet: sub-networks equal their extracted models, training learns, kill-and-resume is exact,
estimator=supernet drives a search, the CLI trains and resumes (tiny space, digits, 32x32)."""
import dataclasses
import json
import random
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import torch
from conftest import randomise_state

from mnas.data import load
from mnas.errors import UserError
from mnas.nn.arch import ArchConfig
from mnas.nn.models import build, get_model
from mnas.nn.space import load_space
from mnas.nn.stats import count
from mnas.search.estimators import make_estimator
from mnas.search.study import SearchSettings, run_search
from mnas.supernet import Supernet, SupernetSettings, train_supernet
from mnas.supernet.train import cache_dir

# Stride 16 in all, so the proxy rule sets the stem's stride to 1; expand 1 makes depthwise-separable blocks;
# kernels 3/5/7 exercise the kernel transforms; stage 2 has stride 1 (a residual can cross the stage boundary);
# the stem's, head's and hidden layer's widths are choices (sliced like the stages' widths).
TINY = """
name: tiny
resolution: 64
num_classes: 10
stem: {kernel: 3, stride: 2, out: [4, 8], act: hswish}
block: {kernel: [3, 5, 7], expand: [1, 3], se: [false, true], act: [relu, hswish]}
stages:
  - {depth: [1, 2], out: [8, 16], stride: 2}
  - {depth: [1, 2], out: [16, 24], stride: 1}
  - {depth: [1, 2], out: [24, 32], stride: 2}
  - {depth: [1], out: [32, 40], stride: 2}
head: {out: [40, 48], act: hswish}
hidden: {out: [24, 32], act: hswish}
dropout: 0.1
"""
FAST = dict(batch_size=64, lr=0.4, label_smoothing=0.0, n_random=1, augment=False, max_stride=16)  # 16: cheaper


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def space(tmp_path_factory):
    p = tmp_path_factory.mktemp("space") / "tiny.yaml"
    p.write_text(TINY)
    return load_space(str(p))


@pytest.fixture(scope="module")
def digits():
    return load("digits", val_size=0.2)


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    return tmp_path_factory.mktemp("supernets")


@pytest.fixture(scope="module")
def trained(space, digits, cache):
    """A supernet trained 3 epochs (51 steps), in the cache where the estimator below finds it."""
    s = SupernetSettings(epochs=3, **FAST)
    net, info = train_supernet(space, digits, s, cache_dir(space, digits, s, cache), progress=False)
    return net, info


def test_subnets_equal_their_extracted_models(space):
    torch.manual_seed(0)
    net = Supernet(space, num_classes=10)
    randomise_state(net)
    net.eval()
    x = torch.randn(3, 3, 32, 32)
    rng = random.Random(0)
    archs = [space.extreme(True), space.extreme(False)] + [space.random_arch(rng) for _ in range(25)]
    assert {b.type for a in archs for b in a.blocks} == {"ds", "ir"}
    assert {(a.stem.out, a.features, a.hidden) for a in archs} >= {(4, 40, 24), (8, 48, 32), (4, 48, 24)}
    for arch in archs:
        net.set_active(arch)
        with torch.no_grad():
            y_net = net(x)
            model = net.extract(arch)
            diff = (y_net - model(x)).abs().max().item()
        assert diff < 1e-5, (diff, arch.to_string())
        assert model.arch.blocks[0].stride == 2 and model.arch.stem.stride == 1  # the proxy rule
        build(arch.replace(num_classes=10)).load_state_dict(model.state_dict())  # deployment shapes match
    assert count(model.arch).params == sum(p.numel() for p in model.parameters())


def test_archs_outside_the_space_are_refused(space):
    net = Supernet(space, num_classes=10)
    with pytest.raises(UserError, match="not in search space 'tiny'"):
        net.set_active(get_model("mobilenet_v3_small", num_classes=10))
    arch = space.extreme(False)
    wide = arch.replace(blocks=arch.blocks[:-1] + (dataclasses.replace(arch.blocks[-1], out=64),))
    with pytest.raises(UserError, match="not in search space"):
        net.set_active(wide)
    for odd in (arch.replace(hidden=28), arch.replace(head=(dataclasses.replace(arch.head[0], out=44),))):
        with pytest.raises(UserError, match="not in search space"):  # widths between the choices
            net.set_active(odd)


def test_supernet_learns(space, digits, trained, cache):
    net, info = trained
    assert info["complete"] and info["step"] == info["total"] == 3 * (len(digits.train) // 64)
    log = pd.read_csv(cache_dir(space, digits, SupernetSettings(epochs=3, **FAST), cache) / "log.csv")
    assert log["loss_largest"].notna().all() and log["loss_largest"].iloc[-1] < log["loss_largest"].iloc[0] - 0.3
    est = make_estimator("supernet", digits, space=space, epochs=3, cache_dir=cache, val_images=200, **FAST)
    assert est.supernet.state_dict()["classifier.fc.weight"].equal(net.state_dict()["classifier.fc.weight"])
    assert est(space.extreme(True)) > 0.25  # chance is 0.1


def test_kill_and_resume_is_exact(space, digits, tmp_path):
    small = load("digits", val_size=0.2, train_subset=128)
    s = SupernetSettings(epochs=2, **dict(FAST, batch_size=32, augment=True))  # 4 steps per epoch, stop mid-epoch
    whole, info = train_supernet(space, small, s, tmp_path / "whole", progress=False)
    part, info_part = train_supernet(space, small, s, tmp_path / "killed", max_steps=3, progress=False)
    assert info_part["step"] == 3 and not info_part["complete"]
    resumed, info_resumed = train_supernet(space, small, s, tmp_path / "killed", progress=False)
    assert info_resumed["step"] == info["step"] == 8 and info_resumed["complete"]
    a, b = whole.state_dict(), resumed.state_dict()
    assert all(a[k].equal(b[k]) for k in a)
    torch.manual_seed(s.seed)
    assert not Supernet(space, 10).state_dict()["classifier.fc.weight"].equal(a["classifier.fc.weight"])
    with pytest.raises(UserError, match="another schedule"):
        train_supernet(space, small, dataclasses.replace(s, epochs=3), tmp_path / "killed", progress=False)


def test_search_with_supernet_estimator(space, digits, trained, cache, tmp_path):
    est = make_estimator("supernet", digits, space=space, epochs=3, cache_dir=cache, val_images=200, **FAST)
    latency = lambda arch: count(arch).macs / 1e6  # noqa: E731
    budget = sorted(latency(space.random_arch(random.Random(i))) for i in range(30))[24]
    best = run_search(space, latency, est, SearchSettings(budget_ms=budget, sampler="random", n_trials=5),
                      tmp_path, progress=False)
    trials = pd.read_csv(tmp_path / "trials.csv")
    assert (trials["state"] == "COMPLETE").sum() == 5 and best["latency_ms"] <= budget
    assert 0 < best["accuracy"] <= 1 and best["accuracy"] == est(ArchConfig.from_string(best["arch"]))


def test_cli_trains_and_resumes(tmp_path):
    path = tmp_path / "tiny.yaml"
    path.write_text(TINY)
    args = [sys.executable, "-m", "mnas.supernet", f"space.name={path}", "data=digits", "data.train_subset=256",
            "epochs=1", "batch_size=64", "n_random=1", "max_stride=16", f"cache_dir={tmp_path}", "threads=1"]
    out = subprocess.run(args + ["max_steps=2"], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "stopped at step 2/4" in out.stdout
    out = subprocess.run(args, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "largest sub-network: val_acc" in out.stdout and "python -m mnas.search estimator=supernet" in out.stdout


def test_unknown_option_is_one_clear_error(digits, space):
    with pytest.raises(UserError, match="unknown supernet option.*bogus.*allowed epochs"):
        make_estimator("supernet", digits, space=space, bogus=1)


def test_same_seed_and_cached_supernet_give_the_same_search(space, digits, trained, cache, tmp_path):
    """Determinism: two searches (fresh estimators, as two processes would build) agree trial by trial."""
    latency = lambda arch: count(arch).macs / 1e6  # noqa: E731
    budget = sorted(latency(space.random_arch(random.Random(i))) for i in range(30))[24]
    runs = []
    for name in ("a", "b"):
        est = make_estimator("supernet", digits, space=space, epochs=3, cache_dir=cache, val_images=200, **FAST)
        s = SearchSettings(budget_ms=budget, sampler="tpe", n_trials=6, n_startup_trials=3, seed=7)
        runs.append((run_search(space, latency, est, s, tmp_path / name, progress=False),
                     pd.read_csv(tmp_path / name / "trials.csv")))
    (best_a, trials_a), (best_b, trials_b) = runs
    for best, name in ((best_a, "a"), (best_b, "b")):  # the compare command names its own run directory
        check = best["recommendation"].pop("check")
        assert check is None or f"run={tmp_path / name} " in check
    assert best_a == best_b
    cols = ["arch", "accuracy", "latency_ms", "state"]
    pd.testing.assert_frame_equal(trials_a[cols], trials_b[cols])


def test_sandwich_without_the_smallest(space, digits, tmp_path):
    """smallest=false trains the largest and random sub-networks only (a new cache entry; the default's key is
    unchanged by the option's existence); with no random ones left it is refused in one line."""
    from mnas.supernet.train import sandwich, settings_key
    big, small = space.extreme(largest=True), space.extreme(largest=False)
    assert sandwich(space, 5, 2, 0, big, small)[:2] == [big, small]
    without = sandwich(space, 5, 2, 0, big)
    assert without[0] == big and without[1:] == sandwich(space, 5, 2, 0, big, small)[2:]
    assert "smallest" not in settings_key(SupernetSettings(smallest=True))
    assert not settings_key(SupernetSettings(smallest=False))["smallest"]
    s = SupernetSettings(epochs=1, **dict(FAST, n_random=2), smallest=False)
    sandwiched = dataclasses.replace(s, smallest=True)
    assert cache_dir(space, digits, s, tmp_path) != cache_dir(space, digits, sandwiched, tmp_path)
    net, info = train_supernet(space, digits, s, tmp_path / "s", max_steps=2, progress=False)
    assert info["step"] == 2 and pd.read_csv(tmp_path / "s" / "log.csv")["loss_others"].gt(0).all()
    with pytest.raises(UserError, match="smallest=false with n_random=0"):
        SupernetSettings(smallest=False, n_random=0)


def test_finetuned_estimates(space, digits, trained, cache):
    """finetune_steps > 0 trains a copy of each sub-network before scoring: the supernet's weights stay as they
    were, the score is deterministic (a second estimator agrees), it differs from the plain estimate, and the
    same cache entry serves both (fine-tuning is an evaluation option, not a training one)."""
    assert trained[1]["complete"]
    kw = {"space": space, "epochs": 3, "cache_dir": cache, "val_images": 200, **FAST}
    plain = make_estimator("supernet", digits, **kw)
    tuned = make_estimator("supernet", digits, finetune_steps=5, finetune_lr=0.05, finetune_batch=32, **kw)
    before = {k: v.clone() for k, v in tuned.supernet.state_dict().items()}
    arch = space.random_arch(random.Random(3))
    a = tuned(arch)
    assert all(v.equal(before[k]) for k, v in tuned.supernet.state_dict().items())
    assert a == make_estimator("supernet", digits, finetune_steps=5, finetune_lr=0.05, finetune_batch=32, **kw)(arch)
    assert a != plain(arch) and 0.0 <= a <= 1.0
    with pytest.raises(UserError, match="finetune_steps=-1"):
        make_estimator("supernet", digits, finetune_steps=-1, **kw)


def test_search_cli_with_the_supernet_estimator(tmp_path):
    """The main command's path: Hydra's estimator group (every key of conf/estimator/supernet.yaml, fine-tune
    options included) reaches the supernet estimator, which trains, caches and scores a short search."""
    path = tmp_path / "tiny.yaml"
    path.write_text(TINY)
    args = [sys.executable, "-m", "mnas.search", "device=pixel", "budget=1000ms", f"space.name={path}", "data=digits",
            "data.train_subset=256", "estimator.epochs=1", "estimator.batch_size=64", "estimator.n_random=1",
            "estimator.max_stride=16", "estimator.val_images=100", "estimator.calib_images=64", "estimator.threads=1",
            f"estimator.cache_dir={tmp_path / 'cache'}", "estimator.finetune_steps=2", "sampler=random",
            "n_trials=2", "pipeline.enabled=false", f"out_dir={tmp_path / 'run'}"]
    out = subprocess.run(args, capture_output=True, text=True, timeout=300, check=False)
    assert out.returncode == 0, out.stderr
    trials = pd.read_csv(tmp_path / "run" / "trials.csv")
    assert (trials["state"] == "COMPLETE").sum() == 2 and trials["accuracy"].between(0, 1).all()
    assert len(list((tmp_path / "cache").glob("*/log.csv"))) == 1


def test_bf16_precision(space, tmp_path):
    """precision=bf16 runs the forward passes under bfloat16 autocast: a new cache entry (fp32's key is unchanged
    by the option's existence), finite losses, fp32 weights that differ from an fp32 run of the same steps (the
    autocast took effect); an unknown precision is one clear line."""
    from mnas.supernet.train import settings_key
    assert "precision" not in settings_key(SupernetSettings())
    small = load("digits", val_size=0.2, train_subset=128)
    s = SupernetSettings(epochs=1, **dict(FAST, batch_size=32), precision="bf16")
    fp32 = dataclasses.replace(s, precision="fp32")
    assert cache_dir(space, small, s, tmp_path) != cache_dir(space, small, fp32, tmp_path)
    half, info = train_supernet(space, small, s, tmp_path / "bf16", max_steps=3, checkpoint_every=1, progress=False)
    full, _ = train_supernet(space, small, fp32, tmp_path / "fp32", max_steps=3, checkpoint_every=1, progress=False)
    log = pd.read_csv(tmp_path / "bf16" / "log.csv")
    assert info["step"] == 3 and len(log) == 3 and log[["loss_largest", "loss_others"]].notna().all().all()
    a, b = half.state_dict(), full.state_dict()
    assert all(t.dtype == torch.float32 for t in a.values() if t.is_floating_point())
    assert not a["classifier.fc.weight"].equal(b["classifier.fc.weight"])
    with pytest.raises(UserError, match="precision='fp16' is invalid: use one of fp32, bf16"):
        SupernetSettings(precision="fp16")


def test_speed_benchmark(space, tmp_path):
    """mnas.bench.supernet_speed times each precision x memory format and writes speed.csv and speed.png; the
    same seed gives the same first losses in fp32 whatever the memory format."""
    from mnas.bench.supernet_speed import run
    df = run(space, steps=1, warmup=0, batch_size=8, n_random=1, out_dir=tmp_path)
    assert list(zip(df.precision, df.memory_format)) == [("fp32", "channels_last"), ("fp32", "contiguous"),
                                                         ("bf16", "channels_last"), ("bf16", "contiguous")]
    assert (df.subnet_img_per_s > 0).all() and df.speedup.iloc[0] == 1.0 and (df.subnets_per_step == 2).all()
    assert df.loss_largest.iloc[0] == pytest.approx(df.loss_largest.iloc[1], rel=1e-4)
    assert (tmp_path / "speed.csv").exists() and (tmp_path / "speed.png").stat().st_size > 1000
    with pytest.raises(UserError, match="unknown memory format"):
        run(space, steps=1, formats=("nhwc",), out_dir=tmp_path)


def test_settings_defaults_are_the_configs():
    """SupernetSettings() is the supernet the CLI trains by default (conf/estimator/supernet.yaml): code that builds
    an estimator without the config must not train (and cache) another one."""
    import yaml
    conf = yaml.safe_load((Path(__file__).parents[1] / "conf" / "estimator" / "supernet.yaml").read_text())
    s = SupernetSettings()
    for k, v in dataclasses.asdict(s).items():
        if k in conf:
            assert conf[k] == v, k


def test_supernet_seed_trains_another_supernet_scored_on_the_same_images(space, digits, cache):
    """supernet_seed (rank_check's estimator_seeds) changes only the supernet's training seed: another cached
    supernet, other weights, the same calibration and validation images."""
    a = make_estimator("supernet", digits, space=space, epochs=1, cache_dir=cache, val_images=200, **FAST)
    b = make_estimator("supernet", digits, space=space, epochs=1, cache_dir=cache, val_images=200, supernet_seed=1,
                       **FAST)
    assert (a.settings.seed, b.settings.seed) == (0, 1)
    assert cache_dir(space, digits, a.settings, cache) != cache_dir(space, digits, b.settings, cache)
    assert all(x.equal(y) for x, y in zip(a.calib, b.calib)) and len(a.calib) == len(b.calib)
    assert all(x.equal(y) and p.equal(q) for (x, p), (y, q) in zip(a.val, b.val))
    w = "classifier.fc.weight"
    assert not a.supernet.state_dict()[w].equal(b.supernet.state_dict()[w])


def test_slimmings_of_a_found_arch_run_on_the_supernet(space, digits, trained, tmp_path, monkeypatch):
    """The pipeline's one-shot pruning: slimmings of an arch of the space (widths between the space's choices)
    are sub-networks of the search supernet, and NetAdapt prunes with them without training anything."""
    from mnas.nn.units import channels, resize, units
    from mnas.prune.oneshot import OneShot
    from mnas.prune.run import run_prune
    from mnas.prune.settings import Settings

    net, _ = trained
    arch = space.extreme(True)
    slim = net.slimmings(arch, min_width=0.5)
    whole = net.extract(arch)
    u = next(u for u in units(arch) if channels(arch, u) >= 24)
    cut = resize(arch, u, channels(arch, u) - 8)
    model = slim.extract(cut)
    assert model.arch.blocks == tuple(dataclasses.replace(b, stride=p.stride) for b, p in
                                      zip(cut.blocks, whole.arch.blocks))
    for name, t in model.state_dict().items():  # the first channels of the found arch's own weights
        assert whole.state_dict()[name][tuple(slice(0, n) for n in t.shape)].equal(t), name
    with pytest.raises(UserError, match="not a slimming"):
        slim.extract(resize(arch, u, channels(arch, u) + 8))
    monkeypatch.chdir(tmp_path)
    small = dataclasses.replace(digits, val=digits.val.take(slice(0, 64)), test=digits.test.take(slice(0, 64)))
    s = Settings(delta=0.1, max_iterations=2, batch_size=32, eval_images=64, threads=1)
    macs = lambda a: count(a).macs / 1e6  # noqa: E731
    result = run_prune(arch, small, "0.9x", macs, tmp_path / "prune", s, final_steps=2, max_stride=16,
                       oneshot=OneShot(min_width=0.5, final_init="finetune"), slimmable=slim, progress=False)
    assert result["method"] == "oneshot" and result["start"]["source"] == "given slimmable network"
    assert not (tmp_path / "runs").exists()  # nothing trained
    slim.slimming.check(ArchConfig.from_string(result["final"]["arch"]))


def test_a_slimming_between_the_choices_is_scored_like_the_trials(space, digits, trained, cache):
    """Estimator.score_slimming, how the search scores a hand design between the space's widths (a width
    multiplier filling the budget): the start arch itself scores exactly its trial estimate (the same
    sub-network, BatchNorm images and validation images), a slimming of it another accuracy, deterministically;
    an arch wider than the start, a start outside the space, or a fine-tuning estimator give None."""
    from mnas.nn.units import channels, resize, units

    assert trained[1]["complete"]
    kw = {"space": space, "epochs": 3, "cache_dir": cache, "val_images": 200, **FAST}
    est = make_estimator("supernet", digits, **kw)
    wide = space.extreme(True)
    assert est.score_slimming(wide, wide) == est(wide)
    u = next(u for u in units(wide) if channels(wide, u) >= 24)
    cut = resize(wide, u, channels(wide, u) - 8)
    assert space.params_for(cut) is None  # between the choices: not a trial the study could run
    score = est.score_slimming(cut, wide)
    assert 0 <= score <= 1 and score != est(wide) and score == est.score_slimming(cut, wide)
    assert est.score_slimming(resize(wide, u, channels(wide, u) + 8), wide) is None
    assert est.score_slimming(cut, cut) is None  # the start must be an arch of the space
    tuned = make_estimator("supernet", digits, finetune_steps=2, finetune_batch=32, **kw)
    assert tuned.score_slimming(cut, wide) is None


def test_the_main_commands_pipeline_prunes_a_supernet_search_one_shot(space, digits, trained, cache, tmp_path,
                                                                      monkeypatch, capsys):
    """pipeline.prune_method=auto (the default): after a search scored by the supernet, NetAdapt's proposals are
    slimmings of that supernet (method oneshot, nothing trained for them); the pruned arch meets the target. When
    the search recommended a hand design, the pipeline's last line says that its export is the find's, and how
    to train the recommended one."""
    import json

    from mnas.pipeline import PipelineSettings, run_pipeline
    from mnas.search.study import SearchSettings, run_search

    monkeypatch.chdir(tmp_path)
    est = make_estimator("supernet", digits, space=space, epochs=3, cache_dir=cache, val_images=200, **FAST)
    macs = lambda a: count(a).macs / 1e6  # noqa: E731
    best = run_search(space, macs, est, SearchSettings(budget_ms=1000, sampler="random", n_trials=3), tmp_path / "run",
                      progress=False)
    p = PipelineSettings(finetune_steps=2, prune="0.9x", export=None, batch_size=32, max_stride=16)
    assert p.prune_method == "auto" and p.check("supernet") == "oneshot" and p.check("train") == "surgery"
    assert best["recommendation"]["ship"] == "found"  # no hand design in the tiny space; say the search named one:
    best["recommendation"].update(ship="MobileNetV3-Small 0.88", train="python -m mnas.train model=x width=0.88")
    (tmp_path / "run" / "best.json").write_text(json.dumps(best))
    capsys.readouterr()
    run_pipeline(tmp_path / "run", est, digits, macs, "test", p, progress=False)
    last = capsys.readouterr().out.strip().splitlines()[-1]
    assert last.startswith("note:") and "holds the search's find" in last and last.endswith("model=x width=0.88")
    result = json.loads((tmp_path / "run" / "prune" / "result.json").read_text())
    assert result["method"] == "oneshot" and result["start"]["source"] == "given slimmable network"
    assert result["final"]["latency_ms"] <= 0.9 * best["latency_ms"] + 1e-9
    assert not (tmp_path / "runs").exists()  # no slimmable network trained


def test_teacher_with_random_kernels(space, digits, tmp_path):
    """teacher=random_kernel: the arch that learns the labels is the largest in everything but its kernels, which
    change from step to step; the random sub-networks are the default's; a new cache entry (the default key is
    unchanged by the option's existence); training runs; a bad value or a slimmable network is one clear line."""
    from mnas.supernet.slimmable import Slimming
    from mnas.supernet.train import sandwich, settings_key
    big = space.extreme(largest=True)
    teachers = [sandwich(space, step, 2, 0, big, teacher="random_kernel") for step in range(12)]
    assert all(t[1:] == sandwich(space, step, 2, 0, big)[1:] for step, t in enumerate(teachers))
    for t, *_ in teachers:
        assert [dataclasses.replace(b, kernel=3) for b in t.blocks] == \
            [dataclasses.replace(b, kernel=3) for b in big.blocks] and t.head == big.head
    assert len({tuple(b.kernel for b in t.blocks) for t, *_ in teachers}) > 1
    assert "teacher" not in settings_key(SupernetSettings())
    s = SupernetSettings(epochs=1, **FAST, teacher="random_kernel")
    assert cache_dir(space, digits, s, tmp_path) != cache_dir(space, digits, SupernetSettings(epochs=1, **FAST),
                                                               tmp_path)
    _, info = train_supernet(space, digits, s, tmp_path / "rk", max_steps=2, progress=False)
    assert info["step"] == 2 and pd.read_csv(tmp_path / "rk" / "log.csv")["loss_largest"].notna().all()
    with pytest.raises(UserError, match="teacher='widest' is invalid"):
        SupernetSettings(teacher="widest")
    with pytest.raises(UserError, match="slimmable network has none"):
        train_supernet(Slimming(big, "tiny"), digits, s, tmp_path / "slim", max_steps=1, progress=False)


def test_classifier_lr_scaled_by_the_size_of_its_input(digits, tmp_path):
    """classifier_lr=auto: a MobileNetV2 slimmable network (1280 pooled ReLU6 features into its classifier) gets a
    classifier lr well below the schedule's, a MobileNetV3 one (a hidden layer's small outputs) the schedule's;
    measuring leaves the BatchNorm statistics as they were; the factor is in settings.json and the checkpoint, a
    resumed run keeps it, and the optimizer's classifier group steps at lr x factor."""
    from mnas.supernet.slimmable import Slimmable, Slimming
    from mnas.supernet.train import classifier_lr_factor, settings_key
    from mnas.train import load_state, lr_at
    x = torch.stack([digits.train.images[i] for i in range(32)]).float()
    x = torch.nn.functional.interpolate(x.expand(-1, 3, -1, -1), size=32)  # digits: 1 channel, 8x8
    v2 = Slimmable(Slimming(get_model("mobilenet_v2", 0.35), "v2"), 10)
    before = {k: v.clone() for k, v in v2.state_dict().items()}
    f2 = classifier_lr_factor(v2, v2.slimming.start, x)
    assert 0 < f2 < 0.2 and all(v.equal(before[k]) for k, v in v2.state_dict().items())
    v3 = Slimmable(Slimming(get_model("mobilenet_v3_small", 1.0), "v3"), 10)
    assert classifier_lr_factor(v3, v3.slimming.start, x) == 1.0
    assert "classifier_lr" not in settings_key(SupernetSettings())  # cached supernets keep their keys
    sl = Slimming(get_model("mobilenet_v2", 0.35), "v2", min_width=0.5)
    s = SupernetSettings(epochs=1, **dict(FAST, max_stride=8), smallest=True, classifier_lr="auto")
    _, info = train_supernet(sl, digits, s, tmp_path / "v2", max_steps=2, progress=False)
    factor = json.loads((tmp_path / "v2" / "settings.json").read_text())["classifier_lr_factor"]
    ck = load_state(tmp_path / "v2" / "checkpoint.pt", "test")
    assert 0 < factor < 0.2 and ck["fc_factor"] == factor
    _, info = train_supernet(sl, digits, s, tmp_path / "v2", max_steps=3, progress=False)  # resumed
    ck = load_state(tmp_path / "v2" / "checkpoint.pt", "test")
    groups = ck["optimizer"]["param_groups"]
    assert info["step"] == 3 and ck["fc_factor"] == factor and groups[-1]["lr_scale"] == factor
    assert groups[-1]["lr"] == pytest.approx(groups[0]["lr"] * factor)
    assert groups[0]["lr"] == pytest.approx(lr_at(2, ck["total"], s.lr * s.batch_size / 128, max(1, ck["total"] // 30)))
    with pytest.raises(UserError, match="classifier_lr='big' is invalid"):
        SupernetSettings(classifier_lr="big")
