"""Executors run a list of jobs (runs, from-scratch models) and hand each outcome back as it
completes."""

from __future__ import annotations

import multiprocessing as mp
import os
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path

from ecgscale.study.runs import Outcome, RunSpec, ScratchSpec, execute
from ecgscale.study.spec import StudySpec

Job = RunSpec | ScratchSpec


def _init_worker(threads: int) -> None:
    import torch
    from threadpoolctl import threadpool_limits

    torch.set_num_threads(threads)
    threadpool_limits(threads)


def default_workers(threads_per_worker: int) -> int:
    """One worker per ``threads_per_worker`` cores of this process's CPU set."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return max(1, (cores or 1) // threads_per_worker)


def run_local(
    spec: StudySpec, jobs: list[Job], store_dir: Path, study_dir: Path
) -> Iterator[tuple[Job, Outcome]]:
    """Run ``jobs`` in a pool of worker processes, one job at a time each, single-threaded by
    default (two 1-thread processes out-run one 2-thread process for small models)."""
    ex = spec.executor
    workers = min(len(jobs), ex.workers or default_workers(ex.threads_per_worker))
    if workers <= 1:
        _init_worker(ex.threads_per_worker)
        for job in jobs:
            yield job, execute(spec, job, store_dir, study_dir)
        return
    ctx = mp.get_context("spawn")
    with ProcessPoolExecutor(
        workers, mp_context=ctx, initializer=_init_worker, initargs=(ex.threads_per_worker,)
    ) as pool:
        futures = {pool.submit(execute, spec, job, store_dir, study_dir): job for job in jobs}
        for fut in as_completed(futures):
            yield futures[fut], fut.result()
