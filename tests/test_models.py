"""Baselines: build, forward, counts vs published figures and vs hooks on the built module."""
import csv
from pathlib import Path

import pytest
import torch
from torch import nn

from mnas.errors import UserError
from mnas.nn.arch import ArchConfig
from mnas.nn.models import BASELINES, build, get_model
from mnas.nn.stats import count

PUBLISHED = Path(__file__).resolve().parents[2] / "shared" / "reference" / "published.csv"
WIDTHS = [0.35, 0.5, 1.0, 1.4]
# (model, width) -> (MACs in M, params in M); MobileNet papers / TF model zoo, see shared/reference/published.csv
REFERENCE = {("mobilenet_v1", 1.0): (569, 4.2), ("mobilenet_v1", 0.5): (149, 1.3), ("mobilenet_v2", 1.0): (300, 3.47),
             ("mobilenet_v2", 0.35): (59, 1.66), ("mobilenet_v2", 1.4): (582, 6.06),
             ("mobilenet_v3_large", 1.0): (217, 5.4), ("mobilenet_v3_small", 1.0): (56, 2.5)}


@pytest.mark.parametrize("name,width", list(REFERENCE))
def test_counts_match_published(name, width):
    macs, params = REFERENCE[name, width]
    c = count(get_model(name, width))
    assert abs(c.macs / 1e6 / macs - 1) < 0.03, (c, macs)
    assert abs(c.params / 1e6 / params - 1) < 0.03, (c, params)


@pytest.mark.skipif(not PUBLISHED.exists(), reason=f"{PUBLISHED} not present beside this checkout")
def test_reference_table_agrees_with_constants():
    rows = {(r["model"], float(r["width"])): r for r in csv.DictReader(PUBLISHED.open()) if r["resolution"] == "224"}
    for key, (macs, params) in REFERENCE.items():
        assert float(rows[key]["macs_m"]) == macs and float(rows[key]["params_m"]) == params


def _hook_count(model: nn.Module, res: int) -> int:
    macs = []

    def conv_hook(m, inp, out):
        macs.append(m.weight.numel() * out.shape[2] * out.shape[3])

    def linear_hook(m, inp, out):
        macs.append(m.weight.numel())

    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            m.register_forward_hook(conv_hook)
        elif isinstance(m, nn.Linear):
            m.register_forward_hook(linear_hook)
    model.eval()
    with torch.no_grad():
        model(torch.zeros(1, model.arch.in_chans, res, res))
    return sum(macs)


@pytest.mark.parametrize("name", list(BASELINES))
@pytest.mark.parametrize("width", WIDTHS)
def test_count_agrees_with_built_module(name, width):
    arch = get_model(name, width, resolution=96, num_classes=10)
    model = build(arch)
    c = count(arch)
    assert c.params == sum(p.numel() for p in model.parameters())
    assert c.macs == _hook_count(model, 96)


@pytest.mark.parametrize("name", list(BASELINES))
@pytest.mark.parametrize("width", [0.5, 1.0])
@pytest.mark.parametrize("res", [32, 224])
def test_forward(name, width, res):
    model = build(get_model(name, width, resolution=max(res, 32), num_classes=10)).eval()
    with torch.no_grad():
        y = model(torch.randn(2, 3, res, res))
    assert y.shape == (2, 10) and torch.isfinite(y).all()


@pytest.mark.parametrize("name", list(BASELINES))
def test_width_scales_macs(name):
    assert count(get_model(name, 0.5)).macs < count(get_model(name, 1.0)).macs < count(get_model(name, 1.4)).macs


def test_resolution_multiplier_scales_macs_quadratically():
    a, b = count(get_model("mobilenet_v2", resolution=224)), count(get_model("mobilenet_v2", resolution=112))
    assert a.params == b.params
    assert 3.5 < a.macs / b.macs < 4.2


def test_v3_structure():
    small, large = get_model("mobilenet_v3_small"), get_model("mobilenet_v3_large")
    assert small.blocks[0].type == "ds" and small.blocks[0].se == 8  # SE squeeze = make_divisible(16/4, 8)
    assert sum(b.se > 0 for b in large.blocks) == 8 and large.hidden == 1280 and small.hidden == 1024
    assert large.head[0].out == 960 and small.head[0].out == 576
    assert all(b.act == "relu6" for b in get_model("mobilenet_v2").blocks)
    assert all(b.pw_act for b in get_model("mobilenet_v1").blocks)


@pytest.mark.parametrize("kw", [dict(name="resnet50"), dict(name="mobilenet_v2", width=0),
                                dict(name="mobilenet_v2", width=-1), dict(name="mobilenet_v2", resolution=16)])
def test_bad_arguments_raise_user_error(kw):
    with pytest.raises(UserError, match="resnet50|width|resolution"):
        get_model(**kw)


def test_built_model_carries_its_arch():
    arch = get_model("mobilenet_v3_small", 0.75)
    model = build(arch)
    assert model.arch == arch and ArchConfig.from_string(model.arch.to_string()) == arch
