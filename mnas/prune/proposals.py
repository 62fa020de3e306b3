"""NetAdapt proposals scored here or side by side in worker processes (mnas.prune.netadapt's `jobs`).

A proposal travels as bytes (pack: mnas.train.save_checkpoint of its arch and weights) and is scored as rebuilt
from them in both paths, so jobs=1 and jobs=N give bit-equal results; `s` is a mnas.prune.settings.Settings.
"""
from __future__ import annotations

import dataclasses
import io

from mnas.prune.settings import Settings
from mnas.train import load_checkpoint, save_checkpoint

_SCORER: tuple | None = None  # (Settings, data) of a worker process, set once by start_scorer


def start_scorer(s: Settings, data) -> None:
    global _SCORER
    _SCORER = (dataclasses.replace(s, threads=1), data)


def pack(model) -> bytes:
    """A network as save_checkpoint's bytes: sent between processes without shared-memory tensors, each of which
    would hold a file descriptor open on both sides (hundreds per network, ~20 networks per iteration)."""
    buf = io.BytesIO()
    save_checkpoint(buf, model)
    return buf.getvalue()


def unpack(blob: bytes):
    return load_checkpoint(io.BytesIO(blob))


def _score_in_worker(blob: bytes, steps: int, seed: int) -> tuple[float, bytes]:
    """Settings.score in a worker process: the proposal travels there and back (its weights change when it is
    fine-tuned, its BatchNorm statistics when they are re-estimated)."""
    s, data = _SCORER
    model = unpack(blob)
    return s.score(model, data, steps, seed), pack(model)


def score_all(blobs: list[bytes], s: Settings, data, steps: int, seed: int, workers=None, bar=None) -> list:
    """[(accuracy, model)] of each packed candidate (pack) after `steps` (Settings.score), in order: rebuilt and
    scored here, or with `workers` (a mnas.workers.pool started with start_scorer) side by side, one per process;
    either way every candidate is scored as rebuilt from its arch and weights, so the two give the same results."""
    futures = [workers.submit(_score_in_worker, blob, steps, seed) for blob in blobs] if workers is not None else None
    out = []
    for i, blob in enumerate(blobs):  # in order; with workers the bar moves as the earliest unfinished one ends
        if workers is not None:
            acc, scored = futures[i].result()
            out.append((acc, unpack(scored)))
        else:
            model = unpack(blob)
            out.append((s.score(model, data, steps, seed), model))
        bar and bar.update()
    return out
