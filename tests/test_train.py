"""Tests for mnas.train: a short fit learns, checkpoints round-trip and refuse pickled code, run_train and the CLI."""
import csv
import os
import subprocess
import sys

import pytest
import torch
import yaml

from mnas import data, train
from mnas.errors import UserError
from mnas.nn.arch import ArchConfig
from mnas.nn.models import build, get_model
from mnas.nn.proxy import proxy_arch
from mnas.prune.settings import Settings

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def trained(digits):
    """mobilenet_v1 x0.25 after 2 epochs of 20 steps on digits at 32x32, and its (accuracy, loss) on the training
    set before training."""
    torch.manual_seed(0)
    model = build(get_model("mobilenet_v1", 0.25, num_classes=digits.num_classes))
    before = train.evaluate(model, digits.train)
    metrics = train.fit(model, digits, epochs=3, batch_size=64, lr=0.2, augment=False, max_steps=40, progress=False)
    return model, before, metrics


def test_fit_learns_digits(digits, trained):
    model, (acc_before, loss_before), metrics = trained
    acc_after, loss_after = train.evaluate(model, digits.train)
    assert loss_after < loss_before - 0.5 and acc_after > acc_before + 0.2
    assert metrics["val_acc"] > 0.3  # chance is 0.1
    assert metrics["steps"] == 40 and len(metrics["epochs"]) == 2 and len(metrics["train_loss"]) == 2
    assert metrics["img_per_s"] > 0 and metrics["epochs"][-1]["epoch"] == 2


def test_steps_beyond_one_epoch_are_all_run(digits):
    """max_steps with epochs=None runs every step, over as many epochs as needed (one epoch once capped
    NetAdapt's from-scratch references at 781 of 1160 steps); NetAdapt's Settings.fit asks for exactly that."""
    per_epoch = len(digits.train) // 64  # full batches (the last partial one is dropped)
    model = build(get_model("mobilenet_v1", 0.25, num_classes=digits.num_classes))
    m = train.fit(model, digits, epochs=None, batch_size=64, max_steps=2 * per_epoch + 3, augment=False,
                  progress=False)
    assert m["steps"] == 2 * per_epoch + 3 and len(m["epochs"]) == 3
    assert Settings(batch_size=64).fit(model, digits, per_epoch + 1)["steps"] == per_epoch + 1
    assert train.fit(model, digits, batch_size=64, max_steps=per_epoch + 1, progress=False)["steps"] == per_epoch
    with pytest.raises(UserError, match="epochs=null needs max_steps"):
        train.fit(model, digits, epochs=None, max_steps=None)


def test_device_choice_and_refusals():
    """auto picks the GPU only when PyTorch sees one; a GPU asked for where there is none, or an unknown device,
    is one line naming what is accepted."""
    assert train.pick_device().type == ("cuda" if torch.cuda.is_available() else "cpu")
    assert train.pick_device("auto") == train.pick_device(None)
    assert train.pick_device("cpu") == torch.device("cpu")
    if not torch.cuda.is_available():
        with pytest.raises(UserError, match="asked for a GPU, but PyTorch sees none"):
            train.pick_device("cuda")
    for bad in ("tpu", "meta", 3.5):
        with pytest.raises(UserError, match="use auto, cpu or cuda"):
            train.pick_device(bad)


def test_fit_trains_on_the_device_asked_and_returns_the_model_where_it_was(digits):
    model = build(get_model("mobilenet_v1", 0.25, num_classes=digits.num_classes))
    m = train.fit(model, digits, batch_size=64, max_steps=2, augment=False, progress=False, device="cpu")
    assert m["steps"] == 2 and train.device_of(model) == torch.device("cpu")


def test_progress_in_a_log_file_is_a_line_per_tenth(digits, capsys):
    """Off a terminal (stderr is captured here) the bar is replaced by 10 plain lines, the last at the final step."""
    model = build(get_model("mobilenet_v1", 0.25, num_classes=digits.num_classes))
    train.fit(model, digits, epochs=1, batch_size=32, max_steps=20, augment=False, progress=True)
    lines = [x for x in capsys.readouterr().out.splitlines() if x.startswith("train: step")]
    assert len(lines) == 10 and lines[0].startswith("train: step 2/20 (10%)") and "step 20/20 (100%)" in lines[-1]
    train.fit(model, digits, epochs=1, batch_size=32, max_steps=4, augment=False, progress=False)
    assert "train: step" not in capsys.readouterr().out


def test_lr_schedule_warms_up_then_decays():
    lrs = [train.lr_at(s, 100, 1.0, 10) for s in range(100)]
    assert lrs[0] == pytest.approx(0.1) and lrs[9] == pytest.approx(1.0)
    assert all(a >= b for a, b in zip(lrs[9:], lrs[10:])) and lrs[-1] < 0.01


def test_recalibrate_bn_re_estimates_statistics(digits):
    model = build(get_model("mobilenet_v1", 0.25, num_classes=10)).eval()
    bn = model.stem.bn1
    assert torch.all(bn.running_var == 1)
    train.recalibrate_bn(model, digits.train, images=256)
    assert not torch.all(bn.running_var == 1) and bn.momentum == 0.1 and not model.training
    assert bn.num_batches_tracked == 2


def test_evaluation_runs_channels_last_with_the_same_results(digits, trained):
    """evaluate and recalibrate_bn run in channels_last (faster on CPU) unless asked not to; the figures are those
    of the contiguous layout up to float rounding."""
    model, _, _ = trained
    ref = build(model.arch)
    ref.load_state_dict(model.state_dict())
    layouts = []  # the memory layout of the stem's output, as each call ran it
    ref.stem.register_forward_hook(
        lambda m, i, out: layouts.append(out.is_contiguous(memory_format=torch.channels_last)))
    train.recalibrate_bn(ref, digits.train, images=256, channels_last=False)
    acc0, loss0 = train.evaluate(ref, digits.val, channels_last=False)
    assert layouts and not any(layouts)
    layouts.clear()
    train.recalibrate_bn(ref, digits.train, images=256)
    acc1, loss1 = train.evaluate(ref, digits.val)
    assert layouts and all(layouts)
    assert abs(acc1 - acc0) <= 1 / len(digits.val) and loss1 == pytest.approx(loss0, rel=1e-4)


def test_bad_optimizer(digits):
    with pytest.raises(UserError, match="sgd, rmsprop"):
        train.fit(build(get_model("mobilenet_v1", 0.25, num_classes=10)), digits, optimizer="adam")


def test_checkpoint_round_trip(tmp_path, digits, trained):
    model = trained[0].eval()
    path = tmp_path / "ckpt.pt"
    train.save_checkpoint(str(path), model, {"val_acc": torch.tensor(0.5).item(), "rows": [{"a": 1}]})
    raw = torch.load(path, weights_only=True)
    assert isinstance(raw["arch"], str) and raw["metrics"]["rows"] == [{"a": 1}]
    loaded = train.load_checkpoint(str(path))
    assert loaded.arch == model.arch and not loaded.training
    loaded.to(memory_format=torch.channels_last)  # as fit() left the original: same kernels, same bits
    x, _ = next(iter(data.batches(digits.val, 16, 32)))
    with torch.inference_mode():
        assert torch.equal(loaded(x), model(x))


class Payload:
    def __reduce__(self):
        return (os.system, ("echo pwned",))


def test_checkpoint_with_pickled_code_is_refused(tmp_path):
    path = tmp_path / "evil.pt"
    model = build(get_model("mobilenet_v3_small", 0.25, num_classes=10))
    torch.save({"state_dict": model.state_dict(), "arch": model.arch.to_json(), "metrics": Payload()}, path)
    with pytest.raises(UserError, match=r"not an mnas checkpoint: .*evil.pt holds pickled code .*system") as e:
        train.load_checkpoint(str(path))
    assert "\n" not in str(e.value)


def test_corrupt_and_missing_checkpoint(tmp_path):
    path = tmp_path / "bad.pt"
    path.write_bytes(b"PK\x03\x04 this is no checkpoint")
    with pytest.raises(UserError, match="not an mnas checkpoint: .*bad.pt"):
        train.load_checkpoint(str(path))
    torch.save({"weights": 1}, path)
    with pytest.raises(UserError, match="not an mnas checkpoint: .*'arch'"):
        train.load_checkpoint(str(path))
    with pytest.raises(UserError, match="checkpoint not found"):
        train.load_checkpoint(str(tmp_path / "none.pt"))


def test_run_train_writes_run_dir(tmp_path, capsys):
    out = tmp_path / "run"
    metrics = train.run_train(model="mobilenet_v1", width=0.25, data="digits", batch_size=64, max_steps=3,
                              out_dir=str(out), progress=False)
    assert sorted(os.listdir(out)) == ["arch.json", "checkpoint.pt", "config.yaml", "metrics.csv"]
    config = yaml.safe_load((out / "config.yaml").read_text())
    assert config["model"] == "mobilenet_v1" and config["max_steps"] == 3 and config["out_dir"] == str(out)
    rows = list(csv.DictReader((out / "metrics.csv").open()))
    assert len(rows) == 1 and list(rows[0]) == train.COLUMNS and 0 <= float(rows[0]["val_acc"]) <= 1
    model = train.load_checkpoint(str(out / "checkpoint.pt"))
    assert model.arch.num_classes == 10 and model.arch.resolution == 224
    deploy = ArchConfig.from_json((out / "arch.json").read_text())  # the arch it ships as; trained as its proxy
    assert model.arch == proxy_arch(deploy, 10) and model.arch != deploy
    assert metrics["steps"] == 3 and "val_acc" in capsys.readouterr().out


def test_run_train_rejects_bad_input():
    with pytest.raises(UserError, match="width"):
        train.run_train(model="mobilenet_v2", width=0, data="digits")
    with pytest.raises(UserError, match="resolution"):
        train.run_train(model="mobilenet_v2", resolution=16, data="digits")
    with pytest.raises(UserError, match="apt-get"):
        train.run_train(model="mobilenet_v2", data="fashion_mnist", data_root="/nonexistent")


def cli(*args):
    return subprocess.run([sys.executable, "-m", "mnas.train", *args], cwd=ROOT, capture_output=True, text=True,
                          env=dict(os.environ, PYTHONPATH=ROOT), timeout=300)


def test_cli_trains_digits(tmp_path):
    r = cli("model=mobilenet_v1", "width=0.25", "data=digits", "max_steps=2", "threads=1", f"out_dir={tmp_path}")
    assert r.returncode == 0, r.stderr
    assert sorted(os.listdir(tmp_path)) == ["arch.json", "checkpoint.pt", "config.yaml", "metrics.csv"]
    assert yaml.safe_load((tmp_path / "config.yaml").read_text())["data"] == "digits"


def test_cli_unknown_model_is_one_line_exit_2():
    r = cli("model=nope")
    assert r.returncode == 2
    assert r.stderr.strip().count("\n") == 0 and r.stderr.startswith("error: unknown model 'nope'")
    assert "mobilenet_v2" in r.stderr and "mobilenet_v3_small" in r.stderr
