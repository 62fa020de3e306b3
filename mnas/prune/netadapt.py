"""NetAdapt (Yang et al. 2018) on mnas networks: channel units, their pruning with torch-pruning, the loop.

A *unit* is a set of channels that can only shrink together:
- `exp blocks.i`: an inverted residual's expanded channels (conv_pw out = conv_dw = SE = conv_pwl in);
- `out <layer>`: a layer's output channels (stem, block or head conv) with every residual block that adds onto
  them (a residual add needs in == out, so a stage's blocks shrink together); a depthwise-separable block's
  depthwise conv and SE run on its input channels, so they shrink with the unit that feeds them;
- `hidden`: the hidden linear layer of a V3 classifier.
Input channels and classes never change. SE squeeze widths follow the MobileNetV3 rule: when an SE's channels
shrink, its squeeze becomes min(squeeze, make_divisible(channels / 4)), keeping conv_reduce's strongest rows
(a second torch-pruning group: conv_reduce out -> conv_expand in).

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
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import torch
import torch_pruning as tp
from tqdm import tqdm

from mnas.errors import UserError
from mnas.nn.arch import ArchConfig, make_divisible
from mnas.nn.blocks import ConvBnAct, DepthwiseSeparable, InvertedResidual, SqueezeExcite
from mnas.prune.proposals import pack, score_all, start_scorer
from mnas.prune.settings import Settings
from mnas.train import evaluate, load_checkpoint, save_checkpoint
from mnas.workers import pool

HISTORY = ["iteration", "unit", "channels_before", "channels_after", "latency_ms", "measured_ms", "val_acc",
           "goal_ms", "proposals", "seconds", "arch"]
PROPOSALS = ["iteration", "unit", "channels_before", "channels_after", "latency_ms", "val_acc", "score", "chosen"]
_ROOT_CONV = {ConvBnAct: "conv", DepthwiseSeparable: "conv_pw", InvertedResidual: "conv_pwl"}


# ---------------------------------------------------------------------------------------------- units (config side)
@dataclass(frozen=True)
class Unit:
    name: str
    kind: str                # exp | out | hidden
    layers: tuple[int, ...]  # indices into layers(arch) = [stem, *blocks, *head]


def layers(arch: ArchConfig) -> list:
    return [arch.stem, *arch.blocks, *arch.head]


def _label(arch: ArchConfig, i: int) -> str:
    n = len(arch.blocks)
    return "stem" if i == 0 else f"blocks.{i - 1}" if i <= n else f"head.{i - n - 1}"


def units(arch: ArchConfig) -> list[Unit]:
    """Every prunable unit of `arch`, in network order."""
    found, chain = [], None
    for i, b in enumerate(layers(arch)):
        if not b.residual:
            chain = [i]
            found.append(chain)
        else:
            chain.append(i)
        if b.type == "ir":
            found.append(Unit(f"exp {_label(arch, i)}", "exp", (i,)))
    out = [u if isinstance(u, Unit) else
           Unit(f"out {_label(arch, u[0])}" + (f"..{_label(arch, u[-1])}" if len(u) > 1 else ""), "out", tuple(u))
           for u in found]
    return out + ([Unit("hidden", "hidden", ())] if arch.hidden else [])


def channels(arch: ArchConfig, unit: Unit) -> int:
    if unit.kind == "hidden":
        return arch.hidden
    b = layers(arch)[unit.layers[0]]
    return b.exp if unit.kind == "exp" else b.out


def _se_channels(arch: ArchConfig) -> list[int]:
    """The channel count each layer's SE runs on: ir on its expansion, ds on its input, conv on its output."""
    return [b.exp if b.type == "ir" else cin if b.type == "ds" else b.out for b, cin, _ in arch.walk()]


def resize(arch: ArchConfig, unit: Unit, n: int) -> ArchConfig:
    """`arch` with `unit` at `n` channels (and the SE squeezes on those channels at most make_divisible(n/4))."""
    ls = layers(arch)
    for i in unit.layers:
        ls[i] = dataclasses.replace(ls[i], **{("exp" if unit.kind == "exp" else "out"): n})
    nb = len(arch.blocks)
    new = arch.replace(stem=ls[0], blocks=tuple(ls[1:1 + nb]), head=tuple(ls[1 + nb:]),
                       hidden=n if unit.kind == "hidden" else arch.hidden)
    ls = layers(new)
    for i, (old, ch) in enumerate(zip(_se_channels(arch), _se_channels(new))):
        if ls[i].se and ch != old:
            ls[i] = dataclasses.replace(ls[i], se=min(ls[i].se, make_divisible(ch / 4)))
    return new.replace(stem=ls[0], blocks=tuple(ls[1:1 + nb]), head=tuple(ls[1 + nb:]))


def smallest_keep(arch: ArchConfig, unit: Unit, min_channels: int = 8, step: int = 8) -> int:
    """The fewest channels `unit` can keep: removing multiples of `step`, never below `min_channels`."""
    c = channels(arch, unit)
    return c - max(0, (c - min_channels) // step) * step


def minimal_arch(arch: ArchConfig, min_channels: int = 8, step: int = 8) -> ArchConfig:
    """`arch` with every unit at its smallest width: the fastest network pruning can reach."""
    for u in units(arch):
        arch = resize(arch, u, smallest_keep(arch, u, min_channels, step))
    return arch


def random_pruned(arch: ArchConfig, rng, cuts: int, min_channels: int = 8, step: int = 8) -> ArchConfig:
    """`arch` after `cuts` NetAdapt-style cuts chosen at random (no accuracy involved): each removes a multiple of
    `step` channels, at most half of what may go, from a random unit that can still shrink. The channel counts
    and coupled residual widths a pruning run leaves, for checking a latency model on pruned shapes."""
    for _ in range(cuts):
        free = [u for u in units(arch) if channels(arch, u) > smallest_keep(arch, u, min_channels, step)]
        if not free:
            break
        u = rng.choice(free)
        slack = (channels(arch, u) - smallest_keep(arch, u, min_channels, step)) // step
        arch = resize(arch, u, channels(arch, u) - step * rng.randint(1, max(1, slack // 2)))
    return arch


def with_channels(arch: ArchConfig, source: ArchConfig) -> ArchConfig:
    """`arch` (e.g. the deployment shape) with the channel counts of `source` (e.g. the pruned proxy network)."""
    f = lambda t, s: dataclasses.replace(t, out=s.out, exp=s.exp, se=s.se)  # noqa: E731
    return arch.replace(stem=f(arch.stem, source.stem), blocks=tuple(map(f, arch.blocks, source.blocks)),
                        head=tuple(map(f, arch.head, source.head)), hidden=source.hidden)


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


def fewest_removal(arch: ArchConfig, unit: Unit, goal_ms: float, latency_fn, s: Settings) -> int | None:
    """The most channels `unit` can keep (removing multiples of s.step) with latency_fn(arch) <= goal_ms, or None.
    Binary search: latency is taken to grow with channels (each probe may profile new ops on a live device)."""
    c = channels(arch, unit)
    kmax = (c - smallest_keep(arch, unit, s.min_channels, s.step)) // s.step
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
             measure_fn=None, progress: bool = True):
    """Prune `model` (the proxy network of `deploy`) until latency_fn(deploy shape) <= target_ms.

    `latency_fn(arch) -> ms` predicts at the deployment shape; `measure_fn([arch]) -> [ms]` (optional) measures.
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
        acc, _ = evaluate(model, evaluation.val, s.proxy_resolution)
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
            floors = {u: latency_fn(resize(deploy, u, smallest_keep(deploy, u, s.min_channels, s.step)))
                      for u in todo}
            goal = max(target_ms, lat - s.delta * start_ms * s.delta_decay ** (it - 1), min(floors.values()))
            if goal >= lat:
                raise UserError(f"cannot prune further: every unit is at its minimum width ({lat:.2f} ms)")
            plans = [(u, keep) for u in todo
                     if floors[u] <= goal and (keep := fewest_removal(deploy, u, goal, latency_fn, s)) is not None]
            blobs = []
            for u, keep in plans:  # the surgery here (cheap); the scoring, the costly part, maybe in workers
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
