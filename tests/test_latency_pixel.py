"""The estimated Pixel-1 cost model: shipped fit, monotone op costs, deterministic refit, leave-one-out fidelity."""
import dataclasses
import math

import numpy as np
import pytest

from mnas.latency import pixel
from mnas.nn.models import get_model
from mnas.nn.ops import OpKey, arch_ops

IR = OpKey("ir", 28, 40, 240, 80, 5, 1, 0, "relu6", False, False)
OPS = [OpKey("stem", 224, 3, 0, 16, 3, 2, 0, "hswish", False, False),
       OpKey("ds", 112, 32, 0, 64, 3, 1, 0, "relu", False, True),
       OpKey("ds", 112, 16, 0, 16, 3, 2, 8, "relu", False, False),
       IR, dataclasses.replace(IR, se=64, act="hswish"),
       OpKey("head", 7, 160, 0, 960, 1, 1, 0, "hswish", False, False),
       OpKey("classifier", 7, 960, 1280, 1000, 1, 1, 0, "hswish", False, False)]


def network_ms(name: str, width: float = 1.0) -> float:
    a, b = pixel.calibration()
    return a + b * sum(pixel.op_ms(k) for k in arch_ops(get_model(name, width)))


def test_shipped_fit_hits_the_published_figures():
    scale = pixel.coefficients()["source_scale"]
    assert network_ms("mobilenet_v2") == pytest.approx(73.8, rel=0.15)
    # op_ms is in consensus units; the MobileNetV3 paper's campaign runs faster (its own factor < 1).
    assert network_ms("mobilenet_v3_small") * scale["v3_paper"] == pytest.approx(15.8, rel=0.15)
    assert network_ms("mobilenet_v1") * scale["v2_paper"] == pytest.approx(113, rel=0.15)
    assert all(e < 0.12 for e in pixel.coefficients()["fit_median_abs_error"].values())


def test_refit_reproduces_shipped_coefficients():
    fitted, shipped = pixel.fit(), pixel.coefficients()
    assert fitted.keys() == shipped.keys()
    for t in pixel.TERMS:
        assert fitted["coef"][t] == pytest.approx(shipped["coef"][t], rel=1e-6, abs=1e-12)
    for s, f in shipped["source_scale"].items():
        assert fitted["source_scale"][s] == pytest.approx(f, rel=1e-6)


@pytest.mark.parametrize("key", OPS, ids=lambda k: f"{k.op}-{k.act}-se{k.se}")
def test_op_ms_positive_and_monotone(key):
    ms = pixel.op_ms(key)
    assert ms > 0 and math.isfinite(ms)
    for field in ("cin", "cout") + (("exp",) if key.exp else ()):
        assert pixel.op_ms(dataclasses.replace(key, **{field: getattr(key, field) * 2})) > ms, field
    assert pixel.op_ms(dataclasses.replace(key, res=key.res * 2)) > ms
    if key.op != "classifier":
        assert pixel.op_ms(dataclasses.replace(key, kernel=7)) >= ms


def test_kernel_se_hswish_cost_more():
    costs = [pixel.op_ms(dataclasses.replace(IR, kernel=k)) for k in (1, 3, 5, 7)]
    assert costs == sorted(costs) and len(set(costs)) == 4
    assert pixel.op_ms(dataclasses.replace(IR, se=64)) > pixel.op_ms(IR)
    assert pixel.op_ms(dataclasses.replace(IR, act="hswish")) > pixel.op_ms(IR)
    assert pixel.op_ms(dataclasses.replace(IR, cout=40, residual=True)) > pixel.op_ms(dataclasses.replace(IR, cout=40))
    with pytest.raises(ValueError, match="op="):
        pixel.op_ms(dataclasses.replace(IR, op="pool"))


def test_table_for_is_an_estimated_table():
    ops = arch_ops(get_model("mobilenet_v3_small", 0.5))
    df = pixel.table_for(ops + ops[:3])
    assert len(df) == len(set(ops)) and (df.n == 0).all() and df.spread.isna().all() and (df.ms > 0).all()
    assert df.attrs["meta"]["device"] == "pixel" and df.attrs["meta"]["estimate"] is True
    assert df.ms.iloc[0] == pytest.approx(pixel.op_ms(ops[0]))


def test_fidelity_meets_the_leave_one_out_target(capsys):
    df = pixel.fidelity()
    assert len(df) == 15 and {"arch", "predicted", "measured"} <= set(df.columns)
    assert np.median(abs(df.predicted / df.measured - 1)) <= 0.10
    blocks = df.attrs["blocks"]
    assert set(blocks.table) == {"spnas", "proxyless"} and (blocks.kendall_tau > 0.5).all()
    assert "median abs leave-one-out error" in capsys.readouterr().out
