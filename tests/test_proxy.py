"""Tests for the proxy task: cluttered Fashion-MNIST generation (mnas.data.cluttered) and the ranking benchmark
(mnas.bench.proxy_check) on digits with a tiny search space."""
import csv
import gzip
import struct

import numpy as np
import pandas as pd
import pytest
import torch

from mnas import data
from mnas.bench import proxy_check
from mnas.data.cluttered import clutter, load_fmnist_cluttered
from mnas.errors import UserError

LEVELS = np.arange(1, 11, dtype=np.uint8) * 20  # class c is a 28x28 item of constant brightness LEVELS[c]


def class_items(labels):
    return np.broadcast_to(LEVELS[labels][:, None, None], (len(labels), 28, 28)).copy()


def write_idx(path, array, magic):
    with gzip.open(path, "wb") as f:
        f.write(struct.pack(">I", magic) + struct.pack(f">{array.ndim}I", *array.shape) + array.tobytes())


@pytest.fixture
def fmnist_root(tmp_path):
    """A fake Fashion-MNIST folder: 60 train / 20 test items, each a constant square of its class's brightness."""
    root = tmp_path / "fmnist"
    root.mkdir()
    for prefix, n in (("train", 60), ("t10k", 20)):
        labels = np.arange(n, dtype=np.uint8) % 10
        write_idx(root / f"{prefix}-images-idx3-ubyte.gz", class_items(labels), 0x803)
        write_idx(root / f"{prefix}-labels-idx1-ubyte.gz", labels, 0x801)
    return root


def test_clutter_is_deterministic_in_the_seed():
    items = np.random.default_rng(0).integers(0, 256, (50, 28, 28), dtype=np.uint8)
    a, pa = clutter(items, 48, pieces=3, piece_size=6, seed=1)
    b, pb = clutter(items, 48, pieces=3, piece_size=6, seed=1)
    c, _ = clutter(items, 48, pieces=3, piece_size=6, seed=2)
    assert a.tobytes() == b.tobytes() and (pa == pb).all()
    assert a.tobytes() != c.tobytes()
    assert a.shape == (50, 48, 48) and a.dtype == np.uint8


def test_clutter_places_each_item_where_it_says():
    labels = np.arange(40) % 10
    items = class_items(labels)
    alone, pos = clutter(items, 40, pieces=0, seed=0)
    cluttered, pos2 = clutter(items, 40, pieces=4, piece_size=8, seed=0)
    assert (pos >= 0).all() and (pos <= 40 - 28).all() and len(np.unique(pos[:, 0])) > 1
    for i, (top, left) in enumerate(pos):
        window = (i, slice(top, top + 28), slice(left, left + 28))
        assert (alone[window] == LEVELS[labels[i]]).all() and alone[i].sum() == items[i].sum()  # nothing else
    for i, (top, left) in enumerate(pos2):
        window = cluttered[i, top:top + 28, left:left + 28]
        outside = cluttered[i].astype(bool).sum() - 28 * 28
        assert (window >= LEVELS[labels[i]]).all()  # the item is intact (clutter only brightens it)
        assert 0 <= outside <= 4 * 8 * 8
    assert sum(cluttered[i].astype(bool).sum() > 28 * 28 for i in range(40)) > 30  # clutter lies outside items


def test_clutter_rejects_bad_sizes():
    with pytest.raises(UserError, match="canvas"):
        clutter(np.zeros((4, 28, 28), np.uint8), canvas=20)
    with pytest.raises(UserError, match="piece_size"):
        clutter(np.zeros((4, 28, 28), np.uint8), piece_size=30)


def test_loader_shapes_labels_and_cache(fmnist_root, tmp_path):
    cache = tmp_path / "cache"
    d = data.load("fmnist_cluttered", root=str(fmnist_root), val_size=10, cache_dir=str(cache), pieces=0)
    assert (len(d.train), len(d.val), len(d.test)) == (50, 10, 20) and d.num_classes == 10
    assert d.train.images.shape == (50, 1, 64, 64) and d.train.images.dtype == torch.uint8
    assert d.train.labels.dtype == torch.int64
    for split in (d.train, d.val, d.test):  # with no clutter, every lit pixel is the placed item of the label
        for x, y in zip(split.images, split.labels):
            assert set(x.unique().tolist()) == {0, int(LEVELS[y])} and int((x > 0).sum()) == 28 * 28
    assert len(list(cache.glob("fmnist_cluttered-*.npz"))) == 1
    again = data.load("fmnist_cluttered", root=str(fmnist_root), val_size=10, cache_dir=str(cache), pieces=0)
    assert torch.equal(again.train.images, d.train.images) and torch.equal(again.test.labels, d.test.labels)
    other = load_fmnist_cluttered(root=str(fmnist_root), pieces=2, seed=1, cache_dir=None)[0]
    same_seed = load_fmnist_cluttered(root=str(fmnist_root), pieces=2, cache_dir=None)[0]
    assert not torch.equal(other.images, same_seed.images)
    assert len(list(cache.glob("*.npz"))) == 1  # cache_dir=None writes nothing


def test_loader_needs_the_local_source(tmp_path):
    with pytest.raises(UserError, match="Fashion-MNIST not found"):
        data.load("fmnist_cluttered", root=str(tmp_path / "missing"), cache_dir=None)


TINY_SPACE = """
name: tiny
resolution: 224
num_classes: 1000
stem: {kernel: 3, stride: 2, out: 8, act: relu}
block: {kernel: [3, 5], expand: [2, 3], se: [false], act: [relu]}
stages:
  - {depth: [1, 2], out: [8, 16], stride: 2}
  - {depth: [1], out: [16, 24], stride: 2}
head: {out: 32, act: relu}
"""


def test_pick_archs_spreads_over_the_space(tmp_path):
    from mnas.nn.space import load_space
    from mnas.nn.stats import count
    path = tmp_path / "tiny.yaml"
    path.write_text(TINY_SPACE)
    space = load_space(str(path))
    archs = proxy_check.pick_archs(space, 4, pool=50)
    macs = [count(a).macs for a in archs]
    assert macs == sorted(macs) and len({a.to_string() for a in archs}) == 4
    assert archs[0] == space.extreme(False) and archs[-1] == space.extreme(True)


def test_proxy_check_writes_table_plot_and_resumes(tmp_path):
    path = tmp_path / "tiny.yaml"
    path.write_text(TINY_SPACE)
    kw = dict(data="digits", val_size=0.2, space=str(path), n=2, seeds=2, max_steps=2, batch_size=32, pool=20,
              threads=1, progress=False)
    out = tmp_path / "run"
    res = proxy_check.run_proxy_check(out_dir=str(out), **kw)
    with open(out / "proxy_check.csv") as f:
        rows = list(csv.DictReader(f))
    assert list(rows[0]) == proxy_check.SUMMARY_COLUMNS + ["acc_seed0", "acc_seed1", "mean", "std"]
    assert len(rows) == 2 and float(rows[0]["macs"]) < float(rows[1]["macs"]) and float(rows[0]["pixel_ms"]) > 0
    assert all(0 <= float(r["acc_seed1"]) <= 1 for r in rows)
    assert (out / "ranking.png").stat().st_size > 1000 and (out / "report.md").is_file()
    assert set(res["stats"]) >= {"seed_tau", "tau_macs", "acc_range", "seed_diff", "img_per_s", "wall_s"}
    runs = (out / "runs.csv").read_text()
    assert runs.count("\n") == 1 + 4
    order = [(r["arch"], r["seed"]) for r in csv.DictReader(runs.splitlines())]  # arch by arch: complete rows first
    assert order == [(a, s) for a in dict.fromkeys(a for a, _ in order) for s in ("0", "1")]
    proxy_check.run_proxy_check(resume=str(out), seeds=2, threads=1, progress=False)  # nothing left to do
    assert (out / "runs.csv").read_text() == runs
    res = proxy_check.run_proxy_check(resume=str(out), seeds=3, threads=1, progress=False)  # adds seed 2 only
    lines = (out / "runs.csv").read_text().splitlines()
    assert lines[:5] == runs.splitlines() and len(lines) == 7 and all(",2," in line for line in lines[5:])
    assert "acc_seed2" in res["table"].columns
    with pytest.raises(UserError, match="resume"):
        proxy_check.run_proxy_check(out_dir=str(out), **kw)


def test_proxy_check_rejects_unknown_loader_options_before_writing(tmp_path):
    with pytest.raises(UserError, match="not options of the digits loader"):
        proxy_check.run_proxy_check(data="digits", data_options={"canvas": 48}, out_dir=str(tmp_path / "r"))
    assert not (tmp_path / "r").exists()


def test_proxy_check_workers_give_the_in_process_results(tmp_path):
    path = tmp_path / "tiny.yaml"
    path.write_text(TINY_SPACE)
    kw = dict(data="digits", val_size=0.2, space=str(path), n=2, seeds=2, max_steps=2, batch_size=32, pool=20,
              threads=1, progress=False)
    one = proxy_check.run_proxy_check(out_dir=str(tmp_path / "one"), **kw)["table"]
    two = proxy_check.run_proxy_check(out_dir=str(tmp_path / "two"), jobs=2, **kw)["table"]
    pd.testing.assert_frame_equal(one, two)
