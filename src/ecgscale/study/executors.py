"""Executors run a list of runs and hand each finished result back as it completes."""

from __future__ import annotations

import multiprocessing as mp
import os
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path

from ecgscale.study.runs import RunSpec, execute_run
from ecgscale.study.spec import StudySpec

Result = tuple[dict, list[dict]]


def _init_worker(threads: int) -> None:
    import torch
    from threadpoolctl import threadpool_limits

    torch.set_num_threads(threads)
    threadpool_limits(threads)


def _task(spec: StudySpec, run: RunSpec, store_dir: Path, runs_dir: Path) -> Result:
    return execute_run(spec, run, store_dir, runs_dir / run.run_id)


def default_workers(threads_per_worker: int) -> int:
    """One worker per ``threads_per_worker`` cores of this process's CPU set."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return max(1, (cores or 1) // threads_per_worker)


def run_local(
    spec: StudySpec, runs: list[RunSpec], store_dir: Path, runs_dir: Path
) -> Iterator[Result]:
    """Run ``runs`` in a pool of worker processes, one run at a time each, single-threaded by
    default (two 1-thread processes out-run one 2-thread process for small models)."""
    ex = spec.executor
    workers = min(len(runs), ex.workers or default_workers(ex.threads_per_worker))
    if workers <= 1:
        _init_worker(ex.threads_per_worker)
        for run in runs:
            yield _task(spec, run, store_dir, runs_dir)
        return
    ctx = mp.get_context("spawn")
    with ProcessPoolExecutor(
        workers, mp_context=ctx, initializer=_init_worker, initargs=(ex.threads_per_worker,)
    ) as pool:
        futures = [pool.submit(_task, spec, run, store_dir, runs_dir) for run in runs]
        for fut in as_completed(futures):
            yield fut.result()
