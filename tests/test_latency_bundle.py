"""Phone bundles: export one-op ONNX models + script, import timings as a calibrated measured device."""
import os
import subprocess

import numpy as np
import onnxruntime as ort
import pandas as pd
import pytest
import yaml

from mnas.errors import UserError
from mnas.latency import bundle, pixel, table
from mnas.latency.predict import predict
from mnas.nn.arch import ArchConfig
from mnas.nn.models import get_model
from mnas.nn.ops import arch_ops

NETS = [ArchConfig.from_string("r32-in3-stem_k3_s2_c8_relu6-ir_k3_s2_e16_c8_relu6-cls10_d0.0"),
        ArchConfig.from_string("r32-in3-stem_k3_s2_c8_hswish-ds_k5_s1_c8_se8_hswish_res-head_k1_s1_c16_hswish-"
                               "fc32_hswish-cls10_d0.0")]
EXTRA = arch_ops(get_model("mobilenet_v1", 0.25, 32))[1:3]

# A fake adb for run_on_phone.sh: onnxruntime_perf_test "reports" a P50 that grows with the model file's size.
FAKE_ADB = """#!/bin/sh
case "$*" in *onnxruntime_perf_test*)
  f=onnx/$(basename "${*##* }"); echo "Average inference time cost: 1 ms"; echo "P50 Latency: $(wc -c < "$f")e-8 s";;
esac
"""


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    return bundle.export_bundle("phone1", EXTRA, tmp_path_factory.mktemp("bundle"), networks=NETS, progress=False)


@pytest.fixture
def conf(tmp_path, monkeypatch):
    monkeypatch.setattr(table, "ROOT", tmp_path)  # default table paths land here, not in the repo
    monkeypatch.setattr(table, "DEVICES_DIR", tmp_path / "conf")
    return tmp_path / "conf"


def fake_results(bundle_dir, path, a=2.0, b=1.1, scale=1.3):
    """Ops take scale * pixel estimate; networks take a + b * (sum of their pixel op estimates)."""
    m = pd.read_csv(bundle_dir / "manifest.csv")
    ms = [scale * pixel.op_ms(bundle._op_key(r)) if r.kind == "op" else
          a + b * sum(pixel.op_ms(k) for k in arch_ops(ArchConfig.from_string(r.arch))) for r in m.itertuples()]
    pd.DataFrame({"file": m.file, "ms": ms, "spread": 0.01, "n": 50}).to_csv(path, index=False)
    return path


def test_bundle_contents(exported):
    m = pd.read_csv(exported / "manifest.csv")
    keys = set(EXTRA) | {k for a in NETS for k in arch_ops(a)}
    assert (m.kind == "op").sum() == len(keys) and (m.kind == "network").sum() == len(NETS)
    assert all((exported / "onnx" / f).is_file() for f in m.file)
    assert "not produced" in (exported / "bundle.json").read_text() and not (exported / "tflite").exists()
    assert os.access(exported / "run_on_phone.sh", os.X_OK)
    for r in [*m[m.kind == "op"].head(3).itertuples(), *m[m.kind == "network"].itertuples()]:
        k = bundle._op_key(r) if r.kind == "op" else None
        shape = (1, k.cin, k.res, k.res) if k else (1, 3, 32, 32)
        s = ort.InferenceSession(str(exported / "onnx" / r.file), providers=["CPUExecutionProvider"])
        assert s.run(None, {"x": np.zeros(shape, np.float32)})[0].shape[0] == 1


def test_round_trip_fits_calibration_and_predicts(exported, conf, tmp_path):
    results = fake_results(exported, tmp_path / "results.csv")
    cfg_path = bundle.import_results("phone1", results, exported, table_file=tmp_path / "phone1.parquet")
    cfg = yaml.safe_load(cfg_path.read_text())
    assert cfg_path == conf / "phone1.yaml" and cfg["kind"] == "measured" and cfg["live"] is False
    df = table.load_table("phone1")
    meta = df.attrs["meta"]
    assert meta["runtime"] == "onnxruntime" and len(meta["calibration"]["points"]) == len(NETS)
    assert meta["calibration"]["a"] == pytest.approx(2.0, rel=1e-6)
    assert meta["calibration"]["b"] == pytest.approx(1.1 / 1.3, rel=1e-6)
    for a in NETS:
        assert predict(a, "phone1", measure=False) == pytest.approx(2 + 1.1 * sum(map(pixel.op_ms, arch_ops(a))))
    # importing again under the same name replaces it; a built-in device name is refused
    assert bundle.import_results("phone1", results, exported, table_file=tmp_path / "phone1.parquet") == cfg_path
    (conf / "cpu.yaml").write_text("kind: measured\nlive: true\n")
    with pytest.raises(UserError, match="already exists"):
        bundle.import_results("cpu", results, exported)


def test_script_with_fake_adb(exported, conf, tmp_path):
    (tmp_path / "bin").mkdir()
    (tmp_path / "bin" / "adb").write_text(FAKE_ADB)
    (tmp_path / "bin" / "adb").chmod(0o755)
    env = {**os.environ, "PATH": f"{tmp_path / 'bin'}:{os.environ['PATH']}"}
    subprocess.run(["sh", str(exported / "run_on_phone.sh"), "onnx", "res.csv"], cwd=tmp_path, env=env, check=True,
                   capture_output=True)
    res = pd.read_csv(tmp_path / "res.csv")
    assert list(res.columns) == ["file", "ms", "spread", "n"] and (res.n == 50).all()
    assert (res.ms > 0).all() and res.ms.nunique() > len(res) // 2  # the fake times follow the file sizes
    bundle.import_results("phone2", tmp_path / "res.csv", exported, table_file=tmp_path / "phone2.parquet")
    assert predict(NETS[0], "phone2", measure=False) > 0


@pytest.mark.parametrize("edit, message", [
    (lambda d: d.drop(columns="ms"), "lacks column"),
    (lambda d: d.assign(file=d.file.where(d.index > 0, "nope.onnx")), "not in the bundle manifest"),
    (lambda d: d.assign(ms=d.ms.where(d.index > 0, -1.0)), "not a positive number"),
    (lambda d: d.assign(ms=d.ms.astype(object).where(d.index > 0, "fast")), "not a positive number"),
    (lambda d: d.iloc[1:], "lacks 1 of"),
    (lambda d: pd.concat([d, d.iloc[:1]]), "more than once"),
    (lambda d: d.assign(file=d.file.str.replace(".onnx", ".bin")), "runtime"),
])
def test_bad_results_are_one_line_user_errors(exported, conf, tmp_path, edit, message):
    good = pd.read_csv(fake_results(exported, tmp_path / "good.csv"))
    edit(good).to_csv(tmp_path / "bad.csv", index=False)
    with pytest.raises(UserError, match=message) as e:
        bundle.import_results("phone3", tmp_path / "bad.csv", exported, table_file=tmp_path / "t.parquet")
    assert "\n" not in str(e.value) and not (conf / "phone3.yaml").exists()


def test_bad_device_name_and_missing_file(exported, conf, tmp_path):
    with pytest.raises(UserError, match="device name"):
        bundle.import_results("../x", tmp_path / "r.csv", exported)
    with pytest.raises(UserError, match="cannot read"):
        bundle.import_results("phone4", tmp_path / "missing.csv", exported)


def test_cli_verbs_export_then_import(conf, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(bundle, "BASELINES", {"mobilenet_v3_small": bundle.BASELINES["mobilenet_v3_small"]})
    cfg = {"phone": "phone5", "device": {"name": "cpu"}, "model": "mobilenet_v3_small", "resolution": 32,
           "num_classes": 10, "path": str(tmp_path / "b"), "results": None}
    with pytest.raises(UserError, match="phone="):
        bundle.export_cmd({**cfg, "phone": None})
    out = bundle.export_cmd(cfg)
    with pytest.raises(UserError, match="0 results_"):
        bundle.import_cmd(cfg)
    fake_results(out, out / "results_onnx.csv")
    pd.read_csv(out / "results_onnx.csv")[["file", "ms"]].to_csv(out / "results_onnx.csv", index=False)  # minimal
    assert bundle.import_cmd(cfg) == conf / "phone5.yaml"
    assert (tmp_path / "runs/tables/phone5/onnxruntime_t1.parquet").is_file()
    assert "calibration" in capsys.readouterr().out
    net = get_model("mobilenet_v3_small", resolution=32, num_classes=10)  # the one calibration network: a = 0
    assert predict(net, "phone5", measure=False) == pytest.approx(2 + 1.1 * sum(map(pixel.op_ms, arch_ops(net))))
