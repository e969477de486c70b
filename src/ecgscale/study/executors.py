"""Executors run jobs (runs, from-scratch models) and hand back each one's :class:`JobResult`
as it completes. Every job goes through :func:`~ecgscale.study.worker.run_job`, which claims it
in the results store and writes its result there, so an executor only schedules: what it
yields is for progress and retries, and nothing is lost when the driver dies.

``local`` (default) is a pool of worker processes on this machine; a worker that dies takes
the pool down and every job not finished comes back as ``lost``, for the caller to submit
again. Workers exit when the driver process dies, so their jobs are free to be taken over.
With GPUs (``gpus_per_run`` > 0 and GPUs here, or ``executor.gpus`` set), each job instead
starts in a process of its own on GPUs with room for it, several small runs to a GPU with
``runs_per_gpu`` (see :mod:`ecgscale.study.packing`).
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
from fractions import Fraction
from multiprocessing.connection import wait as wait_for
from pathlib import Path

import psutil

from ecgscale.evaluate.inference import RUNS_PER_GPU
from ecgscale.interrupts import WorkerPool, as_completed, sigint_ignored, stop_processes
from ecgscale.spec import ExecutorSpec, StudySpec
from ecgscale.study.lifecycle import Claim
from ecgscale.study.packing import GpuBoard, runs_per_gpu, threads_per_run
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


def _init_gpu_worker(devices: str, runs: int, threads: int, parent: int) -> None:
    os.environ["CUDA_VISIBLE_DEVICES"] = devices  # before this process initialises CUDA
    os.environ[RUNS_PER_GPU] = str(runs)  # evaluation batches take their share of the GPU
    _init_worker(threads, parent)


def local_gpus(ex: ExecutorSpec) -> int:
    """GPUs the local executor runs on: ``executor.gpus``, else every GPU torch sees."""
    import torch

    return ex.gpus if ex.gpus is not None else torch.cuda.device_count()


def visible_gpus(n: int) -> list[str]:
    """The ids of this machine's first ``n`` GPUs as ``CUDA_VISIBLE_DEVICES`` names them for
    this process (``0``..``n-1`` where it names none)."""
    named = [d.strip() for d in os.environ.get("CUDA_VISIBLE_DEVICES", "").split(",") if d.strip()]
    return [named[i] if i < len(named) else str(i) for i in range(n)]


def run_local(
    spec: StudySpec, jobs: list[Job], store_dir: Path, study_dir: Path, redo: set[str]
) -> Iterator[JobResult]:
    """Run ``jobs`` in a pool of worker processes, one job at a time each, single-threaded by
    default (two 1-thread processes out-run one 2-thread process for small models); GPU jobs
    on this machine's GPUs (:func:`run_local_gpus`)."""
    ex = spec.executor
    gpus = local_gpus(ex)
    if ex.gpus_per_run and gpus:
        yield from run_local_gpus(spec, jobs, store_dir, study_dir, redo, gpus, at_once=ex.workers)
        return
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


def run_local_gpus(
    spec: StudySpec,
    jobs: list[Job],
    store_dir: Path,
    study_dir: Path,
    redo: set[str],
    gpus: int,
    *,
    at_once: int | None = None,
    on_claim: Callable[[Claim], None] | None = None,
) -> Iterator[JobResult]:
    """Run ``jobs`` on ``gpus`` GPUs, each in a fresh process whose ``CUDA_VISIBLE_DEVICES``
    names the GPUs placed for it (:class:`GpuBoard`; ``runs_per_gpu`` jobs to a GPU, splitting
    its ``threads_per_worker``), in the order given where they fit, at most ``at_once`` at a
    time (None: no limit). A process that dies comes back as ``lost``; if the caller stops
    early, the processes still running are ended (their jobs are taken over by the next claim
    and resume from their checkpoints). ``on_claim`` (picklable) is :func:`run_job`'s, in each
    process."""
    ex = spec.executor
    if ex.gpus_per_run > gpus:
        raise ValueError(f"executor.gpus_per_run={ex.gpus_per_run}: this machine has {gpus} GPU(s)")
    board, names, queue = GpuBoard(gpus), visible_gpus(gpus), list(jobs)
    running: dict[int, tuple[JobProcess, tuple[int, ...], Fraction]] = {}
    try:
        while queue or running:
            for job in list(queue):
                if at_once is not None and len(running) >= at_once:
                    break
                k = runs_per_gpu(spec, job)
                placed = board.place(ex.gpus_per_run, Fraction(1, k))
                if placed is None:
                    continue
                queue.remove(job)
                devices = ",".join(names[i] for i in placed)
                args = (study_dir, store_dir, job, job_id(job) in redo, spec, on_claim)
                proc = JobProcess(devices, k, threads_per_run(spec, k), args)
                running[proc.sentinel] = (proc, placed, Fraction(1, k))
            for sentinel in wait_for(list(running)):
                proc, placed, share = running.pop(sentinel)
                board.release(placed, share)
                yield proc.result()
    finally:
        for proc, *_ in running.values():
            proc.end()


CLAIMED = "claimed"
"""What a :class:`JobProcess` says once it has claimed its job."""


class JobProcess:
    """One job in a fresh process (spawned, daemonic: it ends with this one), started at once:
    ``CUDA_VISIBLE_DEVICES``, the runs sharing its GPU and its threads set first, then
    :func:`run_job`; that it claimed its job, then its :class:`JobResult`, come back through a
    pipe."""

    def __init__(self, devices: str, runs: int, threads: int, args: tuple) -> None:
        ctx = mp.get_context("spawn")
        self.job_id = job_id(args[2])
        self._results, send = ctx.Pipe(duplex=False)
        self._process = ctx.Process(
            target=_job_process,
            args=(send, devices, runs, threads, os.getpid(), *args),
            name=f"ecgscale-{self.job_id}",
            daemon=True,
        )
        with sigint_ignored():  # a terminal's Ctrl-C is for the driver, which stops this
            self._process.start()
        send.close()
        self.sentinel = self._process.sentinel

    def result(self) -> JobResult:
        """The job's result once the process has ended: ``lost`` (worth another attempt) if it
        died after claiming its job, ``failed`` if before (it would again)."""
        self._process.join()
        messages = []
        try:
            while self._results.poll():
                messages.append(self._results.recv())
        except EOFError:  # nothing more: the process is gone
            pass
        results = [m for m in messages if isinstance(m, JobResult)]
        if results:
            return results[0]
        died = f"its process died (exit code {self._process.exitcode})"
        if CLAIMED in messages:
            return JobResult(self.job_id, "lost", died, retry=True)
        return JobResult(self.job_id, "failed", f"{died} before it claimed its job")

    def end(self) -> None:
        """Stop the process if it still runs (SIGTERM: it gives its job back; killed, with
        what it started, if it has not stopped in time)."""
        if self._process.is_alive():
            stop_processes([psutil.Process(self._process.pid)])
        self._process.join()


def _job_process(send, devices: str, runs: int, threads: int, parent: int, *args) -> None:
    """The body of a :class:`JobProcess`. SLURM's USR2 (time-out, pre-emption) is for the
    process that started it, which gives the job back and requeues its task."""
    if hasattr(signal, "SIGUSR2"):
        signal.signal(signal.SIGUSR2, signal.SIG_IGN)
    _init_gpu_worker(devices, runs, threads, parent)
    study_dir, store_dir, job, redo, spec, on_claim = args

    def claimed(claim: Claim) -> None:
        send.send(CLAIMED)
        if on_claim is not None:
            on_claim(claim)

    global _in_job
    try:  # told to stop (SIGTERM), run_job gives the job back; then the process exits
        _in_job = True
        result = run_job(study_dir, store_dir, job, redo=redo, spec=spec, on_claim=claimed)
    except KeyboardInterrupt:
        os._exit(0)
    send.send(result)
