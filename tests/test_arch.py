"""ArchConfig/BlockConfig: validation, exact string and JSON round trips, unknown tokens rejected."""
import pytest

from mnas.nn.arch import ArchConfig, BlockConfig, make_divisible
from mnas.nn.models import BASELINES, get_model


@pytest.mark.parametrize("name", list(BASELINES))
@pytest.mark.parametrize("width", [0.25, 0.35, 0.5, 0.75, 1.0, 1.4])
def test_round_trips(name, width):
    a = get_model(name, width, resolution=160, num_classes=10)
    s = a.to_string()
    assert ArchConfig.from_string(s) == a
    assert ArchConfig.from_json(a.to_json()) == a
    assert ArchConfig.from_string(s).to_string() == s


def test_dropout_round_trips_exactly():
    a = get_model("mobilenet_v2").replace(dropout=0.123456789)
    assert ArchConfig.from_string(a.to_string()).dropout == 0.123456789


def test_make_divisible():
    assert make_divisible(32 * 0.35) == 16  # 8 would lose more than 10%
    assert make_divisible(24 * 1.4) == 32 and make_divisible(16) == 16 and make_divisible(3) == 8


@pytest.mark.parametrize("kw,field", [
    (dict(type="sep", kernel=3, stride=1, out=8, act="relu"), "type"),
    (dict(type="ir", kernel=4, stride=1, out=8, act="relu", exp=16), "kernel"),
    (dict(type="ir", kernel=3, stride=3, out=8, act="relu", exp=16), "stride"),
    (dict(type="ir", kernel=3, stride=1, out=8, act="gelu", exp=16), "act"),
    (dict(type="ir", kernel=3, stride=1, out=0, act="relu", exp=16), "out"),
    (dict(type="ir", kernel=3, stride=1, out=8, act="relu"), "exp"),
    (dict(type="ds", kernel=3, stride=1, out=8, act="relu", exp=16), "exp"),
    (dict(type="ir", kernel=3, stride=1, out=8, act="relu", exp=16, se=-1), "se"),
    (dict(type="ir", kernel=3, stride=1, out=8, act="relu", exp=16, pw_act=True), "pw_act"),
    (dict(type="conv", kernel=3.0, stride=1, out=8, act="relu"), "kernel"),
])
def test_block_validation_names_field(kw, field):
    with pytest.raises(ValueError, match=rf"^{field}=.*allowed"):
        BlockConfig(**kw)


def test_arch_validation():
    a = get_model("mobilenet_v2")
    with pytest.raises(ValueError, match="residual"):
        a.replace(blocks=(BlockConfig("ir", 3, 2, 16, "relu6", exp=64, residual=True),))
    with pytest.raises(ValueError, match="resolution"):
        a.replace(resolution=16)
    with pytest.raises(ValueError, match="stem"):
        a.replace(stem=BlockConfig("ds", 3, 2, 16, "relu"))
    with pytest.raises(ValueError, match="head"):
        a.replace(head=(BlockConfig("conv", 3, 1, 16, "relu"),))
    with pytest.raises(ValueError, match="dropout"):
        a.replace(dropout=1.5)


@pytest.mark.parametrize("bad", [
    "", "r224-in3-stem_k3_s2_c16_hswish-ir_k3_s1_e64_c16_relu_foo-cls10_d0.2",   # unknown block token
    "r224-in3-stem_k3_s2_c16_hswish-xx_k3_s1_c16_relu-cls10_d0.2",              # unknown layer kind
    "r224-in3-stem_k3_s2_c16_hswish-ir_k3_s1_e64_c16_relu-cls10",               # classifier without dropout
    "r224-stem_k3_s2_c16_hswish-ir_k3_s1_e64_c16_relu-cls10_d0.2",              # missing in<ch>
    "r224-in3-stem_k3_s2_c16_hswish-ir_k3_k5_s1_e64_c16_relu-cls10_d0.2",       # repeated token
    "r224-in3-stem_k3_s2_c16_hswish-ir_k9_s1_e64_c16_relu-cls10_d0.2",          # out-of-range kernel
    "r224-in3-stem_k3_s2_c16_hswish-ir_k3_s1_e64_c16-cls10_d0.2",               # missing activation
    "r8-in3-stem_k3_s2_c16_hswish-ir_k3_s1_e64_c16_relu-cls10_d0.2",            # resolution too small
])
def test_bad_strings_raise(bad):
    with pytest.raises(ValueError):
        ArchConfig.from_string(bad)


@pytest.mark.parametrize("bad", ["{", "[]", '{"foo": 1}', '{"stem": {"type": "conv"}, "blocks": []}'])
def test_bad_json_raises(bad):
    with pytest.raises(ValueError):
        ArchConfig.from_json(bad)
