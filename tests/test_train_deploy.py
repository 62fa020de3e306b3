"""Training the chosen arch for real (issue 30): the deployment network at its own resolution with random-resized
crops, EMA, a saved training state that a killed run continues from exactly, arch= from any run or string, and
an export that says what its weights are for."""
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from mnas import data, train
from mnas.data.sets import resized_crop_flip
from mnas.errors import UserError
from mnas.export import export
from mnas.nn.models import build, get_model
from mnas.rundir import arch_of

ROOT = Path(__file__).resolve().parents[1]
TINY = get_model("mobilenet_v3_small", 0.5, resolution=32, num_classes=10)


pytestmark = pytest.mark.usefixtures("one_thread")


def test_resized_crop_of_the_whole_image_is_the_image_or_its_mirror():
    x = torch.randn(6, 3, 8, 8)
    out = resized_crop_flip(x, 8, torch.Generator().manual_seed(0), scale=(1, 1), ratio=(1, 1))
    for a, b in zip(out, x):
        assert torch.allclose(a, b, atol=1e-5) or torch.allclose(a, b.flip(2), atol=1e-5)


def test_resized_crops_differ_per_image_and_repeat_per_seed():
    x = torch.randn(1, 3, 40, 40).expand(8, -1, -1, -1)
    a = resized_crop_flip(x, 24, torch.Generator().manual_seed(1))
    b = resized_crop_flip(x, 24, torch.Generator().manual_seed(1))
    assert a.shape == (8, 3, 24, 24) and torch.equal(a, b)
    assert len(torch.unique(a.flatten(1), dim=0)) == 8  # one crop per image, not one per batch


def test_rrc_batches_and_bad_augment(digits):
    x, y = next(iter(data.batches(digits.train, 16, 40, shuffle=True, augment="rrc", channels=3)))
    assert x.shape == (16, 3, 40, 40) and len(y) == 16
    with pytest.raises(UserError, match="augment='blur' is invalid"):
        data.batches(digits.train, 16, augment="blur")


def test_evaluation_after_rrc_sees_the_centre_crop():
    """A network trained on random-resized crops is evaluated on the central 7/8 of each side: an image stored at
    8/7 of the resolution gives exactly its centre pixels, unresampled; other recipes see the whole image."""
    img = torch.arange(2 * 16 * 16, dtype=torch.float32).view(2, 1, 16, 16).to(torch.uint8)
    split = data.Split(img, torch.zeros(2, dtype=torch.long), mean=(0.0,), std=(1.0,))
    x, _ = next(iter(data.batches(split, 2, 14, channels=1, crop=train.eval_crop("rrc"))))
    assert torch.equal(x, img[:, :, 1:15, 1:15].float().div(255))
    whole, _ = next(iter(data.batches(split, 2, 16, channels=1, crop=train.eval_crop("crop"))))
    assert torch.equal(whole, img.float().div(255))
    with pytest.raises(UserError, match="crop=0 is invalid"):
        data.batches(split, 2, crop=0)


def test_arch_of_reads_runs_files_and_strings(tmp_path):
    s = TINY.to_string()
    (tmp_path / "search").mkdir()
    (tmp_path / "search" / "best.json").write_text(json.dumps({"arch": s, "accuracy": 0.5}))
    (tmp_path / "train").mkdir()
    (tmp_path / "train" / "arch.json").write_text(TINY.to_json())
    for spec in (tmp_path / "search", tmp_path / "search" / "best.json", tmp_path / "train", s):
        assert arch_of(spec)[0] == TINY
    (tmp_path / "none.json").write_text(json.dumps({"arch": None}))
    for bad, match in ((tmp_path, "neither best.json nor arch.json"), (tmp_path / "none.json", "names no arch"),
                       (tmp_path / "missing/best.json", "not found"), ("nothing", "not found"),
                       ("r224-in3-nonsense", "not a valid arch string")):
        with pytest.raises(UserError, match=match):
            arch_of(bad)


def test_a_resumed_fit_ends_as_the_uninterrupted_one(tmp_path, digits, monkeypatch):
    """The state saved mid-epoch (step 10 of 20 per epoch) is copied aside, as a kill at that moment would leave
    it; a fresh model resumed from it ends with exactly the weights, EMA and rows of the uninterrupted run."""
    opts = dict(epochs=2, batch_size=64, lr=0.2, resolution=32, augment="rrc", ema=0.9, progress=False, seed=3,
                state_every=5)
    real = train.save_state

    def spy(path, state):
        if state["step"] == 10:
            real(tmp_path / "killed.pt", state)
        real(path, state)
    monkeypatch.setattr(train.trainer, "save_state", spy)  # fit looks it up there
    whole = build(TINY, seed=0)
    m1 = train.fit(whole, digits, state_path=tmp_path / "whole.pt", **opts)
    killed = torch.load(tmp_path / "killed.pt", weights_only=True)
    assert len(killed["losses"]) == 10 and killed["step"] % (len(digits.train) // 64) and not killed["rows"]
    resumed = build(TINY, seed=1)  # other initial weights: everything must come from the state
    m2 = train.fit(resumed, digits, state_path=tmp_path / "killed.pt", **opts)
    assert m2["steps"] == m1["steps"] == 2 * (len(digits.train) // 64)
    for (k, a), b in zip(whole.state_dict().items(), resumed.state_dict().values()):
        assert torch.equal(a, b), k
    assert [r["val_acc"] for r in m1["epochs"]] == [r["val_acc"] for r in m2["epochs"]]
    assert m1["train_loss"] == pytest.approx(m2["train_loss"], rel=1e-12)


def test_ema_is_what_is_scored_and_kept(digits):
    plain, averaged = build(TINY, seed=0), build(TINY, seed=0)
    opts = dict(epochs=1, batch_size=64, lr=0.2, resolution=32, progress=False, max_steps=6)
    train.fit(plain, digits, **opts)
    train.fit(averaged, digits, ema=0.5, **opts)
    w = [n for n, p in plain.named_parameters() if p.ndim > 1][0]
    assert not torch.equal(plain.state_dict()[w], averaged.state_dict()[w])
    with pytest.raises(UserError, match="ema=1.5 is invalid"):
        train.fit(build(TINY), digits, ema=1.5, **opts)


def _folder(root: Path, n=12):
    rng = np.random.default_rng(0)
    for c, colour in (("cat", 0), ("dog", 1), ("fox", 2)):
        (root / c).mkdir(parents=True)
        for i in range(n):
            img = rng.integers(0, 60, (48, 40, 3), dtype=np.uint8)
            img[8:40, 8:32, colour] = 200  # each class its colour: learnable in a few steps
            Image.fromarray(img).save(root / c / f"{i}.png")


def test_an_image_folder_decoded_once_to_disk_serves_the_same_batches(tmp_path, monkeypatch):
    """cache_dir: the folder is decoded once into a file and read per batch (views, not copies, for the carved
    splits); the batches equal the in-memory ones; a second load decodes nothing; a changed image makes a new file."""
    import pickle

    from PIL import Image as PILImage

    from mnas.data.sets import DiskImages
    from mnas.supernet.train import fingerprint
    _folder(tmp_path / "images", n=6)
    kw = dict(root=str(tmp_path / "images"), val_size=4, seed=0, image_size=20)
    mem = data.load("imagefolder", **kw)
    disk = data.load("imagefolder", cache_dir=str(tmp_path / "cache"), **kw)
    assert isinstance(disk.train.images, DiskImages) and len(list((tmp_path / "cache").iterdir())) == 1
    for a, b in ((mem.train, disk.train), (mem.val, disk.val), (mem.test, disk.test)):
        every = torch.arange(len(a))
        assert torch.equal(a.images[every], b.images[every]) and torch.equal(a.labels, b.labels)
        assert a.mean == b.mean and a.std == b.std
        for (xa, ya), (xb, yb) in zip(data.batches(a, 4, 16, shuffle=True, augment="rrc", seed=3),
                                      data.batches(b, 4, 16, shuffle=True, augment="rrc", seed=3)):
            assert torch.equal(xa, xb) and torch.equal(ya, yb)
    assert torch.equal(pickle.loads(pickle.dumps(disk.train.images))[torch.arange(3)], mem.train.images[:3])
    monkeypatch.setattr(PILImage, "open", lambda *a: (_ for _ in ()).throw(OSError("decoded again")))
    again = data.load("imagefolder", cache_dir=str(tmp_path / "cache"), **kw)  # nothing decoded
    assert fingerprint(again) == fingerprint(disk)
    monkeypatch.undo()
    Image.fromarray(np.zeros((48, 40, 3), np.uint8)).save(tmp_path / "images" / "cat" / "0.png")
    data.load("imagefolder", cache_dir=str(tmp_path / "cache"), **kw)
    assert len([p for p in (tmp_path / "cache").iterdir() if p.suffix == ".u8"]) == 2


def test_an_unwritable_image_cache_is_one_clear_error(tmp_path):
    _folder(tmp_path / "images", n=2)
    (tmp_path / "afile").write_text("not a folder")
    with pytest.raises(UserError, match="cannot write the decoded images to .*afile.*data.cache_dir=null"):
        data.load("imagefolder", root=str(tmp_path / "images"), val_size=1, image_size=8,
                  cache_dir=str(tmp_path / "afile"))


def test_train_the_found_arch_on_an_image_folder_then_export_it(tmp_path):
    """The journey's last mile on a tiny ImageFolder: a search's best.json -> the deployment network trained at
    its own (given) resolution on the user's classes -> an export that carries task weights at that input size."""
    _folder(tmp_path / "images")
    run = tmp_path / "search"
    run.mkdir()
    (run / "best.json").write_text(json.dumps({"arch": get_model("mobilenet_v3_small", 0.5).to_string()}))
    r = train.run_train(arch=str(run), data="imagefolder", data_root=str(tmp_path / "images"), resolution=48,
                        val_size=6, epochs=2, batch_size=8, lr=0.1, seed=0, out_dir=str(tmp_path / "t"),
                        progress=False, threads=1, accelerator="cpu")
    net = train.load_checkpoint(str(tmp_path / "t" / "checkpoint.pt"))
    assert net.arch.resolution == 48 and net.arch.num_classes == 3 and net.arch.stem.stride == 2  # no proxy strides
    assert net.metrics["trained_as"] == "deployment" and net.metrics["classes"] == ["cat", "dog", "fox"]
    assert 0 <= r["test_acc"] <= 1 and not (tmp_path / "t" / "state.pt").exists()  # finished: state removed
    m = export(tmp_path / "t", tmp_path / "e", formats="onnx")
    assert m["carries"] == "task" and "for shipping" in m["carries_text"]
    assert m["files"]["onnx"]["input_shape"] == [1, 3, 48, 48] and m["num_classes"] == 3
    _an_image_file_through_the_export_is_the_evaluated_image(tmp_path / "images", tmp_path / "e", net)
    proxy = train.run_train(model="mobilenet_v3_small", width=0.5, data="digits", epochs=1, max_steps=2,
                            batch_size=32, out_dir=str(tmp_path / "p"), progress=False, threads=1)
    assert proxy["out_dir"] and export(tmp_path / "p", tmp_path / "pe", formats="json")["carries"] == "proxy"


def _an_image_file_through_the_export_is_the_evaluated_image(images: Path, export_dir: Path, net):
    """export.json names the classes and the preprocessing; prepare_image(file, it) is the image as the trainer
    evaluated it (stored at 8/7 of the resolution, central 7/8, the training split's mean and std), and the ONNX
    file on it gives the checkpoint's logits."""
    import onnxruntime as ort

    from mnas.data.sets import _read_folder
    m = json.loads((export_dir / "export.json").read_text())
    spec = m["preprocess"]
    assert m["classes"] == ["cat", "dog", "fox"]
    assert (spec["image_size"], spec["crop"], spec["resolution"]) == (55, 0.875, 48)
    assert spec["mean"] == list(data.load("imagefolder", root=str(images), val_size=6, image_size=55).train.mean)
    files = [images / c / f"{i}.png" for c in m["classes"] for i in sorted(range(12), key=str)]
    x = np.concatenate([data.prepare_image(f, spec) for f in files])
    stored = _read_folder(str(images), m["classes"], 55)
    stored.mean, stored.std = tuple(spec["mean"]), tuple(spec["std"])
    ref = torch.cat([b for b, _ in data.batches(stored, 8, 48, crop=0.875)])
    assert x.shape == (36, 3, 48, 48) and np.allclose(x, ref.numpy(), atol=1e-6)
    sess = ort.InferenceSession(str(export_dir / "model.onnx"), providers=["CPUExecutionProvider"])
    logits = np.concatenate([sess.run(None, {sess.get_inputs()[0].name: x[i:i + 1]})[0] for i in range(len(x))])
    with torch.no_grad():
        assert np.allclose(logits, net.eval()(ref).numpy(), atol=1e-4)
    with pytest.raises(UserError, match="lacks .*mean"):
        data.prepare_image(files[0], {k: v for k, v in spec.items() if k != "mean"})


def test_train_refuses_a_started_run_dir_and_bad_input(tmp_path):
    out = tmp_path / "t"
    out.mkdir()
    (out / "state.pt").write_bytes(b"")
    with pytest.raises(UserError, match="resume="):
        train.run_train(model="mobilenet_v3_small", data="digits", out_dir=str(out), progress=False)
    with pytest.raises(UserError, match="proxy='yes' is invalid"):
        train.run_train(model="mobilenet_v3_small", data="digits", proxy="yes", progress=False)
    with pytest.raises(UserError, match="not found"):
        train.run_train(arch="runs/nowhere/best.json", data="digits", progress=False)


def test_cli_killed_training_resumes_to_the_same_weights(tmp_path):
    """python -m mnas.train SIGKILLed after its first save in the second epoch (of three, so a slow poll on a busy
    machine still kills it before the end), then resume=<run dir>: the checkpoint equals an uninterrupted run's,
    and metrics.csv has each epoch once."""
    from test_faults import kill_when, start
    args = ["mnas.train", "arch=" + TINY.to_string(), "data=digits", "resolution=32", "epochs=3", "batch_size=64",
            "lr=0.1", "threads=1", "checkpoint_every=4", "accelerator=cpu"]
    whole, killed = tmp_path / "whole", tmp_path / "killed"
    r = subprocess.run([sys.executable, "-m", *args, f"out_dir={whole}"], cwd=ROOT, capture_output=True, text=True,
                       timeout=600)
    assert r.returncode == 0, r.stderr

    def mid_second_epoch():
        try:
            return torch.load(killed / "state.pt", weights_only=True)["step"] > 20  # 20 steps per epoch
        except Exception:
            return False
    kill_when(start(args + [f"out_dir={killed}"]), mid_second_epoch)
    assert not (killed / "checkpoint.pt").exists()
    r = subprocess.run([sys.executable, "-m", "mnas.train", f"resume={killed}"], cwd=ROOT, capture_output=True,
                       text=True, timeout=600)
    assert r.returncode == 0, r.stderr
    assert "resuming" in r.stdout
    a, b = (torch.load(p / "checkpoint.pt", weights_only=True)["state_dict"] for p in (whole, killed))
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert [line.split(",")[0] for line in (killed / "metrics.csv").read_text().splitlines()] == \
        ["epoch", "1", "2", "3"]
    again = subprocess.run([sys.executable, "-m", "mnas.train", f"resume={killed}"], cwd=ROOT, capture_output=True,
                           text=True, timeout=600)
    assert again.returncode == 0 and "nothing to resume" in again.stdout


def test_readme_python_block_runs_from_outside_the_repository(tmp_path):
    """README "From Python", run as shown by the venv's Python from another folder (make setup installs mnas)."""
    text = (ROOT / "README.md").read_text()
    block = text.split("### From Python", 1)[1].split("```python\n", 1)[1].split("```", 1)[0]
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    r = subprocess.run([sys.executable, "-c", block], cwd=tmp_path, capture_output=True, text=True, timeout=120,
                       env=env)
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines() == ["39.1M MACs, 1.65M params", "13.05 ms"]
