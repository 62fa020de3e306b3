"""Bad input at every CLI, as a user types it: one clear line on stderr, exit status 2, and nothing under runs/
written, overwritten or lost (full tracebacks only with HYDRA_FULL_ERROR=1)."""
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from mnas.latency.table import empty_table, load_device, new_meta, save_table
from mnas.nn.models import build, get_model

ROOT = Path(__file__).resolve().parents[1]
ARCH = "r224-in3-stem_k3_s2_c16_hswish-ir_k3_s1_e16_c16_relu_res-cls10_d0.2"


class Payload:
    """Not a tensor, dict or number: torch.load(weights_only=True) must refuse to unpickle it."""

    def __reduce__(self):
        return (os.system, ("echo pwned",))


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("bad")
    (d / "corrupt.parquet").write_bytes(b"PAR1 not parquet at all")
    meta = new_meta(load_device("cpu"), "test", 224, 1000)
    save_table(empty_table(meta), d / "whole.parquet")
    data = (d / "whole.parquet").read_bytes()
    (d / "truncated.parquet").write_bytes(data[:len(data) // 2])
    save_table(empty_table({**meta, "device": "pixel7"}), d / "foreign.parquet")
    save_table(empty_table({**meta, "runtime": "torch"}), d / "torch.parquet")
    (d / "corrupt.pt").write_bytes(b"PK\x03\x04 no checkpoint")
    model = build(get_model("mobilenet_v3_small", 0.25, num_classes=10))
    torch.save({"state_dict": model.state_dict(), "arch": model.arch.to_json(), "code": Payload()}, d / "evil.pt")
    torch.save({"state_dict": model.state_dict(), "arch": get_model("mobilenet_v2").to_json()}, d / "wrong.pt")
    (d / "space.yaml").write_text("name: bad\nresolution: 64\nnum_classes: 10\nstem: {kernel: 3, stride: 2, out: 8, "
                                  "act: hswish}\nblock: {kernel: [4], expand: [3], se: [false], act: [relu]}\n"
                                  "stages: [{depth: [1], out: [8], stride: 2}]\nhead: {out: 32, act: hswish}\n")
    (d / "nodata").mkdir()
    (d / "badconfig").mkdir()
    (d / "badconfig" / "config.yaml").write_text("model: [unclosed\n")
    return d


CASES = [  # (command line, with {d} for the fixture folder; what the one line must say); the search's budget,
    # device and sampler cases are in test_search_cli.py
    ("mnas.search space=v9_huge", r"unknown space 'v9_huge': available .*v3_large.*v3_small"),
    ("mnas.search space.name={d}/space.yaml", r"stages\[0\]\.kernel has 4: allowed 3, 5, 7"),
    ("mnas.search resume={d}/nodata", r"resume=.*nodata is not a search run directory"),
    ("mnas.search rerank.k=3 rerank.seeds=1", r"rerank.seeds=1 is invalid: use a whole number >= 2"),
    ("mnas.search rerank.k=-1", r"rerank.k=-1 is invalid: use a whole number >= 0"),
    ("mnas.search rerank.k=2 rerank.confirm=1", r"rerank.confirm=1 is invalid: use 0 \(no check\) or a whole"),
    ("mnas.search band=1.5", r"band=1.5 is invalid: use a fraction of the budget in \[0, 1\)"),
    ("mnas.search measure_repeats=-1", r"measure_repeats=-1 is invalid: use a count of timed runs >= 0"),
    ("mnas.latency build device=cpu calib_spaces=[nope] table={d}/new.parquet",
     r"unknown search space 'nope': available v3_large, v3_small"),
    ("mnas.prune resume={d}/nodata", r"resume=.*nodata is not a prune run directory"),
    ("mnas.train resume={d}/nodata", r"resume=.*nodata is not a train run directory"),
    ("mnas.train resume={d}/badconfig", r"badconfig/config.yaml does not parse"),
    ("mnas.train arch={d}/nodata data=digits", r"nodata holds neither best.json nor arch.json"),
    ("mnas.train model=mobilenet_v3_small data=digits accelerator=tpu", r"accelerator='tpu' is "),
    ("mnas.train model=mobilenet_v3_small data=digits augment=blur", r"augment='blur' is invalid"),
    ("mnas.latency build device=cpu model=mobilenet_v3_small table={d}/corrupt.parquet",
     r"corrupt.parquet is not a readable Parquet latency table"),
    ("mnas.latency build device=cpu model=mobilenet_v3_small table={d}/truncated.parquet",
     r"truncated.parquet is not a readable Parquet latency table"),
    ("mnas.latency build device=cpu model=mobilenet_v3_small table={d}/foreign.parquet",
     r"was measured for device 'pixel7'.*not for 'cpu'"),
    ("mnas.latency build device=cpu model=mobilenet_v3_small table={d}/torch.parquet",
     r"was measured for device 'cpu' \{'runtime': 'torch'"),
    ("mnas.train data=fashion_mnist data.root={d}/nodata", r"apt-get install dataset-fashion-mnist"),
    ("mnas.train model=mobilenet_v9", r"unknown model 'mobilenet_v9'"),
    ("mnas.train epochz=3", r"unknown key 'epochz': the keys are those of conf/train.yaml"),
    ("mnas.train proxy=maybe", r"proxy='maybe' is invalid: expected true or false"),  # typed by TrainConfig
    ("mnas.prune compare_width=perhaps", r"compare_width='perhaps' is invalid: expected true or false"),
    ("mnas.compare seeds=x", r"seeds='x' is invalid: expected integer"),
    ("mnas.export width=big", r"width='big' is invalid: expected float"),
    ("mnas.prune seeds=[0,", r"an override does not parse"),
    ("mnas.export run={d}/corrupt.pt", r"not an mnas checkpoint: .*corrupt.pt"),
    ("mnas.export run={d}/evil.pt",
     r"not an mnas checkpoint: .*evil.pt holds pickled code or objects \(posix.system\)"),
    ("mnas.export run={d}/wrong.pt", r"wrong.pt.*weights do not fit its arch"),
    ("mnas.export arch=" + ARCH.replace("ir_k3", "ir_k9"), r"kernel=9 is invalid: allowed one of \(1, 3, 5, 7\)"),
    ("mnas.export arch=" + ARCH.replace("ir_k3", "ir_k3_q5"), r"unknown or repeated token 'q5'"),
    ("mnas.export arch=" + ARCH.replace("c16_relu", "c99999_relu"), r"out=99999 is invalid"),
    ("mnas.prune target=-3ms", r"target .*positive"),
    ("mnas.latency fidelity device=cpu nn=5", r"unknown key 'nn': the keys are those of conf/latency.yaml"),
    ("mnas.latency fidelity device=cpu pruned=many", r"pruned='many' is invalid: expected integer"),
    ("mnas.supernet epochs=two", r"epochs='two' is invalid: expected integer"),
    ("mnas.bench.rank_check standalone.max_steps=lots", r"standalone.max_steps='lots' is invalid: expected integer"),
    ("mnas.bench.rank_check estimator_seeds=3", r"estimator_seeds=3 is invalid: use a list of supernet training seeds"),
    ("mnas.bench.proxy_check seeds=x", r"seeds='x' is invalid: expected integer"),
    ("mnas.bench.supernet_speed steps=1 warm=2", r"unknown key 'warm'"),
    ("mnas.bench.rank_check iso_ms=15 window_ms=[13,16]", r"iso_ms=<ms> .* or window_ms=\[lo, hi\], not both"),
]


def tree(path: Path) -> dict:
    """Every file under the runs/ folders these commands write (other benchmarks may be running elsewhere)."""
    dirs = [path / d for d in ("search", "train", "export", "prune", "tables", "latency", "supernets", "data")]
    return {str(p): p.stat().st_mtime_ns for d in dirs if d.exists() for p in d.rglob("*")}


@pytest.mark.parametrize("line,message", CASES, ids=[c[0].split("=")[0] + "=" + c[0].split("=", 1)[1][:24]
                                                     for c in CASES])
def test_one_line_exit_2_nothing_written(files, line, message):
    before = tree(ROOT / "runs")
    r = subprocess.run([sys.executable, "-m", *line.format(d=files).split()], cwd=ROOT, capture_output=True,
                       text=True, timeout=120, env={**os.environ, "HYDRA_FULL_ERROR": "0"})
    lines = r.stderr.strip().splitlines()
    assert r.returncode == 2 and len(lines) == 1, r.stderr[-2000:]
    assert lines[0].startswith("error: ") and re.search(message, lines[0]), lines[0]
    assert tree(ROOT / "runs") == before  # nothing written under runs/, nothing touched


def test_full_traceback_only_on_request(files):
    r = subprocess.run([sys.executable, "-m", "mnas.export", f"run={files}/corrupt.pt"], cwd=ROOT,
                       capture_output=True, text=True, timeout=120, env={**os.environ, "HYDRA_FULL_ERROR": "1"})
    assert r.returncode != 0 and "Traceback" in r.stderr
