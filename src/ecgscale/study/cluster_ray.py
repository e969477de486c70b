"""The ``ray`` executor: every job is a Ray task on a cluster started with ``ray start``.

The driver (``ecgscale study`` / ``ecgscale train`` with ``executor.kind: ray``) connects to the
cluster at ``executor.address`` (default ``auto``: ``$RAY_ADDRESS`` or the cluster started on
this machine), submits one task per job and hands back each job's
:class:`~ecgscale.study.worker.JobResult` as its task completes. A task asks for
``threads_per_worker`` CPUs and ``gpus_per_run`` GPUs (a packed run 1/``runs_per_gpu`` of each:
:func:`task_options`), runs with that many torch/BLAS threads (as the ``local`` executor's
workers do, so results equal theirs) and calls
:func:`~ecgscale.study.worker.run_job`, which claims the job, writes its result to
``results.sqlite`` and resumes from its checkpoint after an earlier attempt died.

Requirements: **the study folder (and the record store) must be on a filesystem every node
sees at the same path**, with working POSIX locks for SQLite (paths are made absolute before
they are sent; ``results.sqlite`` uses a rollback journal under this executor,
``executor.journal_mode``), and every node runs the same installation of ecgscale (no runtime
environment is shipped). A task whose worker process
or node dies is retried by Ray up to ``max_attempts - 1`` times; the retry takes the job over
(at once when the dead worker was on the same host, else once its heartbeat is
``stale_after_s`` old) and resumes from the last checkpoint. When Ray gives up, the job comes
back as ``lost`` for the driver to submit again. An exception of the task itself (not a
failure of the job, which ``run_job`` records) gives the job back to ``pending`` and comes back
``failed``, without retries.

``ray`` is imported only here, and only when the executor runs.
"""

from __future__ import annotations

import contextlib
import os
import socket
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from ecgscale.interrupts import GRACE_S, POLL_S
from ecgscale.spec import StudySpec
from ecgscale.study.lifecycle import Claim, Jobs, closing, this_process
from ecgscale.study.packing import runs_per_gpu, threads_per_run
from ecgscale.study.worker import Job, JobResult, job_id, run_job

DEFAULT_PORT = 6379
"""The port of a Ray head when an address names none."""


def run_ray(
    spec: StudySpec, jobs: list[Job], store_dir: Path, study_dir: Path, redo: set[str]
) -> Iterator[JobResult]:
    """Run ``jobs`` as Ray tasks on the cluster at ``spec.executor.address``; yield each
    job's result as its task completes (``lost``, to be submitted again, when Ray gave up on
    it because its worker or node died)."""
    ray = _import_ray()
    ex = spec.executor
    connect(ex.address)
    study_dir, store_dir = Path(study_dir).resolve(), Path(store_dir).resolve()
    _warn_if_unschedulable(ray, ex.threads_per_worker, ex.gpus_per_run, ex.address)
    # a GPU task in a fresh worker process: Ray names its GPUs in CUDA_VISIBLE_DEVICES, which
    # a worker that has initialised CUDA for an earlier task would not see (0: reuse workers)
    task = ray.remote(max_calls=1 if ex.gpus_per_run else 0)(_ray_task)
    table = Jobs(study_dir / "results.sqlite", stale_after_s=ex.stale_after_s)
    before = table.attempts()
    spec_ref = ray.put(spec)
    refs = {}
    for job in jobs:
        options, threads = task_options(spec, job)
        ref = task.options(**options).remote(
            study_dir,
            store_dir,
            job,
            job_id(job) in redo,
            spec_ref,
            threads,
            runs_per_gpu(spec, job),
        )
        refs[ref] = job
    pending = list(refs)
    try:
        while pending:  # waking up often, to see a Ctrl-C at once
            ready, pending = ray.wait(pending, num_returns=1, timeout=POLL_S)
            for ref in ready:
                job = refs[ref]

                def claimed(name: str = job_id(job)) -> bool:
                    return table.attempts().get(name, 0) > before.get(name, 0)

                yield _result(ray, ref, job, claimed)
    finally:  # interrupted, or the caller stopped early: nothing more runs
        if pending:
            _cancel(ray, pending, ex.stale_after_s)


def _cancel(ray, pending: list, stale_after_s: float) -> None:
    """Cancel the unfinished tasks ``pending``: those not started never run, a running one
    stops (``KeyboardInterrupt`` in the task) and gives its job back; wait ``GRACE_S`` seconds
    at most for them, and say what became of them."""
    for ref in pending:
        with contextlib.suppress(Exception):  # Ray ends them with the driver anyway
            ray.cancel(ref)
    left = pending
    with contextlib.suppress(Exception):
        _, left = ray.wait(pending, num_returns=len(pending), timeout=GRACE_S)
    note = (
        f"ray: {len(pending)} unfinished task(s) cancelled (a running one gives its job back "
        "as it stops)"
    )
    if left:
        note += (
            f"; {len(left)} still running after {GRACE_S:g} s end with this driver: their jobs "
            f"are taken over at once on this host, elsewhere after executor.stale_after_s="
            f"{stale_after_s:g} s"
        )
    print(note, file=sys.stderr)


def task_options(spec: StudySpec, job: Job) -> tuple[dict, int]:
    """Ray options of ``job``'s task and its torch threads: ``threads_per_worker`` CPUs and
    ``gpus_per_run`` GPUs, or 1/k of each for runs packed k to a GPU (fractional GPUs: Ray puts
    k such tasks on one GPU; see :mod:`ecgscale.study.packing`)."""
    ex, k = spec.executor, runs_per_gpu(spec, job)
    options = {
        "num_cpus": ex.threads_per_worker / k,
        "num_gpus": ex.gpus_per_run / k,
        "max_retries": ex.max_attempts - 1,
        "retry_exceptions": False,
        "name": f"ecgscale:{job_id(job)}",
    }
    return options, threads_per_run(spec, k)


def connect(address: str | None) -> None:
    """Connect this process to the Ray cluster at ``address`` (None: ``auto``), unless it is
    connected already; a ``ConnectionError`` naming the address when no cluster answers."""
    ray = _import_ray()
    if ray.is_initialized():
        return
    target = address or "auto"
    if target not in ("auto", "local"):
        _check_reachable(target)
    try:
        ray.init(address=target, logging_level="WARNING", log_to_driver=True)
    except ConnectionError as err:
        raise ConnectionError(
            f"executor.address={target}: no Ray cluster to connect to ({_one_line(err)}); "
            "start one with `ray start --head` or set executor.address"
        ) from None


def _import_ray():
    if "RAY_AUTH_MODE" not in os.environ and (Path.home() / ".ray" / "auth_token").is_file():
        # `ray start` turns token authentication on when this token exists, but a client of
        # ray 2.60 sends it only when RAY_AUTH_MODE=token is set before ray is imported
        os.environ["RAY_AUTH_MODE"] = "token"
    try:
        import ray
    except ImportError:
        raise ValueError(
            "executor.kind=ray needs the ray package: pip install 'ecgscale[cluster]'"
        ) from None
    return ray


def _check_reachable(address: str, timeout_s: float = 5.0) -> None:
    """Fail fast (``ray.init`` retries an unreachable head for minutes)."""
    hostport = address.removeprefix("ray://")
    host, sep, port = hostport.rpartition(":")
    if not sep or not port.isdigit():
        host, port = hostport, str(DEFAULT_PORT)
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=timeout_s).close()
    except OSError as err:
        raise ConnectionError(
            f"executor.address={address}: no Ray cluster answers at {host}:{port} "
            f"({_one_line(err)}); start one with `ray start --head` or set executor.address"
        ) from None


def _one_line(err: BaseException) -> str:
    lines = str(err).strip().splitlines()
    return lines[0] if lines else type(err).__name__


def _warn_if_unschedulable(ray, cpus: int, gpus: int, address: str | None) -> None:
    """Say so when no live node could run a job (the tasks wait for one: an autoscaler may
    add it)."""
    nodes = [n.get("Resources", {}) for n in ray.nodes() if n.get("Alive")]
    if not any(r.get("CPU", 0) >= cpus and r.get("GPU", 0) >= gpus for r in nodes):
        print(
            f"ecgscale: warning: no node of the Ray cluster at {address or 'auto'} has "
            f"{cpus} CPU(s) and {gpus} GPU(s) for a job; its tasks wait for one",
            file=sys.stderr,
        )


def _lost_errors(ray) -> tuple[type[BaseException], ...]:
    """Exceptions with which Ray gives up on a task whose worker, node or raylet died."""
    ex = ray.exceptions
    return (
        ex.WorkerCrashedError,
        ex.NodeDiedError,
        ex.LocalRayletDiedError,
        ex.OutOfMemoryError,
        ex.ObjectLostError,
    )


def _result(ray, ref, job: Job, claimed: Callable[[], bool]) -> JobResult:
    """The result of ``job``'s finished task ``ref``. A lost job is worth another attempt only
    when one of its task's attempts claimed it (``claimed()``): a worker that dies before it
    gets that far would die again."""
    lost = _lost_errors(ray)
    try:
        return ray.get(ref)
    except ray.exceptions.RayError as err:
        cause = err.cause if isinstance(err, ray.exceptions.RayTaskError) else err
        reason = f"{type(cause).__name__}: {_one_line(cause)}"
        if isinstance(cause, lost):
            retry = claimed()
            if not retry:
                reason += " (on every attempt, before it claimed its job)"
            return JobResult(job_id(job), "lost", reason, retry=retry)
        return JobResult(job_id(job), "failed", reason)


def _ray_task(
    study_dir: Path,
    store_dir: Path,
    job: Job,
    redo: bool,
    spec: StudySpec,
    threads: int,
    runs: int,
) -> JobResult:
    """One job on a Ray worker, with ``threads`` torch threads, sharing its GPU with ``runs``
    - 1 others."""
    from ecgscale.evaluate.inference import RUNS_PER_GPU
    from ecgscale.study.executors import init_torch_threads

    os.environ[RUNS_PER_GPU] = str(runs)
    init_torch_threads(threads)
    try:
        result = run_job(study_dir, store_dir, job, redo=redo, spec=spec)
        if result.status == "skipped" and _wait_for_dead_node_owner(study_dir, spec, job):
            result = run_job(study_dir, store_dir, job, redo=redo, spec=spec)
        return result
    except BaseException as err:  # the job is not left "running" under this (live) worker
        _release_if_ours(study_dir, spec, job, f"{type(err).__name__}: {_one_line(err)}")
        raise


def _release_if_ours(study_dir: Path, spec: StudySpec, job: Job, reason: str) -> None:
    """Give ``job`` back (pending) if this process still runs it."""
    try:
        jobs = Jobs(Path(study_dir) / "results.sqlite", stale_after_s=spec.executor.stale_after_s)
        me = this_process()
        if _job_row(jobs, job)[:2] == ("running", me):
            jobs.release(Claim(job_id(job), me, 0), reason)
    except Exception as err:
        print(f"could not give back {job_id(job)}: {err}", file=sys.stderr)


def _job_row(jobs: Jobs, job: Job) -> tuple:
    """``(state, owner, heartbeat_at)`` of ``job`` (Nones: not known)."""
    with closing(jobs.path) as con:
        row = con.execute(
            "SELECT state, owner, heartbeat_at FROM jobs WHERE job_id = ?", (job_id(job),)
        ).fetchone()
    return tuple(row) if row else (None, None, None)


def owner_on_dead_node(owner: str | None, nodes: list[dict]) -> bool:
    """Whether ``owner`` (``host:pid:start``) ran on another host whose Ray node died (in
    ``ray.nodes()``: a dead node of that host name and no live one)."""
    if not owner:
        return False
    host = owner.rsplit(":", 2)[0]
    if host == socket.gethostname():
        return False  # its pid says whether it lives
    names = {(n.get("NodeManagerHostname"), bool(n.get("Alive"))) for n in nodes}
    return (host, False) in names and (host, True) not in names


def _wait_for_dead_node_owner(study_dir: Path, spec: StudySpec, job: Job) -> bool:
    """When ``job`` is running under a worker of a Ray node that died (this task is Ray's
    retry after losing the node), wait until that worker's heartbeat is ``stale_after_s`` old,
    so that the job can be taken over; True when it can now. False at once otherwise (done,
    or running under a live worker)."""
    import ray

    ex = spec.executor
    jobs = Jobs(Path(study_dir) / "results.sqlite", stale_after_s=ex.stale_after_s)
    state, owner, beat = _job_row(jobs, job)
    if state != "running" or not owner_on_dead_node(owner, ray.nodes()):
        return False
    beat = beat if beat is not None else time.time()
    time.sleep(max(0.0, beat + ex.stale_after_s - time.time()) + 1.0)
    return True
