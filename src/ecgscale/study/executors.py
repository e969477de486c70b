"""Executors run jobs (runs, from-scratch models) and hand back each one's :class:`JobResult`
as it completes. Every job goes through :func:`~ecgscale.study.worker.run_job`, which claims it
in the results store and writes its result there, so an executor only schedules: what it
yields is for progress and retries, and nothing is lost when the driver dies.

``local`` (default) is a pool of worker processes on this machine; a worker that dies takes
the pool down and every job not finished comes back as ``lost``, for the caller to submit
again. Workers exit when the driver process dies, so their jobs are free to be taken over.
Workers ignore SIGINT (see :mod:`ecgscale.interrupts`): when the caller is interrupted, the
pool is stopped, and each worker told to stop (SIGTERM) gives its job back (pending; a run's
checkpoints are kept for the next attempt) and exits.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import signal
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path

from ecgscale.interrupts import WorkerPool, as_completed
from ecgscale.study.spec import StudySpec
from ecgscale.study.worker import Job, JobResult, job_id, run_job

Executor = Callable[[StudySpec, list[Job], Path, Path, set[str]], Iterator[JobResult]]
"""``(spec, jobs, store_dir, study_dir, redo) -> results as they complete``; ``redo`` names
finished runs to evaluate again."""


def _exit_with(parent: int) -> None:
    """Exit this process as soon as ``parent`` is no longer its parent (it died)."""
    while os.getppid() == parent:
        time.sleep(0.5)
    os._exit(1)


_in_job = False
"""Whether this worker process runs a job now (read by its SIGTERM handler)."""


def _stop_worker(signum: int, frame: object) -> None:
    """SIGTERM in a worker: stop its job (:func:`run_job` gives it back), then exit; an idle
    worker exits at once. Once: a second SIGTERM is ignored."""
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    if not _in_job:
        os._exit(0)
    raise KeyboardInterrupt


def _init_worker(threads: int, parent: int) -> None:
    init_torch_threads(threads)
    signal.signal(signal.SIGTERM, _stop_worker)
    threading.Thread(target=_exit_with, args=(parent,), daemon=True).start()


def _worker_job(
    study_dir: Path, store_dir: Path, job: Job, redo: bool, spec: StudySpec
) -> JobResult:
    """:func:`run_job` in a pool worker; a worker told to stop exits after giving the job back."""
    global _in_job
    try:
        _in_job = True
        return run_job(study_dir, store_dir, job, redo=redo, spec=spec)
    except KeyboardInterrupt:
        os._exit(0)
    finally:
        _in_job = False


def default_workers(threads_per_worker: int) -> int:
    """One worker per ``threads_per_worker`` cores of this process's CPU set."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return max(1, (cores or 1) // threads_per_worker)


def run_local(
    spec: StudySpec, jobs: list[Job], store_dir: Path, study_dir: Path, redo: set[str]
) -> Iterator[JobResult]:
    """Run ``jobs`` in a pool of worker processes, one job at a time each, single-threaded by
    default (two 1-thread processes out-run one 2-thread process for small models)."""
    ex = spec.executor
    workers = min(len(jobs), ex.workers or default_workers(ex.threads_per_worker))
    if workers <= 1:
        init_torch_threads(ex.threads_per_worker)
        for job in jobs:
            yield run_job(study_dir, store_dir, job, redo=job_id(job) in redo, spec=spec)
        return
    with WorkerPool(
        workers,
        mp_context=mp.get_context("spawn"),
        initializer=_init_worker,
        initargs=(ex.threads_per_worker, os.getpid()),
    ) as pool:
        futures = {
            pool.submit(_worker_job, study_dir, store_dir, job, job_id(job) in redo, spec): job
            for job in jobs
        }
        for fut in as_completed(futures):  # waking up often, to see a Ctrl-C at once
            try:
                yield fut.result()
            except BrokenProcessPool:  # a worker died: every job not finished is lost
                yield JobResult(job_id(futures[fut]), "lost", "its worker process died", retry=True)


def init_torch_threads(threads: int) -> None:
    """Run torch and BLAS with ``threads`` threads in this process."""
    import torch
    from threadpoolctl import threadpool_limits

    torch.set_num_threads(threads)
    threadpool_limits(threads)
