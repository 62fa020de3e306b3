"""Slimmable network: every slimming equals its extracted model, widths stay on the grid and above the floor, a
trained start network's weights load, sandwich training learns and resumes exactly (digits, tiny networks)."""
import random

import pytest
import torch
from conftest import randomise_state

from mnas.data import load
from mnas.errors import UserError
from mnas.nn.models import build, get_model
from mnas.nn.proxy import proxy_arch
from mnas.nn.stats import count
from mnas.nn.units import channels, resize, units
from mnas.supernet import SupernetSettings, train_supernet
from mnas.supernet.slimmable import Slimmable, Slimming
from mnas.train import evaluate, recalibrate_bn

pytestmark = pytest.mark.usefixtures("one_thread")
STARTS = {name: get_model(name, w, 64, num_classes=10) for name, w in
          (("mobilenet_v1", 0.25), ("mobilenet_v2", 0.35), ("mobilenet_v3_small", 0.5), ("mobilenet_v3_large", 0.5))}
FAST = dict(batch_size=64, lr=0.2, label_smoothing=0.0, n_random=1, augment=False, max_stride=16)


@pytest.mark.parametrize("name", STARTS)
def test_slimmings_equal_their_extracted_models(name):
    slim = Slimming(STARTS[name], name)
    torch.manual_seed(0)
    net = Slimmable(slim, num_classes=10)
    randomise_state(net)
    net.eval()
    x = torch.randn(2, 3, 32, 32)
    rng = random.Random(0)
    archs = [slim.extreme(True), slim.extreme(False)] + [slim.random_arch(rng) for _ in range(6)]
    for arch in archs:
        net.set_active(arch)
        with torch.no_grad():
            model = net.extract(arch)
            diff = (net(x) - model(x)).abs().max().item()
        assert diff < 1e-4, (diff, arch.to_string())
        assert count(model.arch).params == sum(p.numel() for p in model.parameters())
        build(arch).load_state_dict(model.state_dict())  # the deployment shape takes the weights
    full = net.extract(slim.start)  # the start network's own weights, untouched
    assert all(full.state_dict()[k].equal(v) for k, v in net.net.state_dict().items())


def test_widths_are_on_the_grid_and_above_the_floor():
    start = STARTS["mobilenet_v2"]
    slim = Slimming(start, "v2", min_width=0.5)
    rng = random.Random(1)
    seen = set()
    for _ in range(20):
        arch = slim.random_arch(rng)
        slim.check(arch)
        for u in units(start):
            c, full = channels(arch, u), channels(start, u)
            assert (full - c) % 8 == 0 and slim.floor(u) <= c <= full
            seen.add(c < full)
    assert seen == {True, False}
    smallest = slim.extreme(False)
    assert all(channels(smallest, u) == slim.floor(u) >= min(channels(start, u), 8) for u in units(start))
    assert all(slim.floor(u) >= 0.5 * channels(start, u) for u in units(start))


def test_other_networks_are_refused():
    slim = Slimming(STARTS["mobilenet_v2"], "v2")
    net = Slimmable(slim, num_classes=10)
    u = units(slim.start)[1]
    wider = resize(slim.start, u, channels(slim.start, u) + 8)
    for arch in (wider, STARTS["mobilenet_v1"]):
        with pytest.raises(UserError, match="not a slimming of the slimmable v2"):
            net.set_active(arch)
    with pytest.raises(UserError, match="min_width"):
        Slimming(slim.start, min_width=0)


def test_a_trained_start_network_loads():
    start = STARTS["mobilenet_v3_small"]
    trained = build(proxy_arch(start, 10), seed=3)
    net = Slimmable(Slimming(start), num_classes=10)
    net.net.load_state_dict(trained.state_dict())
    x = torch.randn(2, 3, 32, 32)
    trained.eval(), net.eval()
    with torch.no_grad():
        assert torch.allclose(net(x), trained(x), atol=1e-5)


def test_sandwich_training_resumes_exactly(tmp_path):
    digits = load("digits", val_size=0.2, train_subset=256)
    slim = Slimming(STARTS["mobilenet_v2"], "v2")
    s = SupernetSettings(epochs=2, smallest=True, **FAST)  # 4 steps per epoch
    whole, info = train_supernet(slim, digits, s, tmp_path / "whole", progress=False)
    assert info["complete"] and info["step"] == 8
    part, info_part = train_supernet(slim, digits, s, tmp_path / "killed", max_steps=3, progress=False)
    assert info_part["step"] == 3 and not info_part["complete"]
    resumed, _ = train_supernet(slim, digits, s, tmp_path / "killed", progress=False)
    a, b = whole.state_dict(), resumed.state_dict()
    assert all(a[k].equal(b[k]) for k in a)
    torch.manual_seed(s.seed)
    assert not Slimmable(slim, 10).state_dict()["net.classifier.fc.weight"].equal(a["net.classifier.fc.weight"])


def test_every_width_learns(tmp_path):
    """After sandwich training, the start network, its smallest slimming and a random one all classify digits
    far above chance with BatchNorm re-estimated and no training of their own."""
    digits = load("digits", val_size=0.2)
    slim = Slimming(STARTS["mobilenet_v2"], "v2", min_width=0.5)
    s = SupernetSettings(epochs=4, smallest=True, **dict(FAST, lr=0.1))
    net, _ = train_supernet(slim, digits, s, tmp_path / "net", progress=False)
    for arch in (slim.extreme(True), slim.extreme(False), slim.random_arch(random.Random(5))):
        model = net.extract(arch)
        recalibrate_bn(model, digits.train, 32, seed=0)
        assert evaluate(model, digits.val, 32)[0] > 0.5, arch.to_string()  # chance is 0.1
