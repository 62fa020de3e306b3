"""Files a person opens after a search: trials table, accuracy-vs-latency plot, a printed summary."""
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402

COLUMNS = ["number", "state", "accuracy", "latency_ms", "macs", "params", "estimated", "baseline", "derived", "seconds",
           "arch"]


def trials_frame(study) -> pd.DataFrame:
    """One row per trial; `state` is Optuna's state name (COMPLETE, FAIL, RUNNING, ...)."""
    rows = []
    for t in study.get_trials(deepcopy=False):
        a = t.user_attrs
        secs = (t.datetime_complete - t.datetime_start).total_seconds() if t.datetime_complete else None
        rows.append({"number": t.number, "state": t.state.name,
                     "accuracy": a.get("accuracy") if a.get("estimated") else None,
                     "latency_ms": a.get("latency_ms"), "macs": a.get("macs"), "params": a.get("params"),
                     "estimated": a.get("estimated"), "baseline": a.get("baseline"),
                     "derived": a.get("derived"), "seconds": secs,
                     "arch": a.get("arch")})
    return pd.DataFrame(rows, columns=COLUMNS)


def pareto_front(df: pd.DataFrame) -> pd.DataFrame:
    """Rows not beaten by any other row on both accuracy (higher) and latency (lower)."""
    df = df.sort_values(["latency_ms", "accuracy"], ascending=[True, False])
    return df[df["accuracy"] > df["accuracy"].cummax().shift(fill_value=-1.0)]


def pareto_plot(trials: pd.DataFrame, budget_ms: float, path: Path, title: str) -> None:
    done = trials[(trials["state"] == "COMPLETE") & (trials["estimated"] == True)]  # noqa: E712
    fig, ax = plt.subplots(figsize=(7, 4.5))
    ax.scatter(done["latency_ms"], 100 * done["accuracy"], s=14, alpha=0.5, label="trials")
    if len(done):
        front = pareto_front(done)
        ax.step(front["latency_ms"], 100 * front["accuracy"], where="post", color="C1", label="Pareto front")
    base = done[done["baseline"].notna()]
    for _, r in base.iterrows():
        ax.scatter(r["latency_ms"], 100 * r["accuracy"], marker="*", s=120, color="C3", zorder=3)
        ax.annotate(r["baseline"], (r["latency_ms"], 100 * r["accuracy"]), fontsize=7, xytext=(4, 4),
                    textcoords="offset points")
    ax.axvline(budget_ms, color="k", ls="--", lw=1, label=f"budget {budget_ms:g} ms")
    ax.set_xlabel("predicted latency at 224x224x3, 1000 classes (ms)")
    ax.set_ylabel("estimated accuracy on the proxy task (%)")
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def summary_table(trials: pd.DataFrame, budget_ms: float, best: int | None, top: int = 5) -> str:
    """The best trials within budget, the chosen one (`best`, marked *; the final choice may rank lower by its
    estimate) and the baselines, as a fixed-width text table. With a `measured_ms` column (a live device) the
    budget holds for it too, and it is shown."""
    ok = trials[(trials["state"] == "COMPLETE") & (trials["estimated"] == True)]  # noqa: E712
    measured = "measured_ms" in ok and ok["measured_ms"].notna().any()
    over = (ok["latency_ms"] > budget_ms) | (ok["measured_ms"] > budget_ms if measured else False)
    fits = ok[~over].sort_values("accuracy", ascending=False).head(top)
    derived = ok[ok["derived"].notna()] if "derived" in ok else ok.iloc[:0]
    rows = pd.concat([fits, ok[ok["number"] == best], derived, ok[ok["baseline"].notna()]]).drop_duplicates("number")
    counts = trials["state"].value_counts().to_dict()
    lines = [f"trials: {', '.join(f'{n} {s.lower()}' for s, n in counts.items())}; budget {budget_ms:g} ms "
             f"(latency predicted{' and measured' if measured else ''} at 224x224; accuracy on the proxy task's "
             "validation split)",
             f"{'':2}{'trial':>5} {'acc %':>6} {'lat ms':>7}" + (f" {'meas ms':>7}" if measured else "")
             + f" {'MMACs':>6} {'Mparams':>7}  what"]
    for i, r in rows.iterrows():
        mark = "*" if r["number"] == best else " "
        what = r["baseline"] if isinstance(r["baseline"], str) else r["arch"][:60] + "..."
        what = f"{r['derived']} (derived)" if isinstance(r.get("derived"), str) else what
        what += " (over budget)" if over[i] else ""
        meas = (f" {r['measured_ms']:>7.2f}" if pd.notna(r["measured_ms"]) else f" {'-':>7}") if measured else ""
        lines.append(f"{mark:2}{r['number']:>5} {100 * r['accuracy']:>6.2f} {r['latency_ms']:>7.2f}{meas} "
                     f"{r['macs'] / 1e6:>6.1f} {r['params'] / 1e6:>7.2f}  {what}")
    return "\n".join(lines)
