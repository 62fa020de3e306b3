"""The comparison's report: acceptance checks (win rule, V2-curve speed-up), the Pareto plot and report.md."""
from __future__ import annotations

import os
import platform
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pandas as pd
from scipy.stats import ttest_ind_from_stats

from mnas.latency.predict import speed_note
from mnas.nn.models import FAMILIES  # family -> (baseline name, label); v2_res: MobileNetV2 1.0 at other resolutions

HAND = tuple(FAMILIES)  # every hand-designed family: V1, V2 (widths and resolutions), V3-Large, V3-Small
SPEEDUP = 1.5  # check (b): at equal accuracy, at least this much faster than the V2 width curve
SIGNIFICANCE = 0.05  # a win by the rule whose Welch p-value is at or above this is flagged as needing more seeds
COLUMNS = ["model", "family", "width", "resolution", "proxy_resolution", "latency_ms", "measured_ms", "macs", "params",
           "test_acc", "test_std", "val_acc", "val_std", "seeds", "test_acc_per_seed", "arch"]


def wins(a_mean, a_std, b_mean, b_std) -> bool:
    """a beats b: its mean is higher by more than the combined spread sqrt(std_a^2 + std_b^2)."""
    return a_mean - b_mean > float(np.hypot(a_std, b_std))


def p_value(a_mean, a_std, a_n, b_mean, b_std, b_n) -> float:
    """Welch's two-sided t-test p-value for a difference between two means over a_n and b_n seeds; nan when it is
    undefined (fewer than 2 seeds on a side, or no spread on either)."""
    if min(a_n, b_n) < 2 or a_std == b_std == 0:
        return float("nan")
    return float(ttest_ind_from_stats(a_mean, a_std, a_n, b_mean, b_std, b_n, equal_var=False).pvalue)


def latency_at_accuracy(latency, accuracy, target) -> float | None:
    """Latency of the curve through (latency, accuracy) points at accuracy `target`, linearly interpolated on its
    upper envelope (points sorted by latency, each more accurate than every faster one); None outside its range."""
    order = np.argsort(np.asarray(latency, float), kind="stable")
    lat, acc = np.asarray(latency, float)[order], np.asarray(accuracy, float)[order]
    keep = acc > np.maximum.accumulate(np.r_[-np.inf, acc[:-1]])
    lat, acc = lat[keep], acc[keep]
    if not acc[0] <= target <= acc[-1]:
        return None
    return float(np.interp(target, acc, lat))


# ------------------------------------------------------------------------------------------------ inputs


def _acc(r) -> str:
    return f"{100 * r.test_acc:.2f} ± {100 * r.test_std:.2f}%"


def check_best_in_budget(t: pd.DataFrame, m, budget_ms, col: str) -> tuple[str, str]:
    """(a) within the budget, m beats (win rule) every hand design (V1, V2, V3 variant) whose latency fits it."""
    if budget_ms is None:
        return "n.a.", "no budget given"
    if m[col] > budget_ms:
        return "FAIL", f"{m.model} takes {m[col]:.2f} ms, over the budget {budget_ms:g} ms"
    base = t[t.family.isin(HAND) & (t[col] <= budget_ms)]
    if base.empty:
        fastest = t[t.family.isin(HAND)].sort_values(col).head(1)
        return "n.a.", (f"no hand design fits {budget_ms:g} ms" + "".join(
            f" (fastest: {b.model}, {b[col]:.2f} ms)" for _, b in fastest.iterrows()))
    def p(b) -> float:
        return p_value(m.test_acc, m.test_std, m.get("seeds", 0), b.test_acc, b.test_std, b.get("seeds", 0))

    def diff(b) -> str:
        pb = p(b)
        return (f"{b.model} {_acc(b)} at {b[col]:.2f} ms: difference {100 * (m.test_acc - b.test_acc):+.2f} vs spread "
                f"{100 * np.hypot(m.test_std, b.test_std):.2f}" + ("" if np.isnan(pb) else f" (Welch p {pb:.2f})"))
    lost = [b for _, b in base.iterrows() if not wins(m.test_acc, m.test_std, b.test_acc, b.test_std)]
    head = f"{m.model} {_acc(m)} at {m[col]:.2f} ms vs {len(base)} hand design(s) within {budget_ms:g} ms"
    if lost:
        return "FAIL", f"{head}; not beaten: " + "; ".join(diff(b) for b in lost)
    weak = [b for _, b in base.iterrows() if p(b) >= SIGNIFICANCE]
    return "PASS", f"{head}; beats all, the closest being " + diff(base.loc[base.test_acc.idxmax()]) + (
        f"; not significant at {SIGNIFICANCE:g} against " + ", ".join(b.model for b in weak)
        + ": train more seeds (seeds=6) before relying on it" if weak else "")


def check_speedup(t: pd.DataFrame, m, col: str) -> tuple[str, str]:
    """(b) at m's accuracy, the V2 width curve's latency is >= SPEEDUP x m's."""
    curve = t[t.family == "v2"]
    if len(curve) < 2:
        return "n.a.", "needs at least 2 MobileNetV2 widths"
    ms = latency_at_accuracy(curve[col], curve.test_acc, m.test_acc)
    lo, hi = curve.loc[curve.test_acc.idxmin()], curve.loc[curve.test_acc.idxmax()]
    if ms is None:
        where = (f"above its most accurate point ({hi.model} {_acc(hi)} at {hi[col]:.2f} ms, "
                 f"{hi[col] / m[col]:.2f}x {m.model}'s latency)" if m.test_acc > hi.test_acc else
                 f"below its least accurate point ({lo.model} {_acc(lo)} at {lo[col]:.2f} ms)")
        return "n.a.", f"{m.model}'s accuracy {_acc(m)} lies outside the V2 width curve: {where}"
    x = ms / m[col]
    return ("PASS" if x >= SPEEDUP else "FAIL"), (f"the V2 curve reaches {m.model}'s {100 * m.test_acc:.2f}% at "
                                                  f"{ms:.2f} ms vs {m[col]:.2f} ms: {x:.2f}x (needs >= {SPEEDUP:g}x)")


def acceptance(t: pd.DataFrame, budget_ms) -> list[dict]:
    cols = [("predicted", "latency_ms")] + ([("measured", "measured_ms")] if t.measured_ms.notna().all() else [])
    out = []
    for _, m in t[t.family.isin(["found", "pruned"])].iterrows():
        for what, col in cols:
            for name, (result, detail) in (("(a) best within budget", check_best_in_budget(t, m, budget_ms, col)),
                                           (f"(b) >= {SPEEDUP:g}x faster than V2", check_speedup(t, m, col))):
                out.append(dict(check=name, model=m.model, latency=what, result=result, detail=detail))
    return out


# ------------------------------------------------------------------------------------------------ outputs
def plot(t: pd.DataFrame, budget_ms, device: str, path: Path, title: str) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import FuncFormatter
    cols = [("latency_ms", "predicted")] + ([("measured_ms", "measured")] if t.measured_ms.notna().all() else [])
    fig, axes = plt.subplots(1, len(cols), figsize=(7.5 * len(cols), 5), squeeze=False)
    for ax, (col, what) in zip(axes[0], cols):
        for i, family in enumerate(FAMILIES):
            f = t[t.family == family]
            if family == "v2_res":  # the resolution line runs through MobileNetV2 1.0 at the base resolution
                f = pd.concat([f, t[(t.family == "v2") & (t.width == 1.0)]])
            if f.empty:
                continue
            f = f.sort_values(col)
            label = FAMILIES[family][1] + (" 1.0, resolution" if family == "v2_res" else ", width")
            ax.errorbar(f[col], 100 * f.test_acc, yerr=100 * f.test_std, ms=4, capsize=2, color=f"C{i}", label=label,
                        fmt="o--" if family == "v2_res" else "o-")
            for _, r in f.iterrows():
                ax.annotate(f"r{r.resolution}" if family == "v2_res" else f"{r.width:g}", (r[col], 100 * r.test_acc),
                            fontsize=6, xytext=(3, -8), textcoords="offset points", color=f"C{i}")
        for family, marker in (("found", "*"), ("pruned", "D")):
            for _, r in t[t.family == family].iterrows():
                ax.errorbar([r[col]], [100 * r.test_acc], yerr=[100 * r.test_std], fmt=marker, capsize=3, zorder=5,
                            ms=14 if marker == "*" else 8, color="C3" if family == "found" else "C6", label=r.model)
        if budget_ms is not None:
            ax.axvline(budget_ms, color="k", ls=":", lw=1, label=f"budget {budget_ms:g} ms")
        ax.set_xscale("log")
        for axis in (ax.xaxis.set_major_formatter, ax.xaxis.set_minor_formatter):
            axis(FuncFormatter(lambda v, _: f"{v:g}"))
        ax.set_xlabel(f"{what} latency on {device} (ms, log scale)")
        ax.set_ylabel("proxy test accuracy (%), mean ± std over seeds")
        ax.grid(alpha=0.3, which="both")
        ax.legend(fontsize=7)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def machine() -> str:
    info = Path("/proc/cpuinfo").read_text().splitlines() if Path("/proc/cpuinfo").is_file() else []
    cpu = next((ln.split(":", 1)[1].strip() for ln in info if ln.startswith("model name")), platform.machine())
    return f"{platform.node()}, {cpu}, {os.cpu_count()} cores, {platform.system()} {platform.release()}"


def markdown(df: pd.DataFrame) -> str:
    cells = [[str(v) for v in row] for row in df.itertuples(index=False)]
    return "\n".join("| " + " | ".join(r) + " |" for r in [list(df.columns), ["---"] * df.shape[1], *cells])


def report(t: pd.DataFrame, checks: list[dict], info: dict) -> str:
    r, seeds, res, measured = info["recipe"], info["seeds"], info["resolution"], t.measured_ms.notna().all()
    budget = "none" if info["budget_ms"] is None else f"{info['budget_ms']:g} ms"
    factors = [f for f in info.get("speed") or () if f is not None]  # Device.speed before and after measuring
    speed = (f"; this machine's speed against its latency table's (anchor ops), before and after: "
             f"{' and '.join(f'{f:.2f}x' for f in factors)}") if factors else ""
    note = speed_note(factors)
    show = pd.DataFrame({"model": t.model, "MMACs": (t.macs / 1e6).round(1), "Mparams": (t.params / 1e6).round(2),
                         "predicted ms": t.latency_ms.round(2), "measured ms": t.measured_ms.astype(float).round(2),
                         "proxy px": t.proxy_resolution, "test acc %": [_acc(x)[:-1] for _, x in t.iterrows()],
                         "val acc %": (100 * t.val_acc).round(2)}).sort_values("predicted ms")
    lines = [
        f"# Comparison with hand-designed MobileNets on {info['device']}", "",
        f"- **Accuracy** on the proxy task `{r.data}` ({info['images']}) at {r.proxy_resolution}x{r.proxy_resolution} "
        f"(resolution variants at {r.proxy_resolution} x r / {res}, to the nearest multiple of 4), every arch's proxy "
        f"variant (mnas.nn.proxy: earliest strides 1 until total stride <= {r.max_stride}), trained from scratch; "
        f"test-split accuracy, mean ± sample std over {seeds} seeds (0..{seeds - 1})"
        + (" — fewer than 3 seeds: the spreads are unreliable" if seeds < 3 else "") + ".",
        f"- **Latency** at the deployment shape {res}x{res}x3, 1000 classes (resolution variants at their own "
        f"resolution), device `{info['device']}`: predicted (predict(arch, device))"
        + (f"; measured here ({info['measure'] or 'measure_fn'}){speed}" if measured else "") + ".",
        f"- **Budget** {budget}; **found**: {info['found'] or 'none (no run=)'}; **pruned**: {info['pruned'] or 'none'}"
        " (its arch retrained from scratch with the same recipe, like every model here).",
        f"- **Date** {info['date']}; **machine** {info['machine']}.",
        f"- **Recipe** `{info['recipe_name']}`: " + ", ".join(f"{k}={v}" for k, v in asdict(r).items())
        + f"; {info['trained']} trainings run now, {info['cached']} from the cache ({info['wall_s'] / 60:.1f} min).",
        "- **Win rule**: a model beats another only when its mean accuracy is higher by more than the combined spread "
        "sqrt(std_a² + std_b²); smaller differences are ties (short trainings are noisy and architectures differ by "
        f"1-2 points). A win with Welch's two-sided t-test p >= {SIGNIFICANCE:g} is flagged: on the cluttered proxy "
        "leads of about half a point that passed the rule on 3 seeds reversed on 3 more.", "",
        "## Acceptance checks", "",
        "(a) at the budget, higher proxy test accuracy (win rule) than every V1/V2/V3 variant whose latency fits; "
        f"(b) at equal accuracy, >= {SPEEDUP:g}x faster than the MobileNetV2 width curve (its upper envelope, "
        "linearly interpolated to the model's accuracy).", "",
        markdown(pd.DataFrame(checks)) if checks else "n.a.: no found or pruned model (pass run=<search run dir>).",
        *(["", f"**Measured figures not steady**: {note} (the trainings are cached: rerunning the command only "
           "measures again)."] if measured and note else []),
        "", "## Models", "", markdown(show if measured else show.drop(columns="measured ms")), "",
        "Found and pruned archs:", ""]
    lines += [f"- {x.model}: `{x.arch}`" for _, x in t[t.family.isin(["found", "pruned"])].iterrows()] or ["- none"]
    return "\n".join(lines) + "\n"
