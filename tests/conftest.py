"""Shared test fixtures: a tiny search space (two stages, 64x64 deployment) that tests load or write as YAML,
one torch thread per module (`pytestmark = pytest.mark.usefixtures("one_thread")`) and the digits data set."""
import pytest
import torch

from mnas import data
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


def randomise_state(net):
    """Give BatchNorm statistics, biases and kernel transforms values that a slicing mistake would show (a fresh
    network's BatchNorm is the identity, which hides taking the wrong channels)."""
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for name, t in net.state_dict().items():
            if name.endswith(("running_mean", "bias")):
                t.copy_(torch.randn(t.shape, generator=g) * 0.1)
            elif name.endswith(("running_var", "bn1.weight", "bn2.weight", "bn3.weight")):
                t.copy_(torch.rand(t.shape, generator=g) + 0.5)
            elif ".transforms." in name:
                t.add_(torch.randn(t.shape, generator=g) * 0.1)


@pytest.fixture(scope="module")
def one_thread():
    """Tiny models gain little from threads, and on a busy 2-core machine OpenMP oversubscription makes them
    5-10x slower: run a module on one thread, then restore."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="module")
def digits():
    """scikit-learn's 8x8 digits with the default validation carve-out (modules may define their own)."""
    return data.load("digits")
