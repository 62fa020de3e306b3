"""Faults as a user meets them, with real processes: `python -m mnas.prune` and `python -m mnas.latency build`
SIGKILLed mid-way and rerun (nothing finished is lost or redone, the counts come out exact), and two processes
measuring into one latency table at once (the file lock keeps every row)."""
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd

from mnas.latency.table import read_table
from mnas.nn.models import BASELINES
from mnas.nn.ops import KEY_COLUMNS, arch_ops
from mnas.nn.space import load_space

ROOT = Path(__file__).resolve().parents[1]
SPACE = """
name: faults
resolution: 64
num_classes: 10
stem: {kernel: 3, stride: 2, out: 8, act: hswish}
block: {kernel: [3, 5], expand: [3], se: [false, true], act: [relu, hswish]}
stages:
  - {depth: [1, 2], out: [8, 16], stride: 2}
  - {depth: [1], out: [16, 24], stride: 2}
head: {out: 32, act: hswish}
"""


def kill_when(proc, ready, timeout=180):
    """SIGKILL the process group of `proc` as soon as ready() holds; fail if it ended or never got there."""
    deadline = time.time() + timeout
    while time.time() < deadline and proc.poll() is None:
        if ready():
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            return
        time.sleep(0.2)
    raise AssertionError(f"process ended (rc {proc.poll()}) or stalled before the kill point")


def start(args):
    return subprocess.Popen([sys.executable, "-m", *args], cwd=ROOT, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)


def rows(path) -> int:
    try:
        return len(read_table(path))
    except Exception:  # not written yet
        return 0


def test_latency_build_sigkill_then_rerun_is_exact(tmp_path):
    table = tmp_path / "t.parquet"
    args = ["mnas.latency", "build", "device=cpu", f"table={table}", "model=mobilenet_v3_small", "resolution=32",
            "num_classes=10", "repeats=10", "warmup=1", "chunk=2", "arch_repeats=3"]
    # the model's ops, then the four baselines' (the calibration networks) at the same input size
    n_ops = len({k.astuple() for f in BASELINES.values() for k in arch_ops(f(resolution=32, num_classes=10))})
    kill_when(start(args), lambda: 4 <= rows(table) < n_ops - 10)
    before = read_table(table)
    r = subprocess.run([sys.executable, "-m", *args], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    after = read_table(table)
    assert len(after) == n_ops and not after.duplicated(KEY_COLUMNS).any()
    kept = before.merge(after, on=KEY_COLUMNS, suffixes=("_before", "_after"))
    assert len(kept) == len(before) and (kept["ms_before"] == kept["ms_after"]).all()  # not measured again
    calib = after.attrs["meta"]["calibration"]
    assert calib["b"] > 0 and len(calib["points"]) == len(BASELINES)


def history_rows(path) -> int:
    try:
        return len(pd.read_csv(path))
    except Exception:
        return 0


def test_prune_sigkill_then_resume_is_exact(tmp_path):
    run = tmp_path / "run"
    args = ["mnas.prune", "model=mobilenet_v3_small", "width=0.5", "device=pixel", "target=0.8x", "data=digits",
            "method=surgery", "scale=quick", "init_steps=4", "finetune_steps=1", "final_steps=2", "eval_images=64",
            "batch_size=32", "delta=0.05", "delta_decay=1.0", "threads=1"]
    kill_when(start(args + [f"out_dir={run}"]), lambda: history_rows(run / "history.csv") >= 2)
    before = pd.read_csv(run / "history.csv")
    assert 2 <= len(before) and not (run / "result.json").exists(), "the run should have been killed mid-way"
    r = subprocess.run([sys.executable, "-m", "mnas.prune", f"resume={run}"], cwd=ROOT, capture_output=True,
                       text=True, timeout=600)
    assert r.returncode == 0, r.stderr
    after = pd.read_csv(run / "history.csv")
    assert list(after["iteration"]) == list(range(len(after))) and len(after) > len(before)
    pd.testing.assert_frame_equal(after.iloc[:len(before)], before)  # finished iterations kept as they were
    props = pd.read_csv(run / "proposals.csv")
    assert not props.duplicated(["iteration", "unit"]).any()
    assert props.groupby("iteration")["chosen"].sum().tolist() == [1] * (len(after) - 1)
    assert (run / "result.json").exists() and (run / "model.pt").exists()


WRITER = """
import sys
from mnas.nn.arch import ArchConfig
from mnas.nn.ops import arch_ops
from mnas.latency.predict import measure_missing
arch = ArchConfig.from_string(sys.argv[2])
measure_missing("cpu", arch_ops(arch), sys.argv[1], repeats=20, warmup=1, chunk=1)
"""


def test_two_processes_measuring_into_one_table_keep_every_row(tmp_path):
    table = tmp_path / "t.parquet"
    space = tmp_path / "faults.yaml"
    space.write_text(SPACE)
    sp = load_space(str(space))
    a, b = sp.extreme(largest=False), sp.extreme(largest=True)
    procs = [subprocess.Popen([sys.executable, "-c", WRITER, str(table), arch.to_string()], cwd=ROOT,
                              stderr=subprocess.PIPE, text=True) for arch in (a, b)]
    for p in procs:
        _, err = p.communicate(timeout=300)
        assert p.returncode == 0, err
    keys = {k.astuple() for k in arch_ops(a) + arch_ops(b)}
    df = read_table(table)
    assert {tuple(r) for r in df[KEY_COLUMNS].itertuples(index=False)} == keys and len(df) == len(keys)
