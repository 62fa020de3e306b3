"""Estimated Pixel-1 latency (TF-Lite float, one big core, batch 1): a per-op cost model fitted to public figures.

No phone is attached, so device `pixel` is an estimate. An op's time is a non-negative sum of terms (MACs by
convolution kind, feature-map traffic, unfused elementwise passes, per-operator overhead), fitted by
non-negative least squares in relative error to measured per-block tables and published end-to-end figures
(pixel_data/sources.md), with one free scale factor per source (sources disagree by up to ~20%).

    python -m mnas.latency.pixel fit        # refit, write pixel_data/coefficients.json
    python -m mnas.latency.pixel fidelity   # leave-one-out and block-level errors
"""
import datetime
import functools
import json
import re
import sys
from pathlib import Path

import numpy as np
import pandas as pd
from scipy.optimize import nnls
from scipy.stats import kendalltau

from mnas.latency.table import append_rows, empty_table
from mnas.nn.models import get_model
from mnas.nn.ops import KEY_COLUMNS, OpKey, arch_ops

DATA = Path(__file__).with_name("pixel_data")
TERMS = {  # coefficient name: what its feature counts (millions, except n_ops); every coefficient is >= 0
    "pw_mmac": "1x1 convolution MACs (expand, project, pointwise, head)",
    "dw3_mmac": "depthwise MACs, kernel 3 (kernel 1 uses this term too)",
    "dw5_mmac": "depthwise MACs, kernel 5",
    "dw7_mmac": "depthwise MACs, kernel 7",
    "conv_mmac": "full kxk convolution MACs (stem, conv blocks)",
    "fc_mparam": "weights of matrix-vector products (SE 1x1 convs, hidden and classifier linears)",
    "conv_melem": "feature-map elements read + written by convolutions",
    "eltwise_melem": "elements read + written by unfused passes: residual add, global pool, SE pool/gate, h-swish",
    "hswish_melem": "extra per element of an h-swish pass (seen only through the MobileNetV3 figures)",
    "se_melem": "extra per element of an SE pool/gate pass (seen only through the MobileNetV3 figures)",
    "n_ops": "overhead per TF-Lite operator",
}


def components(k: OpKey) -> list[tuple[str, dict[str, float]]]:
    """The op as TF-Lite operators, each with its cost-model features (see TERMS). ReLU/ReLU6 are fused into the
    conv before them (free); h-swish is assumed a separate pass over the map (read + write); SE = mean, two FCs,
    hard-sigmoid, multiply; each operator also pays the per-operator overhead."""
    parts = []

    def part(name, **terms):
        parts.append((name, {**dict.fromkeys(TERMS, 0.0), "n_ops": 1.0, **terms}))

    def conv(cin, cout, kernel, res, stride=1, dw=False):
        out = -(-res // stride)
        if dw:
            term = f"dw{min((3, 5, 7), key=lambda c: abs(c - kernel))}_mmac"
        else:
            term = "pw_mmac" if kernel == 1 else "conv_mmac"
        part("DEPTHWISE_CONV_2D" if dw else "CONV_2D", conv_melem=(cin * res * res + cout * out * out) / 1e6,
             **{term: cout * kernel * kernel * out * out * (1 if dw else cin) / 1e6})
        return out

    def eltwise(name, elems, extra=None):
        part(name, eltwise_melem=elems / 1e6, **({extra: elems / 1e6} if extra else {}))

    def act(ch, res):
        if k.act == "hswish":
            eltwise("HARD_SWISH", 2 * ch * res * res, "hswish_melem")

    def fc(cin, cout):
        part("FULLY_CONNECTED", fc_mparam=cin * cout / 1e6)

    def se(ch, res):
        if k.se:
            eltwise("MEAN", ch * res * res, "se_melem")
            fc(ch, k.se), fc(k.se, ch), part("HARD_SIGMOID")
            eltwise("MUL", 2 * ch * res * res, "se_melem")

    if k.op in ("stem", "conv", "head"):
        out = conv(k.cin, k.cout, k.kernel, k.res, k.stride)
        act(k.cout, out), se(k.cout, out)
    elif k.op == "ds":
        out = conv(k.cin, k.cin, k.kernel, k.res, k.stride, dw=True)
        act(k.cin, out), se(k.cin, out)
        conv(k.cin, k.cout, 1, out)
        if k.pw_act:
            act(k.cout, out)
    elif k.op == "ir":
        conv(k.cin, k.exp, 1, k.res)
        act(k.exp, k.res)
        out = conv(k.exp, k.exp, k.kernel, k.res, k.stride, dw=True)
        act(k.exp, out), se(k.exp, out)
        conv(k.exp, k.cout, 1, out)
    elif k.op == "classifier":
        eltwise("AVERAGE_POOL_2D", k.cin * k.res * k.res)
        if k.exp:
            fc(k.cin, k.exp), act(k.exp, 1)
        fc(k.exp or k.cin, k.cout)
    else:
        raise ValueError(f"op={k.op!r} is invalid: allowed stem, conv, ds, ir, head, classifier")
    if k.residual:
        eltwise("ADD", 3 * k.cout * out * out)
    return parts


def features(k: OpKey) -> dict[str, float]:
    """The op's features: the sum over its operators."""
    return {t: sum(f[t] for _, f in components(k)) for t in TERMS}


@functools.cache
def coefficients() -> dict:
    """The shipped fit (pixel_data/coefficients.json)."""
    return json.loads((DATA / "coefficients.json").read_text())


@functools.lru_cache(maxsize=1 << 16)
def op_ms(key: OpKey) -> float:
    """Estimated Pixel-1 time of one op, ms, for any OpKey (pruned channel counts included)."""
    coef = coefficients()["coef"]
    return float(sum(coef[t] * v for t, v in features(key).items()))


def calibration() -> tuple[float, float]:
    """(a, b) of predict = a + b * sum(op_ms): op_ms is in consensus units; b converts to UNITS' milliseconds."""
    c = coefficients()["calibration"]
    return c["a"], c["b"]


def table_for(ops) -> pd.DataFrame:
    """A `pixel` latency table for `ops`: OpKey columns + ms (estimated), spread NaN, n 0; the metadata record
    (attrs['meta']) says it is an estimate."""
    ops = list(dict.fromkeys(ops))
    rows = pd.DataFrame([k.astuple() for k in ops], columns=KEY_COLUMNS)
    rows["ms"], rows["spread"], rows["n"] = [op_ms(k) for k in ops], np.nan, 0
    meta = {"device": "pixel", "runtime": "tflite", "runtime_version": "estimate", "threads": 1, "stat": "mean",
            "dtype": "float32", "cpu": "Google Pixel 1 (estimated by mnas.latency.pixel, not measured)",
            "estimate": True, "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "calibration": dict(zip("ab", calibration()))}
    return append_rows(empty_table(meta), rows)


# ---- fitting --------------------------------------------------------------------------------------------------
def _block_key(r) -> OpKey:
    """A row of blocks.csv (public per-block tables) as an OpKey."""
    act = "relu" if r.source == "spnas" else "relu6"
    if r.op in ("Conv", "Conv_1"):
        return OpKey("stem" if r.op == "Conv" else "head", r.in_h, r.in_c, 0, r.out_c, r.kernel, r.stride, 0, act,
                     False, False)
    if r.op == "Logits":
        return OpKey("classifier", r.in_h, r.in_c, 0, r.out_c, 1, 1, 0, "relu", False, False)
    ds = r.mid_c == r.in_c
    return OpKey("ds" if ds else "ir", r.in_h, r.in_c, 0 if ds else r.mid_c, r.out_c, r.kernel, r.stride, 0, act,
                 bool(r.idskip), False)


def dataset(split: bool = True) -> pd.DataFrame:
    """Every figure the fit uses: kind (block / operator / network), source, name, ms, ref (the time its error is
    relative to; an operator's is its block's) and one column per feature. With `split`, a block whose profile
    lists its TF-Lite operators (ProxylessNAS) becomes one row per operator."""
    blocks, nets = pd.read_csv(DATA / "blocks.csv"), pd.read_csv(DATA / "networks.csv")
    rows = []
    for r in blocks.itertuples():
        option = "" if pd.isna(r.option_idx) else f"/{r.option_idx:.0f}"
        key, name = _block_key(r), f"{r.source}[{r.layer_idx}{option}]"
        parts = components(key)
        ops = re.findall(r"([A-Z_0-9]+) ([\d.]+)", r.note) if split and isinstance(r.note, str) else []
        if [n for n, _ in parts] == [n for n, _ in ops]:
            rows += [("operator", r.source, f"{name} {n}", float(ms), r.latency_ms, f)
                     for (n, ms), (_, f) in zip(ops, parts)]
        else:
            rows.append(("block", r.source, name, r.latency_ms, r.latency_ms, features(key)))
    for r in nets.itertuples():
        feats = [features(k) for k in arch_ops(get_model(r.model, r.width, r.resolution))]
        rows.append(("network", r.source, f"{r.model} {r.width} @{r.resolution}", r.ms, r.ms,
                     {t: sum(f[t] for f in feats) for t in TERMS}))
    return pd.concat([pd.DataFrame([r[:5] for r in rows], columns=["kind", "source", "name", "ms", "ref"]),
                      pd.DataFrame([r[5] for r in rows], columns=list(TERMS))], axis=1)


def _scale(p, y, w):
    """The one factor f minimising sum (w (f p - y))^2."""
    return float(np.sum(w * w * p * y) / np.sum(w * w * p * p))


def solve(data: pd.DataFrame, tol: float = 1e-11, max_iter: int = 20000) -> tuple[np.ndarray, dict[str, float]]:
    """Coefficients (>= 0) and per-source scale factors minimising the error of f_source * (X @ coef) relative to
    each row's `ref`, each source weighted equally in total; the geometric mean of the factors is fixed at 1
    (consensus units). Alternates NNLS for the coefficients and closed-form factors until both settle."""
    X, y = data[list(TERMS)].to_numpy(), data.ms.to_numpy()
    names, s = np.unique(data.source.to_numpy(), return_inverse=True)
    w = 1 / (data.ref.to_numpy() * np.sqrt(np.bincount(s)[s]))
    col, f = np.where(X.max(0) > 0, X.max(0), 1.0), np.ones(len(names))  # a term no row uses stays 0
    last = np.zeros(X.shape[1] + len(names))
    for _ in range(max_iter):
        coef = nnls(X / col * (w * f[s])[:, None], w * y)[0] / col
        p = X @ coef
        f = np.array([_scale(p[s == i], y[s == i], w[s == i]) for i in range(len(names))])
        g = np.exp(np.log(f).mean())
        f, coef = f / g, coef * g
        if np.allclose(now := np.r_[coef, f], last, rtol=tol, atol=0):
            break
        last = now
    return coef, dict(zip(names, f))


# Which campaign's milliseconds `predict(arch, "pixel")` speaks: the MobileNetV3 paper's (it timed MobileNetV2 1.0
# at 64 ms where the model-zoo README says 73.8 and the V2 paper 75). Budgets for V3-like spaces are quoted against
# that paper's figures (V3-Small 15.8 ms, V3-Large 51 ms), so the device's calibration is that source's scale.
UNITS = "v3_paper"


def fit() -> dict:
    """Fit on the shipped figures; the dict written to coefficients.json (deterministic)."""
    coef, scale = solve(dataset())
    whole = dataset(split=False)
    rel = whole[list(TERMS)].to_numpy() @ coef * whole.source.map(scale) / whole.ms - 1
    return {"model": "Pixel-1 TF-Lite float, 1 thread, batch 1; ms = sum(coef * feature), see mnas/latency/pixel.py",
            "coef": dict(zip(TERMS, coef.tolist())), "units": UNITS,
            "calibration": {"a": 0.0, "b": scale[UNITS]}, "source_scale": scale,
            "fit_median_abs_error": {s: float(np.median(abs(rel[whole.source == s]))) for s in scale}}


# ---- fidelity -------------------------------------------------------------------------------------------------
def _table_scores(b: pd.DataFrame, coef: np.ndarray) -> dict:
    p = b[list(TERMS)].to_numpy() @ coef
    y = b.ms.to_numpy()
    p = p * _scale(p, y, 1 / y)
    return {"rows": len(b), "kendall_tau": float(kendalltau(p, y)[0]),
            "median_abs_error": float(np.median(abs(p / y - 1)))}


def fidelity() -> pd.DataFrame:
    """Leave-one-out on the published end-to-end figures (refit without the figure, predict it in its source's
    units): returns arch, predicted, measured, source, consensus_ms (what device=pixel predicts). Also prints the
    per-source errors and, per public block table, Kendall tau and median error after one scale factor, in-sample
    and with that table left out of the fit (that table is in attrs['blocks'])."""
    data = dataset()
    coef, scale = solve(data)
    nets = data[data.kind == "network"].copy()
    for i in nets.index:
        c, sc = solve(data.drop(index=i))
        nets.loc[i, "predicted"] = nets.loc[i, list(TERMS)].to_numpy(float) @ c * sc[nets.source[i]]
    out = pd.DataFrame({"arch": nets.name, "predicted": nets.predicted, "measured": nets.ms, "source": nets.source,
                        "consensus_ms": nets[list(TERMS)].to_numpy() @ coef}).reset_index(drop=True)
    err = out.predicted / out.measured - 1
    whole = dataset(split=False)
    out.attrs["blocks"] = pd.DataFrame([
        {"table": src, "fit": mode, **_table_scores(whole[whole.source == src], c)}
        for src in whole[whole.kind == "block"].source.unique()
        for mode, c in (("in-sample", coef), ("table held out", solve(data[data.source != src])[0]))])
    with pd.option_context("display.width", 200):
        print("leave-one-out on the published end-to-end figures (ms in each figure's source units):")
        print(out.assign(error=err).round(3).to_string(index=False))
        print(f"median abs leave-one-out error {np.median(abs(err)):.3f}; per source:",
              {s: round(float(np.median(abs(e))), 3) for s, e in err.groupby(out.source)})
        print("source scale factors (geometric mean 1):", {k: round(float(v), 3) for k, v in scale.items()})
        print("block level, one scale factor per table:")
        print(out.attrs["blocks"].round(3).to_string(index=False))
    return out


def main(argv: list[str]) -> None:
    if argv[:1] == ["fit"]:
        text = json.dumps(fit(), indent=2)
        (DATA / "coefficients.json").write_text(text + "\n")
        print(text)
    elif argv[:1] == ["fidelity"]:
        fidelity()
    else:
        sys.exit("usage: python -m mnas.latency.pixel fit|fidelity")


if __name__ == "__main__":
    main(sys.argv[1:])
