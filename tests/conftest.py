"""Shared test fixtures: a tiny search space (two stages, 64x64 deployment) that tests load or write as YAML."""
import pytest

from mnas.nn.space import load_space

TINY_SPACE = """
name: tiny
resolution: 64
num_classes: 10
stem: {kernel: 3, stride: 2, out: 8, act: hswish}
block: {kernel: [3, 5], expand: [3, 6], se: [false, true], act: [relu, hswish]}
stages:
  - {depth: [1, 2], out: [8, 16], stride: 2}
  - {depth: [1, 2], out: [16, 24], stride: 2}
head: {out: 64, act: hswish}
hidden: {out: 0, act: hswish}
dropout: 0.0
"""


@pytest.fixture(scope="session")
def tiny_space_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("space") / "tiny.yaml"
    path.write_text(TINY_SPACE)
    return path


@pytest.fixture(scope="session")
def tiny_space(tiny_space_file):
    return load_space(str(tiny_space_file))
