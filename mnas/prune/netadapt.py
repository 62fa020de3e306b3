"""NetAdapt (Yang et al. 2018) on mnas networks: pruning a unit with torch-pruning, and the loop.

Units (sets of channels that shrink together) and arch-level resizing are mnas.nn.units'. When an SE's channels
shrink, its squeeze keeps conv_reduce's strongest rows (a second torch-pruning group: conv_reduce out ->
conv_expand in).

torch-pruning does the surgery: `DependencyGraph` finds every layer coupled to a unit's root conv (BatchNorms,
depthwise convs, SE reduce/expand, the next layer's input, residual adds), `GroupMagnitudeImportance` ranks the
channels by the group's L1 norm, `group.prune()` removes them. No layer is passed as ignored (a group touching
an ignored layer is skipped silently); instead every prune is checked: `arch_of(model)` must be the ArchConfig
whose latency was predicted.

The loop (`netadapt`): iteration i asks for a latency drop of delta * start * decay^(i-1); per unit, the fewest
channels (multiples of 8) whose removal gives that drop (predicted at the deployment shape), pruned by
importance, fine-tuned `finetune_steps` on the proxy (or, with 0, only its BatchNorm statistics re-estimated),
evaluated; it keeps the best ΔAcc/|ΔLat| (MobileNetV3's choice; `select="accuracy"`: plain NetAdapt's best
accuracy) and fine-tunes it `chosen_steps` more. When no single unit can give that drop, the
iteration asks for the largest drop one unit can give; it never asks for more than reaching the target. Each
iteration is saved as it finishes (iters/iter_NNN.pt, a history.csv row, its proposals.csv rows); rerunning on
the same folder resumes. `jobs` > 1 scores an iteration's proposals side by side in that many 1-thread worker
processes (mnas.prune.proposals; the surgery and the latency predictions stay here); the choices are the same as with
jobs=1 threads=1.
"""
from __future__ import annotations

import contextlib
import copy
import csv
import dataclasses
import sys
import time
from pathlib import Path

import pandas as pd
import torch
import torch_pruning as tp
from tqdm import tqdm

from mnas.errors import UserError
from mnas.nn.arch import ArchConfig
from mnas.nn.blocks import ConvBnAct, DepthwiseSeparable, InvertedResidual, SqueezeExcite
from mnas.nn.units import Unit, channels, layers, resize, smallest_keep, units, with_channels
from mnas.prune.proposals import pack, score_all, start_scorer
from mnas.prune.settings import Settings
from mnas.train import evaluate, load_checkpoint, save_checkpoint
from mnas.workers import pool

HISTORY = ["iteration", "unit", "channels_before", "channels_after", "latency_ms", "measured_ms", "val_acc",
           "goal_ms", "proposals", "seconds", "arch"]
PROPOSALS = ["iteration", "unit", "channels_before", "channels_after", "latency_ms", "val_acc", "score", "chosen"]
_ROOT_CONV = {ConvBnAct: "conv", DepthwiseSeparable: "conv_pw", InvertedResidual: "conv_pwl"}


# ---------------------------------------------------------------------------------------------- modules (torch side)
def _modules(model) -> list:
    return [model.stem, *model.blocks, *model.head]


def arch_of(model) -> ArchConfig:
    """The ArchConfig of a (pruned) MobileNet, channel counts read from its layers' weight shapes."""
    a = model.arch

    def layer(b, m):
        se = m.se.conv_reduce.out_channels if isinstance(m.se, SqueezeExcite) else 0
        exp = m.conv_pw.out_channels if b.type == "ir" else 0
        return dataclasses.replace(b, out=getattr(m, _ROOT_CONV[type(m)]).out_channels, exp=exp, se=se)

    fc = model.classifier.fc_hidden
    return a.replace(stem=layer(a.stem, model.stem), blocks=tuple(map(layer, a.blocks, model.blocks)),
                     head=tuple(map(layer, a.head, model.head)),
                     hidden=fc.out_features if isinstance(fc, torch.nn.Linear) else 0)


def dependency_graph(model) -> tp.DependencyGraph:
    """torch-pruning's graph of coupled channels, traced in eval mode (the trace must not move BN statistics)."""
    was_training = model.training
    model.eval()
    x = torch.zeros(1, model.arch.in_chans, 8, 8)  # any size traces the same graph; small is fast
    with torch.enable_grad():
        dg = tp.DependencyGraph().build_dependency(model, x, verbose=False)
    model.train(was_training)
    return dg


def _prune_weakest(dg, layer, fn, remove: int, importance) -> None:
    n = layer.out_features if isinstance(layer, torch.nn.Linear) else layer.out_channels
    scores = importance(dg.get_pruning_group(layer, fn, list(range(n))))
    dg.get_pruning_group(layer, fn, torch.argsort(scores)[:remove].tolist()).prune()


def prune_unit(model, unit: Unit, keep: int, p: int = 1) -> None:
    """Shrink `unit` of `model` (a MobileNet) to `keep` channels in place, dropping the channels of lowest group
    Lp norm; then the SE squeezes that the rule shrinks. Raises if the result is not the expected ArchConfig."""
    expected = resize(model.arch, unit, keep)
    dg, importance = dependency_graph(model), tp.importance.GroupMagnitudeImportance(p=p, normalizer=None)
    if unit.kind == "hidden":
        root, fn = model.classifier.fc_hidden, tp.prune_linear_out_channels
    else:
        m = _modules(model)[unit.layers[0]]
        root, fn = getattr(m, "conv_pw" if unit.kind == "exp" else _ROOT_CONV[type(m)]), tp.prune_conv_out_channels
    _prune_weakest(dg, root, fn, channels(model.arch, unit) - keep, importance)
    for m, b in zip(_modules(model), layers(expected)):
        if isinstance(m.se, SqueezeExcite) and m.se.conv_reduce.out_channels > b.se:
            _prune_weakest(dg, m.se.conv_reduce, tp.prune_conv_out_channels, m.se.conv_reduce.out_channels - b.se,
                           importance)
    got = arch_of(model)
    if got != expected:
        raise RuntimeError(f"torch-pruning did not prune {unit.name} to {keep} channels as asked: got "
                           f"{got.to_string()}, expected {expected.to_string()}")
    model.arch = got


def fewest_removal(arch: ArchConfig, unit: Unit, goal_ms: float, latency_fn, s: Settings,
                   floor: int | None = None) -> int | None:
    """The most channels `unit` can keep (removing multiples of s.step, keeping at least `floor`, default
    smallest_keep) with latency_fn(arch) <= goal_ms, or None. Binary search: latency is taken to grow with
    channels (each probe may profile new ops on a live device)."""
    c = channels(arch, unit)
    floor = smallest_keep(arch, unit, s.min_channels, s.step) if floor is None else floor
    kmax = (c - floor) // s.step
    if kmax < 1 or latency_fn(resize(arch, unit, c - kmax * s.step)) > goal_ms:
        return None
    lo, hi = 0, kmax  # removing lo*step is too little, hi*step is enough
    while hi - lo > 1:
        mid = (lo + hi) // 2
        lo, hi = (lo, mid) if latency_fn(resize(arch, unit, c - mid * s.step)) <= goal_ms else (mid, hi)
    return c - hi * s.step


def _append(path: Path, columns: list[str], rows: list[dict]) -> None:
    new = not path.exists()
    with open(path, "a", newline="") as f:
        w = csv.DictWriter(f, columns)
        if new:
            w.writeheader()
        w.writerows(rows)


def read_history(out_dir) -> pd.DataFrame:
    p = Path(out_dir) / "history.csv"
    return pd.read_csv(p) if p.exists() else pd.DataFrame(columns=HISTORY)


def checkpoint_path(out_dir, iteration: int) -> Path:
    return Path(out_dir) / "iters" / f"iter_{iteration:03d}.pt"


def netadapt(model, deploy: ArchConfig, data, target_ms: float, latency_fn, out_dir, s: Settings,
             measure_fn=None, progress: bool = True, slimmable=None):
    """Prune `model` (the proxy network of `deploy`) until latency_fn(deploy shape) <= target_ms.

    `latency_fn(arch) -> ms` predicts at the deployment shape; `measure_fn([arch]) -> [ms]` (optional) measures.
    With `slimmable` (a trained mnas.supernet.slimmable.Slimmable of the start network: one-shot NetAdapt), each
    proposal is the slimmable network's sub-network at the proposed widths (extracted, BatchNorm re-estimated)
    instead of a surgery on `model`, and no unit goes below the widths it was trained at.
    If out_dir holds a history, the run resumes after its last finished iteration (and `model` may be None).
    Returns (pruned model, its deployment ArchConfig, history DataFrame)."""
    s.check()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    evaluation = dataclasses.replace(data, val=data.val.take(slice(0, s.eval_images)))
    history = read_history(out_dir)
    say = tqdm.write if progress else (lambda _: None)
    if len(history):
        last = int(history["iteration"].iloc[-1])
        model = load_checkpoint(checkpoint_path(out_dir, last))
        if (out_dir / "proposals.csv").exists():  # drop rows of an iteration that did not finish
            props = pd.read_csv(out_dir / "proposals.csv")
            props[props["iteration"] <= last].to_csv(out_dir / "proposals.csv", index=False)
        say(f"resuming {out_dir} after iteration {last}")
    else:
        if model is None:
            raise UserError(f"{out_dir} holds no history.csv to resume from")
        last = 0
        lat = latency_fn(with_channels(deploy, model.arch))
        # a slimmable network's BatchNorm statistics are shared by every width: re-estimated, as for each proposal
        acc = s.score(model, evaluation, 0, seed=0) if slimmable else \
            evaluate(model, evaluation.val, s.proxy_resolution)[0]
        save_checkpoint(checkpoint_path(out_dir, 0), model, {"val_acc": acc})
        row = dict(iteration=0, unit="start", channels_before=None, channels_after=None, latency_ms=lat,
                   measured_ms=measure_fn([deploy])[0] if measure_fn else None, val_acc=acc, goal_ms=None,
                   proposals=0, seconds=0.0, arch=with_channels(deploy, model.arch).to_string())
        _append(out_dir / "history.csv", HISTORY, [row])
        history = read_history(out_dir)
    start_ms = float(history["latency_ms"].iloc[0])
    deploy = with_channels(deploy, model.arch)
    lat, acc = float(history["latency_ms"].iloc[-1]), float(history["val_acc"].iloc[-1])
    # one pool for the whole run, so each worker receives the data once (jobs=1: None, scored here)
    with pool(s.jobs, start_scorer, (s, evaluation)) if s.jobs > 1 else contextlib.nullcontext() as workers:
        for it in range(last + 1, s.max_iterations + 1):
            if lat <= target_ms * (1 + 1e-9):
                break
            t0 = time.perf_counter()
            todo = units(model.arch)
            lowest = {u: slimmable.slimming.floor(u) if slimmable else smallest_keep(deploy, u, s.min_channels, s.step)
                      for u in todo}
            todo = [u for u in todo if channels(deploy, u) > lowest[u]]
            floors = {u: latency_fn(resize(deploy, u, lowest[u])) for u in todo}
            goal = max(target_ms, lat - s.delta * start_ms * s.delta_decay ** (it - 1), min(floors.values(),
                                                                                          default=lat))
            if goal >= lat:
                raise UserError(f"cannot prune further: every unit is at its minimum width ({lat:.2f} ms)")
            plans = [(u, keep) for u in todo if floors[u] <= goal
                     and (keep := fewest_removal(deploy, u, goal, latency_fn, s, lowest[u])) is not None]
            blobs = []
            for u, keep in plans:  # the surgery here (cheap); the scoring, the costly part, maybe in workers
                if slimmable is not None:
                    cand = slimmable.extract(resize(model.arch, u, keep))
                else:
                    cand = copy.deepcopy(model)
                    prune_unit(cand, u, keep, s.importance_p)
                blobs.append(pack(cand))
            with tqdm(total=len(blobs), desc=f"iteration {it}: {lat:.2f} -> {goal:.2f} ms", unit="proposal",
                      leave=False, disable=not progress or not sys.stderr.isatty()) as bar:
                scored = score_all(blobs, s, evaluation, s.finetune_steps, it, workers, bar)
            best, rows = None, []
            for (u, keep), (cand_acc, cand) in zip(plans, scored):
                cand_lat = latency_fn(with_channels(deploy, cand.arch))
                score = (cand_acc - acc) / max(lat - cand_lat, 1e-9) if s.select == "ratio" else cand_acc
                rows.append(dict(iteration=it, unit=u.name, channels_before=channels(model.arch, u),
                                 channels_after=keep, latency_ms=cand_lat, val_acc=cand_acc, score=score,
                                 chosen=False))
                if best is None or (score, -cand_lat) > best[0]:  # ties: the faster one
                    best = ((score, -cand_lat), cand, len(rows) - 1)
            _, model, chosen = best
            row = rows[chosen]
            row["chosen"] = True
            deploy = with_channels(deploy, model.arch)
            lat, acc = row["latency_ms"], row["val_acc"]
            if s.chosen_steps:  # the next iteration's accuracy changes are measured from the fine-tuned network
                acc = s.score(model, evaluation, s.chosen_steps, seed=1000 + it)
            save_checkpoint(checkpoint_path(out_dir, it), model, {"val_acc": acc, "latency_ms": lat})
            _append(out_dir / "proposals.csv", PROPOSALS, rows)
            measured = measure_fn([deploy])[0] if measure_fn else None
            _append(out_dir / "history.csv", HISTORY, [dict(
                iteration=it, unit=row["unit"], channels_before=row["channels_before"],
                channels_after=row["channels_after"], latency_ms=lat, measured_ms=measured, val_acc=acc, goal_ms=goal,
                proposals=len(rows), seconds=time.perf_counter() - t0, arch=deploy.to_string())])
            say(f"iteration {it}: {row['unit']} {row['channels_before']} -> {row['channels_after']} channels, "
                f"{lat:.2f} ms predicted" + (f" ({measured:.2f} measured)" if measured else "")
                + f", val_acc {acc:.4f} ({len(rows)} proposals)")
    return model, deploy, read_history(out_dir)
