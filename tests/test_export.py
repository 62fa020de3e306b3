"""Export: ONNX of every baseline and a sampled V3-like arch checked in onnxruntime, mnas.load round trip, refused
checkpoints, run-directory sources, the CLI."""
import importlib.util
import json
import os
import random
import subprocess
import sys
from pathlib import Path

import onnx
import pytest
import torch
from torch import nn

import mnas
from mnas.errors import UserError
from mnas.export import ExportCheckError, export, main, parse_formats
from mnas.nn.arch import ArchConfig
from mnas.nn.models import BASELINES, build, get_model
from mnas.nn.space import load_space
from mnas.train import save_checkpoint

ROOT = Path(__file__).resolve().parents[1]


pytestmark = pytest.mark.usefixtures("one_thread")


def with_bn_stats(model: nn.Module, res: int) -> nn.Module:
    """Freshly initialised nets output ~0 in eval mode (default BatchNorm statistics); set them from random images
    so the exported and the PyTorch model are compared on real numbers."""
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.reset_running_stats()
            m.momentum = None
    model.train()
    with torch.no_grad():
        model(torch.randn(8, model.arch.in_chans, res, res, generator=torch.Generator().manual_seed(1)))
    return model.eval()


def small(name="mobilenet_v3_small", width=0.35, res=64):
    return with_bn_stats(build(get_model(name, width, res, num_classes=10)), res)


def check_onnx(manifest, out, shape):
    entry = manifest["files"]["onnx"]
    assert entry["max_abs_diff"] <= 1e-4 and entry["max_abs_output"] > 1e-3  # real numbers, not ~0
    assert entry["tol"] == 1e-4 * max(1.0, entry["max_abs_output"])
    assert manifest["ok"] and json.loads((out / "export.json").read_text()) == manifest
    graph = onnx.load(out / entry["file"]).graph
    assert [d.dim_value for d in graph.input[0].type.tensor_type.shape.dim] == list(shape)
    assert [d.dim_value for d in graph.output[0].type.tensor_type.shape.dim] == [1, 10]


@pytest.mark.parametrize("name", BASELINES)
def test_onnx_export_of_baselines_matches_pytorch(tmp_path, name):
    torch.manual_seed(0)
    m = export(small(name, res=64), tmp_path, formats=["onnx"])
    check_onnx(m, tmp_path, (1, 3, 64, 64))
    assert m["weights"] == "as passed" and set(m["files"]) == {"onnx"}


def test_onnx_export_of_sampled_v3_arch_and_its_proxy_variant(tmp_path):
    arch = load_space("v3_small").random_arch(random.Random(3)).replace(resolution=64, num_classes=10)
    m = export(with_bn_stats(build(arch), 64), tmp_path, formats="onnx", proxy_resolution=32)
    check_onnx(m, tmp_path, (1, 3, 64, 64))
    proxy = m["files"]["onnx_proxy"]
    assert proxy["input_shape"] == [1, 3, 32, 32]
    assert proxy["max_abs_diff"] <= 1e-4 * max(1.0, proxy["max_abs_output"])  # float32: relative above |output| 1
    assert ArchConfig.from_string(proxy["arch"]).stem.stride == 1 and m["arch"] == arch.to_string()


def test_load_round_trip(tmp_path):
    model = small("mobilenet_v3_small", 0.5)
    m = export(model, tmp_path, formats=("json", "string", "pt"))
    loaded = mnas.load(tmp_path / "model.pt")
    assert loaded.arch == model.arch and not loaded.training
    assert ArchConfig.from_json((tmp_path / "arch.json").read_text()) == model.arch
    assert ArchConfig.from_string((tmp_path / "arch.txt").read_text().strip()) == model.arch
    x = torch.randn(2, 3, 64, 64)
    with torch.inference_mode():
        assert torch.equal(loaded(x), model(x))
    assert set(m["files"]) == {"json", "string", "pt"} and m["macs"] > 0


class Payload:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):  # unpickling would create the marker file
        return (open, (self.marker, "w"))


def test_refused_checkpoints(tmp_path):
    model = build(get_model("mobilenet_v2", 0.35, 32, num_classes=10))
    marker, evil = tmp_path / "pwned", tmp_path / "evil.pt"
    torch.save({"state_dict": model.state_dict(), "arch": model.arch.to_json(), "metrics": Payload(str(marker))}, evil)
    with pytest.raises(UserError, match=r"evil.pt holds pickled code or objects \(.*open\)") as e:
        mnas.load(evil)
    assert not marker.exists() and "\n" not in str(e.value)

    wrong = tmp_path / "wrong.pt"
    other = get_model("mobilenet_v3_small", 0.35, 32, num_classes=10)
    torch.save({"state_dict": model.state_dict(), "arch": other.to_json()}, wrong)
    with pytest.raises(UserError, match="wrong.pt: its weights do not fit its arch"):
        mnas.load(wrong)

    good, cut = tmp_path / "good.pt", tmp_path / "cut.pt"
    save_checkpoint(str(good), model)
    cut.write_bytes(good.read_bytes()[:good.stat().st_size // 2])
    with pytest.raises(UserError, match="cut.pt is corrupt or not a torch.save file"):
        mnas.load(cut)
    with pytest.raises(UserError, match="not an mnas checkpoint: .*cut.pt"):
        export(cut, tmp_path / "out")  # an export from it as well
    assert not (tmp_path / "out").exists()


def test_run_directory_sources(tmp_path):
    arch = get_model("mobilenet_v1", 0.35, 32, num_classes=10)
    search = tmp_path / "search"
    search.mkdir()
    (search / "best.json").write_text(json.dumps({"arch": arch.to_string(), "latency_ms": 1.0}))
    m = export(search, search / "export", formats="json")
    assert m["weights"] == "untrained" and m["arch"] == arch.to_string()

    train = tmp_path / "train"
    model = build(arch)
    save_checkpoint(str(train / "checkpoint.pt"), model)
    m = export(train, train / "export", formats="pt")
    assert m["weights"] == "checkpoint" and m["source"] == str(train / "checkpoint.pt")
    exported = mnas.load(train / "export" / "model.pt").state_dict()
    assert all(torch.equal(v, exported[k]) for k, v in model.state_dict().items())
    with pytest.raises(UserError, match="already holds files and nothing is overwritten"):
        export(train, train / "export", formats="pt")

    save_checkpoint(str(search / "model.pt"), build(arch.replace(num_classes=3)))  # trained on a 3-class proxy
    assert export(search, tmp_path / "e2", formats="json")["weights"] == "checkpoint"
    save_checkpoint(str(search / "model.pt"), build(get_model("mobilenet_v2", 0.35, 32)))
    with pytest.raises(UserError, match="holds another arch than .*best.json"):
        export(search, tmp_path / "e3", formats="json")
    assert export(tmp_path / "e2", tmp_path / "e4", formats="json")["weights"] == "untrained"  # only arch.json
    (tmp_path / "empty").mkdir()
    with pytest.raises(UserError, match="holds neither a checkpoint"):
        export(tmp_path / "empty", tmp_path / "e6")
    with pytest.raises(UserError, match="not found"):
        export(tmp_path / "nowhere", tmp_path / "e5")


def test_formats_and_failed_check(tmp_path):
    assert parse_formats("onnx, pt,onnx") == ["onnx", "pt"]
    with pytest.raises(UserError, match="unknown format 'bogus'"):
        parse_formats("onnx,bogus")
    if importlib.util.find_spec("executorch") is None:  # the optional extra
        with pytest.raises(UserError, match="pip install executorch"):
            parse_formats("pte")
    with pytest.raises(ExportCheckError, match="compute something else than the PyTorch model"):
        export(small(res=32), tmp_path, formats="onnx", check_tol=-1.0)  # no difference is below -1
    assert json.loads((tmp_path / "export.json").read_text())["ok"] is False


def cli(*args, cwd):
    env = dict(os.environ, PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1")
    return subprocess.run([sys.executable, "-m", "mnas.export", *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=300)


def test_cli(tmp_path):
    r = cli("model=mobilenet_v2", "width=0.35", "resolution=64", "format=onnx,pt", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert "UNTRAINED" in r.stdout and "max |diff|" in r.stdout
    (out,) = (tmp_path / "runs" / "export" / "mobilenet_v2-0.35").iterdir()
    assert {p.name for p in out.iterdir()} == {"model.onnx", "model.pt", "export.json"}
    assert json.loads((out / "export.json").read_text())["weights"] == "untrained"

    r = cli("model=mobilenet_v2", "format=bogus", cwd=tmp_path)
    assert r.returncode == 2 and r.stderr.strip().count("\n") == 0 and "unknown format 'bogus'" in r.stderr


def test_cli_main_on_a_train_run(tmp_path, capsys):
    run = tmp_path / "train_run"
    save_checkpoint(str(run / "checkpoint.pt"), build(get_model("mobilenet_v3_small", 0.35, 32, num_classes=10)))
    cfg = dict(run=str(run), model=None, width=1.0, resolution=224, num_classes=1000, format=["onnx", "string"],
               proxy_resolution=None, check_tol=1e-4, out_dir=None)
    m = main(cfg)
    assert m["weights"] == "checkpoint" and "UNTRAINED" not in capsys.readouterr().out
    assert {p.name for p in (run / "export").iterdir()} == {"model.onnx", "arch.txt", "export.json"}
    with pytest.raises(UserError, match="already holds files"):
        main(cfg)
    with pytest.raises(UserError, match="pass one of run="):
        main(dict(cfg, model="mobilenet_v2"))


def test_proxy_trained_run_exports_its_deployment_arch(tmp_path):
    """A run trains the proxy variant (fewer early strides); the export is the deployment arch with its weights."""
    from mnas.nn.proxy import proxy_arch
    deploy = get_model("mobilenet_v3_small", 0.5, 64, num_classes=10)
    trained = build(proxy_arch(deploy, 10))
    run = tmp_path / "run"
    save_checkpoint(str(run / "checkpoint.pt"), trained)
    (run / "arch.json").write_text(deploy.to_json())
    m = export(run, run / "export", formats="pt,onnx")
    assert m["arch"] == deploy.to_string() and m["files"]["onnx"]["input_shape"][-1] == 64
    shipped = mnas.load(run / "export" / "model.pt")
    assert shipped.arch == deploy
    assert all(torch.equal(v, shipped.state_dict()[k]) for k, v in trained.state_dict().items())
