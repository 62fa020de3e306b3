"""Prune a trained network to a latency target with NetAdapt: `python -m mnas.prune model=mobilenet_v2 target=0.7x`.

Input: a baseline (`model=mobilenet_v2 width=1.0`) or a search run (`search=runs/search/<device>/<time>`, its
best.json arch). Weights: `checkpoint=<file>`, or a model.pt / checkpoint.pt inside the search run; without one
(or with init=scratch) the proxy network is first trained from scratch for init_steps. Training and evaluation
use the proxy variant (mnas.nn.proxy) on the proxy task; latency is predicted for the deployment shape (same
channels, e.g. 224x224) and, on a device measured on this machine (device=cpu), also measured.

Writes runs/prune/<device>/<time>/: config.yaml, start.json, history.csv (one row per iteration), proposals.csv
(every proposal), iters/iter_NNN.pt; after the target, a longer fine-tune and model.pt (load with
mnas.train.load_checkpoint: the proxy network), arch.json / arch.txt (the deployment arch), result.json, path.png.
compare_width=true also trains, for the same total steps, the unpruned network and the width-multiplied baseline
of the pruned network's latency, `compare_seeds` times each, and measures all three side by side (compare.csv, one
row per network and run; compare.json, their means and NetAdapt's claim checked). `resume=<run dir>` continues
(with a larger compare_seeds: adds runs).
"""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import torch  # noqa: E402

from mnas.cli import parse_ms  # noqa: E402
from mnas.errors import UserError  # noqa: E402
from mnas.nn.arch import ArchConfig
from mnas.nn.models import build, get_model
from mnas.nn.proxy import proxy_arch
from mnas.nn.stats import count
from mnas.nn.units import minimal_arch
from mnas.prune.netadapt import checkpoint_path, netadapt, read_history
from mnas.prune.oneshot import OneShot, slimming, train_slimmable
from mnas.prune.settings import Settings
from mnas.rundir import arch_of
from mnas.train import evaluate, load_checkpoint, save_checkpoint, train_from_scratch  # noqa: E402

RESUME_OVERRIDES = ("compare_seeds", "threads", "jobs")  # taken from the command line when resuming, not the saved run
COMPARE = ["network", "run", "steps", "val_acc", "test_acc", "latency_ms", "measured_ms", "macs", "params", "arch"]


def parse_target(target, start_ms: float) -> float:
    """'12ms' (any parse_ms form) or '0.7x' (a fraction of start_ms) -> ms; must lie below start_ms."""
    text = str(target).strip().lower()
    if text.endswith("x"):
        try:
            ratio = float(text[:-1])
        except ValueError:
            ratio = None
        if ratio is None or not 0 < ratio < 1:
            raise UserError(f"target {target!r} is invalid: a fraction of the start latency must lie in (0, 1), "
                            f"like 0.7x")
        return ratio * start_ms
    ms = parse_ms(target, "target")
    if ms >= start_ms:
        raise UserError(f"target {ms:g} ms is not below the start latency ({start_ms:.2f} ms): use a smaller "
                        f"target, like {0.7 * start_ms:.1f}ms or 0.7x")
    return ms


def check_target(deploy: ArchConfig, target, latency_fn, s: Settings, oneshot: OneShot | None = None
                 ) -> tuple[float, float]:
    """(target ms, start ms); a target at or above the start, or below the fastest prunable arch, is a UserError."""
    start_ms = float(latency_fn(deploy))
    target_ms = parse_target(target, start_ms)
    if oneshot:
        floor, where = slimming(deploy, "", oneshot, s.step, s.min_channels).extreme(False), \
            f"at the slimmable network's narrowest widths (slim_min_width={oneshot.min_width})"
    else:
        floor, where = minimal_arch(deploy, s.min_channels, s.step), f"at its minimum width ({s.min_channels} channels)"
    floor_ms = float(latency_fn(floor))
    if target_ms < floor_ms:
        raise UserError(f"target {target_ms:.2f} ms is unreachable: with every unit {where} the network still "
                        f"takes {floor_ms:.2f} ms; the minimum reachable target is {floor_ms:.2f} ms (start "
                        f"{start_ms:.2f} ms)")
    return target_ms, start_ms


def check_seeds(n) -> None:
    if not (isinstance(n, int) and not isinstance(n, bool) and n >= 1):
        raise UserError(f"compare_seeds={n!r} is invalid: use a positive integer (runs per compared network)")


def start_model(deploy: ArchConfig, data, checkpoint, init, init_steps: int, lr: float, s: Settings,
                max_stride: int = 8, progress: bool = True):
    """(proxy network with starting weights, {source, steps}): the checkpoint's weights, or trained from scratch."""
    if init not in (None, "scratch", "checkpoint"):
        raise UserError(f"init={init!r} is invalid: use scratch, checkpoint or null (checkpoint if there is one)")
    if init == "checkpoint" and not checkpoint:
        raise UserError("init=checkpoint but there is no checkpoint: pass checkpoint=<file> or use init=scratch")
    if checkpoint and init != "scratch":
        net = build(proxy_arch(deploy, data.num_classes, max_stride), seed=s.seed)
        weights = load_checkpoint(checkpoint).state_dict()  # a missing or corrupt file is a UserError here
        try:
            net.load_state_dict(weights)
        except RuntimeError:
            raise UserError(f"checkpoint {checkpoint} does not fit the arch to prune ({deploy.to_string()}, "
                            f"{data.num_classes} classes): pass the checkpoint trained for it") from None
        steps = torch.load(checkpoint, map_location="cpu", weights_only=True).get("metrics", {}).get("steps")
        return net, {"source": str(checkpoint), "steps": steps}
    net, _ = train_from_scratch(deploy, data, max_stride, s.seed, **s.fit_options(init_steps, lr, progress))
    return net, {"source": "scratch", "steps": init_steps}


def train_reference(arch: ArchConfig, data, steps: int, lr: float, s: Settings, max_stride: int, progress: bool,
                    run: int = 0):
    """The proxy network of `arch` trained from scratch for `steps` (init and data order from s.seed + run):
    (val_acc, test_acc)."""
    _, m = train_from_scratch(arch, data, max_stride, s.seed + run, test=True, **s.fit_options(steps, lr, progress))
    return m["val_acc"], m["test_acc"]


def width_network(model: str, w: float, deploy: ArchConfig) -> ArchConfig:
    """Baseline `model` at width multiplier `w`, with the start network's resolution, classes and input channels."""
    return get_model(model, w, deploy.resolution, deploy.num_classes, deploy.in_chans)


def matching_width(model: str, width: float, deploy: ArchConfig, ms: float, latency_fn) -> float:
    """The width multiplier (bisection in [0.1, width], 3 decimals) whose baseline latency is closest to `ms`."""
    lat = lambda w: latency_fn(width_network(model, w, deploy))  # noqa: E731
    lo, hi = 0.1, width
    for _ in range(7):
        mid = round((lo + hi) / 2, 3)
        lo, hi = (lo, mid) if lat(mid) > ms else (mid, hi)
    return min((lo, hi), key=lambda w: abs(lat(w) - ms))


MATCH_STEPS = (-0.1, -0.075, -0.05, -0.025, 0.0, 0.025, 0.05, 0.075, 0.1)  # around the predicted match, relative


def measured_width(model: str, width: float, deploy: ArchConfig, pruned: ArchConfig, predicted_w: float,
                   measure_fn, out_dir: Path) -> float:
    """On a measured device: the width multiplier whose *measured* latency is closest to the pruned network's,
    both measured side by side in one call (the host's speed drifts between calls). Candidates: the predicted
    match +-10% in steps of 2.5% (widths giving the same channels counted once, none above `width`); each
    candidate's measurement is written to width_match.csv."""
    cands = {}
    for f in MATCH_STEPS:
        w = round(min(width, max(0.1, predicted_w * (1 + f))), 3)
        cands.setdefault(width_network(model, w, deploy).to_string(), w)  # the narrowest width of each network
    widths = list(cands.values())
    ms = measure_fn([pruned] + [width_network(model, w, deploy) for w in widths])
    table = pd.DataFrame({"width": [None, *widths], "network": ["pruned", *(f"{model} x{w:g}" for w in widths)],
                          "measured_ms": ms})
    table["minus_pruned_ms"] = table["measured_ms"] - ms[0]
    table.to_csv(out_dir / "width_match.csv", index=False)
    best = table.iloc[1:].loc[table["minus_pruned_ms"].iloc[1:].abs().idxmin()]
    return float(best["width"])


def width_of_rows(rows: list, model: str) -> float | None:
    """The width of the width-multiplied network already in compare.csv's rows (a resumed comparison keeps it)."""
    for r in rows:
        name = str(r["network"])
        if name.startswith(f"{model} x"):
            return float(name[len(model) + 2:])
    return None


def compare_width(model: str, width: float, deploy0: ArchConfig, pruned: dict, data, steps: int, latency_fn,
                  measure_fn, out_dir: Path, lr: float, s: Settings, max_stride: int, progress: bool,
                  seeds: int = 1, refit_pruned=None) -> pd.DataFrame:
    """The pruned network next to the unpruned one and the width-multiplied baseline of its latency (its measured
    latency when measure_fn is given: measured_width; a resumed comparison keeps its width), the two
    trained from scratch for the same total steps, `seeds` times each (seed s.seed + run); measured (each alone,
    warm: mnas.latency.profile.measure_archs) when measure_fn is given. Run 0 of "pruned" is the NetAdapt result;
    `refit_pruned(run) -> (val, test)` gives further runs (the final training repeated with another seed: the
    pruning path is run 0's). One compare.csv row per (network, run); finished rows are kept (resume)."""
    deploy_p = ArchConfig.from_string(pruned["arch"])
    path = out_dir / "compare.csv"
    rows = pd.read_csv(path).to_dict("records") if path.exists() else []
    w = width_of_rows(rows, model)
    if w is None:
        w = matching_width(model, width, deploy0, pruned["latency_ms"], latency_fn)
        if measure_fn:
            w0, w = w, measured_width(model, width, deploy0, deploy_p, w, measure_fn, out_dir)
            print(f"compare: width multiplier {w:g} matches the pruned network's measured latency "
                  f"({w0:g} its predicted one; width_match.csv)")
    nets = {"pruned": deploy_p, f"unpruned {model} x{width:g}": deploy0,
            f"{model} x{w:g}": width_network(model, w, deploy0)}
    for r in rows:  # files written before compare_seeds existed hold run 0 only
        r["run"] = 0 if pd.isna(r.get("run", float("nan"))) else int(r["run"])
    done = {(r["network"], r["run"]) for r in rows}
    for run in range(seeds):
        for name, arch in nets.items():
            if (name, run) in done:
                continue
            if name == "pruned":
                if run == 0:
                    val, test = pruned["val_acc"], pruned["test_acc"]
                else:
                    print(f"compare: repeating the pruned network's final training with seed {s.seed + run}")
                    val, test = refit_pruned(run)
            else:
                print(f"compare: training {name} from scratch for {steps} steps (seed {s.seed + run})")
                val, test = train_reference(arch, data, steps, lr, s, max_stride, progress, run)
            c = count(arch)
            rows.append(dict(network=name, run=run, steps=steps, val_acc=val, test_acc=test,
                             latency_ms=latency_fn(arch), measured_ms=None, macs=c.macs, params=c.params,
                             arch=arch.to_string()))
            pd.DataFrame(rows, columns=COMPARE).to_csv(path, index=False)
    if measure_fn:
        archs = list(dict.fromkeys(r["arch"] for r in rows))  # each network once, all side by side
        ms = dict(zip(archs, measure_fn([ArchConfig.from_string(a) for a in archs])))
        for r in rows:
            r["measured_ms"] = ms[r["arch"]]
    df = pd.DataFrame(rows, columns=COMPARE).sort_values(["run"], kind="stable")
    df.to_csv(path, index=False)
    return df


def summarize_compare(df: pd.DataFrame) -> tuple[pd.DataFrame, dict]:
    """(one row per network: runs, mean/std of val and test accuracy, latencies), and NetAdapt's claim checked:
    speed-up of pruned over unpruned (measured when there is a measurement), its test-accuracy drop, and its
    margin over the width-multiplied baseline, each with the runs' spreads."""
    g = df.groupby("network", sort=False)
    table = pd.DataFrame({"runs": g.size(), "test_acc": g["test_acc"].mean(), "test_std": g["test_acc"].std(),
                          "val_acc": g["val_acc"].mean(), "latency_ms": g["latency_ms"].first(),
                          "measured_ms": g["measured_ms"].first(), "macs": g["macs"].first()}).reset_index()
    row = {r["network"]: r for r in table.to_dict("records")}
    pruned = row["pruned"]
    unpruned = next(r for n, r in row.items() if n.startswith("unpruned "))
    width = next(r for n, r in row.items() if n not in ("pruned", unpruned["network"]))
    key = "measured_ms" if pd.notna(pruned["measured_ms"]) else "latency_ms"
    def spread(a, b):  # None with a single run: there is no spread to compare against
        stds = [a["test_std"], b["test_std"]]
        return None if any(pd.isna(x) for x in stds) else float(np.sqrt(sum(x ** 2 for x in stds)))
    checks = {"latency": "measured" if key == "measured_ms" else "predicted",
              "speedup": unpruned[key] / pruned[key], "width_network": width["network"],
              "width_speedup": width[key] / pruned[key],
              "drop": unpruned["test_acc"] - pruned["test_acc"], "drop_spread": spread(unpruned, pruned),
              "over_width": pruned["test_acc"] - width["test_acc"], "over_width_spread": spread(width, pruned),
              "runs": int(table["runs"].min())}
    return table, checks


def format_checks(c: dict) -> str:
    std = lambda x: "n/a, 1 run" if x is None else f"{100 * x:.2f}"  # noqa: E731
    return (f"NetAdapt vs the unpruned network and {c['width_network']}, test accuracy over {c['runs']} run(s): "
            f"{c['latency']} speed-up {c['speedup']:.2f}x (goal >= 1.3x); accuracy drop {100 * c['drop']:+.2f} "
            f"points (goal <= 0.5; runs' combined std {std(c['drop_spread'])}); over the width-multiplied "
            f"network {100 * c['over_width']:+.2f} points (goal > 0; combined std {std(c['over_width_spread'])}"
            f"; its {c['latency']} latency {c['width_speedup']:.2f}x the pruned one's)")


def path_label(s: Settings, oneshot: bool = False) -> str:
    """How the path's accuracies were obtained, for the plot's legend."""
    steps = ["each a slimming of the slimmable network"] if oneshot else []
    steps += [f"{s.finetune_steps} fine-tune steps per proposal"] if s.finetune_steps else []
    steps += [f"{s.chosen_steps} more for the chosen one"] if s.chosen_steps else []
    steps += ["BatchNorm re-estimated"] if s.bn_recalibration else []
    return f"NetAdapt path ({', '.join(steps) or 'no fine-tune'}; first eval_images of val)"


def plot_path(history: pd.DataFrame, result: dict, compare: pd.DataFrame | None, path: Path, title: str,
              label: str) -> None:
    fig, ax = plt.subplots(figsize=(7, 4.5))
    ax.plot(history["latency_ms"], 100 * history["val_acc"], "o-", ms=4, label=label)
    for _, r in history.iterrows():
        ax.annotate(str(int(r["iteration"])), (r["latency_ms"], 100 * r["val_acc"]), fontsize=7, xytext=(3, 3),
                    textcoords="offset points")
    f = result["final"]
    ax.scatter([f["latency_ms"]], [100 * f["val_acc"]], marker="*", s=140, color="C3", zorder=3,
               label="pruned, after the final fine-tune (whole val)")
    if compare is not None:
        g = compare.groupby("network", sort=False)
        for i, (name, r) in enumerate(g):
            std = 100 * r["val_acc"].std() if len(r) > 1 else None
            ax.errorbar([r["latency_ms"].iloc[0]], [100 * r["val_acc"].mean()], yerr=std, fmt="*" if name ==
                        "pruned" else "s", ms=9, capsize=3, color="C3" if name == "pruned" else f"C{i + 4}", zorder=3,
                        label=f"{name}: {int(r['steps'].iloc[0])} steps in all, {len(r)} run(s), mean +- std")
    ax.axvline(result["target_ms"], color="k", ls="--", lw=1, label=f"target {result['target_ms']:.2f} ms")
    ax.set_xlabel("predicted latency at the deployment shape (ms)")
    ax.set_ylabel("validation accuracy on the proxy task (%)")
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def run_prune(deploy: ArchConfig, data, target, latency_fn, out_dir, s: Settings, measure_fn=None,
              checkpoint=None, init=None, init_steps: int = 1000, final_steps: int = 1000, lr: float = 0.05,
              max_stride: int = 8, compare: tuple[str, float] | None = None, device: str = "?",
              progress: bool = True, compare_seeds: int = 1, final_lr: float | None = None,
              oneshot: OneShot | None = None, label: str = "network", slimmable=None) -> dict:
    """Prune `deploy` (weights: checkpoint, else init_steps from scratch) until latency_fn <= target ('12ms' or
    '0.7x'), fine-tune final_steps (peak final_lr, default s.finetune_lr), write the run folder (see module doc).
    `oneshot` (mnas.prune.oneshot) scores the proposals on a slimmable network of `deploy` (named `label`) trained
    for it instead, and trains the result for final_steps from its slimmable weights or from scratch (at `lr`); a
    given `slimmable` (e.g. the search's supernet: mnas.supernet.elastic.Supernet.slimmings) scores them with no
    training of its own.
    `compare=(baseline, width)` adds the comparison (compare_seeds runs of each network). A folder that already
    holds a history resumes. Returns result.json's dict."""
    check_seeds(compare_seeds)
    s.check()
    target_ms, start_ms = check_target(deploy, target, latency_fn, s, oneshot)  # before anything is written
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    model, slim = None, None
    if oneshot:
        s = dataclasses.replace(s, finetune_steps=0, chosen_steps=0)  # proposals are slimmings: nothing to tune
        slim, start = (slimmable, {"source": "given slimmable network", "steps": None}) if slimmable else \
            train_slimmable(deploy, label, data, oneshot, s.seed, s.proxy_resolution, max_stride, s.step,
                            s.min_channels, progress)
        model = slim.extract(deploy)
    elif not (out_dir / "history.csv").exists():
        model, start = start_model(deploy, data, checkpoint, init, init_steps, lr, s, max_stride, progress)
    if not (out_dir / "history.csv").exists():
        (out_dir / "start.json").write_text(json.dumps(start, indent=2))
    start = json.loads((out_dir / "start.json").read_text())
    model, deploy_p, history = netadapt(model, deploy, data, target_ms, latency_fn, out_dir, s, measure_fn, progress,
                                        slimmable=slim)
    iterations = int(history["iteration"].iloc[-1])
    final_path = out_dir / "model.pt"
    scratch = oneshot is not None and oneshot.final_init == "scratch"
    if (out_dir / "result.json").exists() and final_path.exists():
        result = json.loads((out_dir / "result.json").read_text())
    else:
        if scratch:  # the chosen widths trained anew, as long as the networks they are compared with
            model, _ = train_from_scratch(deploy_p, data, max_stride, s.seed,
                                          **s.fit_options(final_steps, lr, progress))
        else:
            s.fit(model, data, final_steps, lr=final_lr, progress=progress)
        val_acc, test_acc = (evaluate(model, split, s.proxy_resolution)[0] for split in (data.val, data.test))
        steps = final_steps if scratch else None if start["steps"] is None else \
            start["steps"] + iterations * s.steps_per_iteration() + final_steps
        measured = measure_fn([deploy, deploy_p]) if measure_fn else [None, None]
        final = dict(latency_ms=float(latency_fn(deploy_p)), measured_ms=measured[1], val_acc=val_acc,
                     test_acc=test_acc, arch=deploy_p.to_string(), proxy_arch=model.arch.to_string())
        result = dict(device=device, target_ms=target_ms, start_ms=start_ms, start_measured_ms=measured[0],
                      reached=final["latency_ms"] <= target_ms * (1 + 1e-9), iterations=iterations,
                      total_steps=steps, start=start, final=final, method="oneshot" if oneshot else "surgery",
                      final_init=oneshot.final_init if oneshot else "finetune",
                      speedup_predicted=start_ms / final["latency_ms"],
                      speedup_measured=measured[0] / measured[1] if measure_fn else None)
        save_checkpoint(final_path, model, dict(val_acc=val_acc, test_acc=test_acc, steps=steps))
        (out_dir / "arch.json").write_text(deploy_p.to_json(indent=2))
        (out_dir / "arch.txt").write_text(deploy_p.to_string() + "\n")
        (out_dir / "result.json").write_text(json.dumps(result, indent=2))
    table = None
    if compare:
        if result["total_steps"] is None:
            raise UserError(f"compare_width needs the start checkpoint's step count ({start['source']} has none)")

        def refit_pruned(run: int):  # the final training again, with another seed
            if scratch:
                return train_reference(deploy_p, data, final_steps, lr, s, max_stride, progress, run)
            net = load_checkpoint(checkpoint_path(out_dir, iterations))
            s.fit(net, data, final_steps, lr=final_lr, seed=run, progress=progress)
            return evaluate(net, data.val, s.proxy_resolution)[0], evaluate(net, data.test, s.proxy_resolution)[0]

        table = compare_width(*compare, deploy, result["final"], data, result["total_steps"], latency_fn,
                              measure_fn, out_dir, lr, s, max_stride, progress, compare_seeds, refit_pruned)
        summary, checks = summarize_compare(table)
        print(summary.to_string(index=False))
        print(format_checks(checks))
        networks = summary.astype(object).where(summary.notna(), None).to_dict("records")  # NaN std (1 run): null
        (out_dir / "compare.json").write_text(json.dumps({"networks": networks, "checks": checks}, indent=2,
                                                         default=float))
    plot_path(read_history(out_dir), result, table, out_dir / "path.png",
              f"NetAdapt on {device}: {start_ms:.2f} -> {result['final']['latency_ms']:.2f} ms predicted",
              path_label(s, oneshot is not None))
    f = result["final"]
    print(f"pruned {start_ms:.2f} -> {f['latency_ms']:.2f} ms predicted ({result['speedup_predicted']:.2f}x"
          + (f", measured {result['speedup_measured']:.2f}x" if result["speedup_measured"] else "")
          + f") in {iterations} iterations; val_acc {f['val_acc']:.4f}, test_acc {f['test_acc']:.4f} -> {out_dir}")
    if not result["reached"]:
        print(f"stopped by max_iterations={s.max_iterations} before the target {target_ms:.2f} ms")
    return result


def resolve_input(c: dict) -> tuple[ArchConfig, str | None, tuple[str, float] | None]:
    """(deployment arch, checkpoint path or None, (baseline, width) for compare_width or None) from the config."""
    if c.get("checkpoint") and not Path(c["checkpoint"]).is_file():
        raise UserError(f"checkpoint={c['checkpoint']} not found: pass a checkpoint file "
                        "(e.g. runs/train/<time>/checkpoint.pt)")
    if c.get("search"):
        run = Path(c["search"])
        if not (run / "best.json").is_file():
            raise UserError(f"search={run} is not a search run directory (no best.json there)")
        arch, _ = arch_of(run / "best.json")
        found = [p for p in (run / "model.pt", run / "checkpoint.pt") if p.is_file()]
        if c.get("compare_width"):
            raise UserError("compare_width=true compares with a width-multiplied baseline: use model=<baseline>")
        return arch, c.get("checkpoint") or (str(found[0]) if found else None), None
    deploy = get_model(c["model"], c["width"], c["resolution"])
    return deploy, c.get("checkpoint"), (c["model"], c["width"]) if c.get("compare_width") else None
