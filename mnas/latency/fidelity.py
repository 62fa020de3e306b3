"""How well `predict` matches reality: predicted vs measured end-to-end latency of random archs of one or more
spaces, of every published hand design (MobileNetV1 0.25-1.0, V2 0.35-1.4 and 1.0 at 96-192 px, V3-Small/-Large
0.5-1.0) and of further networks a caller adds (the CLI: pruned hand designs, mnas.nn.units.random_pruned).

Writes fidelity.csv (family, name, arch, predicted, measured, spread, error), fidelity.png (scatter by family with
y = x and a +-10% band) and summary.txt (MAPE, share within +-10%, Kendall tau, worst error: overall and per
family) under runs/latency/fidelity/<device>/<timestamp>/.
A live device measures the networks here; an estimated device's cost-model module supplies its own comparison
against published figures through `fidelity() -> DataFrame(arch, predicted, measured)`.
"""
from __future__ import annotations

import importlib
import random
from datetime import datetime
from pathlib import Path

import numpy as np
import pandas as pd
from scipy.stats import kendalltau

from mnas.errors import UserError
from mnas.latency.predict import measure_missing, predict
from mnas.latency.profile import measure_archs
from mnas.latency.table import ROOT, load_device
from mnas.nn.ops import arch_ops


def summarize(predicted, measured) -> dict:
    p, m = np.asarray(predicted, float), np.asarray(measured, float)
    err = (p - m) / m
    worst = int(np.abs(err).argmax()) if len(m) else 0
    return {"n": len(m), "mape": float(np.abs(err).mean() * 100), "within10": float((np.abs(err) <= 0.1).mean() * 100),
            "tau": float(kendalltau(p, m)[0]) if len(m) > 1 else float("nan"),
            "worst": float(err[worst] * 100) if len(m) else float("nan")}


def summary_line(s: dict, device: str) -> str:
    return (f"{device}: MAPE {s['mape']:.2f}%, {s['within10']:.0f}% within +-10%, Kendall tau {s['tau']:.3f}, "
            f"worst {s['worst']:+.0f}% (n={s['n']})")


def by_family(df: pd.DataFrame) -> dict[str, dict]:
    """summarize() per family (the space's random archs, then each hand-design family)."""
    return {f: summarize(g.predicted, g.measured) for f, g in df.groupby("family", sort=False)}


def plot(df: pd.DataFrame, path: Path, title: str) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    lo, hi = 0.9 * min(df.predicted.min(), df.measured.min()), 1.1 * max(df.predicted.max(), df.measured.max())
    x = np.array([lo, hi])
    fig, ax = plt.subplots(figsize=(5, 5))
    ax.fill_between(x, x / 1.1, x * 1.1, color="tab:green", alpha=0.15, label="+-10%")
    ax.plot(x, x, "k--", lw=1, label="y = x")
    for family, g in df.groupby("family", sort=False) if "family" in df else [("", df)]:
        ax.scatter(g.measured, g.predicted, s=12, label=family or None)
    ax.set(xlim=(lo, hi), ylim=(lo, hi), xlabel="measured latency (ms)", ylabel="predicted latency (ms)",
           title=title)
    ax.legend(loc="upper left", fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def compare_live(device: str, n: int, space, seed: int, repeats: int, progress: bool, path=None,
                 baselines: bool = True, extra=()) -> pd.DataFrame:
    """n random archs of each space (`space`: a name or a list), every hand design (baselines) and the (family,
    name, arch) rows of `extra` (e.g. pruned networks): predicted (ops measured first where missing) and measured
    here, end to end, each network alone (measure_archs)."""
    from mnas.nn.models import hand_designs
    from mnas.nn.space import load_space
    cfg = load_device(device)
    rows = []
    for name in [space] if isinstance(space, str) else space:
        sp, rng = load_space(name), random.Random(seed)
        rows += [(f"{sp.name} random", f"random {i}", sp.random_arch(rng)) for i in range(n)]
    rows += [(family, name, arch) for family, _, name, arch in (hand_designs() if baselines else [])]
    rows += list(extra)
    archs = [a for _, _, a in rows]
    measure_missing(device, [k for a in archs for k in arch_ops(a)], path, progress)
    predicted = [predict(a, device, path) for a in archs]
    m = measure_archs(archs, cfg["runtime"], cfg["threads"], repeats, stat=cfg["stat"], progress=progress,
                      passes=cfg["passes"])
    return pd.DataFrame({"family": [f for f, _, _ in rows], "name": [nm for _, nm, _ in rows],
                         "arch": [a.to_string() for a in archs], "predicted": predicted, "measured": m["ms"],
                         "spread": m["spread"]})


def run_fidelity(device: str = "cpu", n: int = 100, space="v3_small", seed: int = 0, repeats: int = 100,
                 out_dir: str | Path | None = None, progress: bool = True, path=None,
                 baselines: bool = True, extra=()) -> tuple[dict, Path]:
    """Compare predictions with measurements, write the CSV, plot and summary; returns (summary, out_dir).
    `space`: one space's name or a list (n random archs of each); `extra`: more (family, name, arch) rows;
    `path`: the device's table file, if not the one its config names."""
    cfg = load_device(device)
    if cfg["kind"] == "estimated":
        df = importlib.import_module(cfg["model"]).fidelity()
    elif cfg.get("live"):
        df = compare_live(device, n, space, seed, repeats, progress, path, baselines, extra)
    else:
        raise UserError(f"device {device!r} is not measured on this machine (no 'live: true' in its config): "
                        f"its fidelity can only be checked on the device itself")
    df["error"] = (df.predicted - df.measured) / df.measured
    out = Path(out_dir) if out_dir else ROOT / "runs/latency/fidelity" / device / datetime.now().strftime(
        "%Y%m%d-%H%M%S")
    out.mkdir(parents=True, exist_ok=True)
    df.to_csv(out / "fidelity.csv", index=False)
    s = summarize(df.predicted, df.measured)
    line = summary_line(s, device)
    plot(df, out / "fidelity.png", line.replace(", Kendall", "\nKendall"))
    families = by_family(df) if "family" in df else {}
    lines = [line] + [summary_line(v, f"  {k}") for k, v in families.items()]
    (out / "summary.txt").write_text("\n".join(lines) + "\n")
    return dict(s, families=families), out
