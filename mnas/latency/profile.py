"""Live latency profiling on this machine: time single ops (table rows) and whole networks, onnxruntime or torch.

Every op becomes a small nn.Module (its block, or the classifier with its global pool) fed a (1, cin, res, res)
tensor. With runtime `onnxruntime` it is exported to ONNX once (TorchScript exporter, opset 17: much faster to
export than the dynamo exporter and equally good for these static graphs) and run in one CPU session with `threads`
intra-op threads, sequential execution and all graph optimisations; with runtime `torch` it runs eagerly under
inference_mode. Ops and whole networks are timed alone and warm (`time_alone`), as a deployed model runs and as a
user's benchmark times it: round-robin over networks evicts a small network's weights from cache between its runs,
measured 30-40% slower for MobileNetV3-Small 0.75 (2026-12-05), and ops timed round-robin over a 64-op chunk summed
to 1.73x MobileNetV3-Small 1.0's measured time (timed alone: 1.06x; 2026-12-07), which the calibration had to undo.
With one thread all the work runs on the calling thread, so the clock is that thread's CPU time: time the scheduler
gives to other processes is not counted (with more threads it is wall time). A row reports `ms` (by default the
fastest run: other processes only ever add time; on this shared 2-core machine, between repeated measurements, the
minimum of an op moved about 1% and of a network 3%, the median about 11%; `stat=median` for a quiet device), the
interquartile range (`spread`) and the number of runs (`n`).
"""
from __future__ import annotations

import io
import time
import warnings
from typing import Callable, Iterable

import numpy as np
import pandas as pd
import torch
from tqdm import tqdm

from mnas.errors import UserError
from mnas.nn.arch import ArchConfig, BlockConfig
from mnas.nn.blocks import Classifier, build_block
from mnas.nn.models import build
from mnas.nn.ops import KEY_COLUMNS, OpKey

RUNTIMES = ("onnxruntime", "torch")
NETWORK_TIMING = "alone"  # how measure_archs times networks; stored with a table's calibration points
STATS = {"min": lambda t: t.min(axis=1), "median": lambda t: np.median(t, axis=1)}


def runtime_version(runtime: str) -> str:
    check_runtime(runtime)
    if runtime == "torch":
        return torch.__version__
    import onnxruntime
    return onnxruntime.__version__


def check_runtime(runtime: str) -> None:
    if runtime not in RUNTIMES:
        raise UserError(f"unknown runtime {runtime!r}: use one of {', '.join(RUNTIMES)}")


def op_module(key: OpKey) -> tuple[torch.nn.Module, torch.Tensor]:
    """The nn.Module of one table op and an input of its shape."""
    if key.op == "classifier":
        m = Classifier(key.cin, key.exp, key.act, 0.0, key.cout)
    else:
        kind = "conv" if key.op in ("stem", "head") else key.op
        m = build_block(key.cin, BlockConfig(kind, key.kernel, key.stride, key.cout, key.act, exp=key.exp, se=key.se,
                                             residual=key.residual, pw_act=key.pw_act))
    return m.eval(), torch.randn(1, key.cin, key.res, key.res)


def make_runner(module: torch.nn.Module, x: torch.Tensor, runtime: str = "onnxruntime",
                threads: int = 1) -> Callable[[], object]:
    """A zero-argument callable that runs `module` on `x` once in `runtime` (exported and compiled here, once)."""
    check_runtime(runtime)
    if runtime == "torch":
        torch.set_num_threads(threads)

        def run():
            with torch.inference_mode():
                return module(x)
        return run
    return session_runner(onnx_bytes(module, x), x, threads)


def onnx_bytes(module: torch.nn.Module, x: torch.Tensor) -> bytes:
    """`module` exported to ONNX (opset 17, input "x")."""
    buf, torch_threads = io.BytesIO(), torch.get_num_threads()
    torch.set_num_threads(1)  # tracing runs the module once: on a busy 2-core machine 4x faster on one thread
    try:
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")
            torch.onnx.export(module, (x,), buf, dynamo=False, opset_version=17, input_names=["x"])
    finally:
        torch.set_num_threads(torch_threads)
    return buf.getvalue()


def session_runner(model: bytes, x: torch.Tensor, threads: int = 1) -> Callable[[], object]:
    """A zero-argument callable that runs an ONNX model on `x` in a new onnxruntime session."""
    import onnxruntime as ort
    so = ort.SessionOptions()
    so.intra_op_num_threads, so.inter_op_num_threads = threads, 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    so.log_severity_level = 3
    session = ort.InferenceSession(model, so, providers=["CPUExecutionProvider"])
    feed = {"x": x.numpy()}
    return lambda: session.run(None, feed)


def clock(threads: int) -> Callable[[], int]:
    """Nanosecond clock for runs on `threads` threads: this thread's CPU time for one, else wall time."""
    return time.thread_time_ns if threads == 1 else time.perf_counter_ns


def time_interleaved(runners: list[Callable], repeats: int, warmup: int, threads: int = 1) -> np.ndarray:
    """Run times in ms, shape (len(runners), repeats): `warmup` untimed calls each, then round-robin rounds."""
    for run in runners:
        for _ in range(warmup):
            run()
    times = np.empty((len(runners), repeats))
    clock_ns = clock(threads)
    for r in range(repeats):
        for i, run in enumerate(runners):
            t0 = clock_ns()
            run()
            times[i, r] = clock_ns() - t0
    return times / 1e6


def time_alone(runners: list[Callable], repeats: int, warmup: int = 10, threads: int = 1,
               rounds: int = 5) -> np.ndarray:
    """Run times in ms, shape (len(runners), repeats), each network timed alone and warm, as a user's benchmark
    (onnxruntime_perf_test, a warm loop over one model) times it: in each of `rounds` rounds every runner in turn
    gets untimed calls (`warmup` in the first round, 3 later: its weights back in cache) and then its share of
    the repeats back to back. No other network runs between its timed calls; the rounds spread a shared machine's
    slow spells over all networks."""
    times, clock_ns = np.empty((len(runners), repeats)), clock(threads)
    bounds = np.linspace(0, repeats, min(rounds, repeats) + 1).astype(int)
    for r, (lo, hi) in enumerate(zip(bounds[:-1], bounds[1:])):
        for i, run in enumerate(runners):
            for _ in range(warmup if r == 0 else 3):
                run()
            for j in range(lo, hi):
                t0 = clock_ns()
                run()
                times[i, j] = clock_ns() - t0
    return times / 1e6


def summarize(times: np.ndarray, stat: str = "min") -> pd.DataFrame:
    """Per row of run times: `ms` (the `stat`), interquartile range `spread`, sample count `n`."""
    if stat not in STATS:
        raise UserError(f"unknown latency statistic {stat!r}: use one of {', '.join(STATS)}")
    q1, q3 = np.percentile(times, [25, 75], axis=1)
    return pd.DataFrame({"ms": STATS[stat](times), "spread": q3 - q1, "n": times.shape[1]})


def profile_ops(keys: Iterable[OpKey], runtime: str = "onnxruntime", threads: int = 1, repeats: int = 100,
                warmup: int = 5, chunk: int = 64, stat: str = "min",
                on_chunk: Callable[[pd.DataFrame], None] | None = None, progress: bool = True,
                anchors: Iterable[OpKey] = ()) -> pd.DataFrame:
    """Measure every op: table rows (KEY_COLUMNS + ms, spread, n), in the order given.

    Ops are timed in chunks of `chunk` (each alone and warm, the chunk's rounds spread over time); `on_chunk(rows)`
    receives each chunk's rows as soon as they are measured, so a caller can save them and an interrupted run loses
    at most one chunk.
    `anchors`: ops timed again in every chunk beside its own (compiled once); each chunk's rows carry their
    times in rows.attrs["anchor_ms"] (a list, in anchors' order), so that a long build can tell whether the
    machine changed speed between chunks."""
    keys, anchors, parts = list(keys), list(anchors), []
    fixed = [make_runner(*op_module(k), runtime, threads) for k in anchors] if keys else []
    with tqdm(total=len(keys), desc=f"profiling ops ({runtime}, {threads} thread)", unit="op",
              disable=not progress) as bar:
        for start in range(0, len(keys), chunk):
            batch = keys[start:start + chunk]
            runners = []
            for k in batch:
                runners.append(make_runner(*op_module(k), runtime, threads))
                bar.update()
            times = time_alone(runners + fixed, repeats, warmup, threads)
            rows = pd.concat([pd.DataFrame([k.astuple() for k in batch], columns=KEY_COLUMNS),
                              summarize(times[:len(batch)], stat)], axis=1)
            if fixed:
                rows.attrs["anchor_ms"] = summarize(times[len(batch):], stat)["ms"].tolist()
            if on_chunk:
                on_chunk(rows)
            parts.append(rows)
    if not parts:
        return pd.DataFrame(columns=[*KEY_COLUMNS, "ms", "spread", "n"])
    out = pd.concat(parts, ignore_index=True)
    out.attrs = {}
    return out


def measure_archs(archs: list[ArchConfig], runtime: str = "onnxruntime", threads: int = 1, repeats: int = 100,
                  warmup: int = 10, chunk: int = 10, stat: str = "min", progress: bool = True,
                  passes: int = 1) -> pd.DataFrame:
    """End-to-end latency of whole networks (batch 1), each timed alone and warm (time_alone): rows of ms,
    spread, n. The one definition of a measured network latency (calibration, fidelity, prune, compare).

    `passes` > 1: every network is timed again in each pass over all of them, each time in a new session (its
    weights and buffers allocated anew), and `ms` is the median of its passes' figures; `spread` is the IQR of all
    its runs. A figure from one session can sit 2-20% off the next session's on an idle machine (placement in
    memory; docs/latency.md, 2026-12-07), which repeats inside one session do not average out."""
    if passes < 1:
        raise UserError(f"passes must be at least 1, got {passes}")
    exported = [None] * len(archs)
    figures, runs = np.empty((passes, len(archs))), [[] for _ in archs]
    n_chunks = -(-len(archs) // chunk)
    with tqdm(total=passes * n_chunks, desc=f"measuring networks ({runtime})", unit="chunk",
              disable=not progress or passes * n_chunks <= 1) as bar:
        for p in range(passes):
            for start in range(0, len(archs), chunk):
                idx = list(range(start, min(start + chunk, len(archs))))
                runners = []
                for i in idx:
                    a = archs[i]
                    x = torch.randn(1, a.in_chans, a.resolution, a.resolution)
                    if runtime == "torch":
                        runners.append(make_runner(build(a).eval(), x, runtime, threads))
                        continue
                    if exported[i] is None:
                        exported[i] = onnx_bytes(build(a).eval(), x)
                    runners.append(session_runner(exported[i], x, threads))
                times = time_alone(runners, repeats, warmup, threads)
                figures[p, idx] = summarize(times, stat)["ms"].to_numpy()
                for i, t in zip(idx, times):
                    runs[i].append(t)
                del runners
                bar.update()
    pooled = [np.concatenate(r) for r in runs]
    q1 = np.array([np.percentile(r, 25) for r in pooled])
    q3 = np.array([np.percentile(r, 75) for r in pooled])
    return pd.DataFrame({"ms": np.median(figures, axis=0), "spread": q3 - q1, "n": [len(r) for r in pooled]})


def measure_arch(arch: ArchConfig, runtime: str = "onnxruntime", threads: int = 1, repeats: int = 100,
                 stat: str = "min") -> float:
    """End-to-end latency of one network in ms (the `stat` of `repeats` runs)."""
    return float(measure_archs([arch], runtime, threads, repeats, stat=stat, progress=False)["ms"].iloc[0])
