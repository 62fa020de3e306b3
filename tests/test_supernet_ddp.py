"""Distributed supernet training: two gloo processes on one CPU train a tiny supernet for a few steps, each on
its own data shard, and end with identical weights (gradients averaged every step)."""
import socket

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from mnas.data import load
from mnas.data.sets import Split
from mnas.nn.space import load_space
from mnas.supernet import Supernet, SupernetSettings, train_supernet
from mnas.supernet.train import _shard, load_state

TINY = """
name: tiny
resolution: 64
num_classes: 10
stem: {kernel: 3, stride: 2, out: 8, act: hswish}
block: {kernel: [3, 5], expand: [1, 3], se: [false, true], act: [relu, hswish]}
stages:
  - {depth: [1, 2], out: [8, 16], stride: 2}
  - {depth: [1, 2], out: [16, 24], stride: 2}
head: {out: 32, act: hswish}
dropout: 0.1
"""
SETTINGS = SupernetSettings(epochs=1, batch_size=32, lr=0.2, n_random=1)


def _rank(rank, world, port, space_path, out_dir):
    import os
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), WORLD_SIZE=str(world), RANK=str(rank),
                      LOCAL_RANK=str(rank))
    torch.set_num_threads(1)
    data = load("digits", val_size=0.2, train_subset=256)
    net, info = train_supernet(load_space(space_path), data, SETTINGS, out_dir, max_steps=3, progress=False,
                               device="cpu")
    torch.save({"state": net.state_dict(), "info": info}, f"{out_dir}/rank{rank}.pt")
    dist.destroy_process_group()


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_gloo_ranks_stay_in_sync(tmp_path):
    if not dist.is_available() or not dist.is_gloo_available():
        print("skipped: this torch build has no gloo backend")
        pytest.skip("torch.distributed with gloo is unavailable in this torch build")
    space_path = tmp_path / "tiny.yaml"
    space_path.write_text(TINY)
    mp.spawn(_rank, args=(2, _free_port(), str(space_path), str(tmp_path)), nprocs=2, join=True)
    r0, r1 = (torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in (0, 1))
    assert r0["info"]["step"] == r1["info"]["step"] == 3 and r0["info"]["total"] == 256 // 2 // 32
    params = [k for k, v in r0["state"].items() if "running" not in k and "num_batches" not in k]
    assert all(r0["state"][k].equal(r1["state"][k]) for k in params)  # same averaged gradients on both ranks
    torch.manual_seed(SETTINGS.seed)
    init = Supernet(load_space(str(space_path)), 10).state_dict()
    assert not init["classifier.fc.weight"].equal(r0["state"]["classifier.fc.weight"])  # it trained
    ck = load_state(tmp_path / "checkpoint.pt")
    assert ck["world"] == 2 and ck["step"] == 3 and len(ck["rng"]) == 2
    ids = Split(torch.zeros(11, 1, 1, 1, dtype=torch.uint8), torch.arange(11))
    shards = [set(_shard(ids, r, 2, seed=0).labels.tolist()) for r in (0, 1)]
    assert len(shards[0]) == len(shards[1]) == 5 and not shards[0] & shards[1]  # disjoint, equal shares
