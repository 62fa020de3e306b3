"""Independent jobs (benchmark trainings, NetAdapt proposals) in spawned worker processes of 1 torch thread each."""
from __future__ import annotations

import concurrent.futures as cf
import multiprocessing as mp
from typing import Callable, Iterable, Iterator

import torch


def _start_worker(initializer: Callable | None, initargs: tuple) -> None:
    torch.set_num_threads(1)
    if initializer is not None:
        initializer(*initargs)


def pool(jobs: int, initializer: Callable | None = None, initargs: tuple = ()) -> cf.ProcessPoolExecutor:
    """`jobs` spawned processes with 1 torch thread each; initializer(*initargs) (picklable, module level) runs once
    in each, e.g. to receive data every task then shares. Use as a context manager."""
    return cf.ProcessPoolExecutor(jobs, mp_context=mp.get_context("spawn"), initializer=_start_worker,
                                  initargs=(initializer, initargs))


def run_jobs(tasks: Iterable[tuple], jobs: int, worker_fn: Callable, local_fn: Callable | None = None) -> Iterator:
    """(key, result) for each (key, args) in `tasks`. jobs > 1: worker_fn(*args) (picklable, module level) in that
    many spawned processes with 1 torch thread each, yielded as they finish (on a small CPU two 1-thread trainings
    side by side train more images per second than one 2-thread training). Otherwise local_fn(*args) (default
    worker_fn) here, in order."""
    tasks = list(tasks)
    if jobs <= 1 or not tasks:
        for key, args in tasks:
            yield key, (local_fn or worker_fn)(*args)
        return
    with pool(jobs) as workers:
        futures = {workers.submit(worker_fn, *args): key for key, args in tasks}
        for f in cf.as_completed(futures):
            yield futures[f], f.result()
