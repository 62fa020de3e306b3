"""rank_check benchmark machinery on a tiny space with digits: archs spread over latency, stand-alone runs in two
worker processes equal in-process runs, every finished cell is kept (resume), the summary and plot are written."""
import json

import pandas as pd
import pytest
import torch

from mnas.data import load
from mnas.stats import count
from mnas.supernet.rank_check import Standalone, rank_check, spread_archs


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

    def never(arch, seed):
        raise AssertionError("a finished cell was run again")
    again = rank_check(archs, macs, macs, never, [0, 1], tmp_path, jobs=1)
    assert again["kendall_tau"] == pytest.approx(summary["kendall_tau"])
    assert load("digits", val_size=0.2).num_classes == 10
