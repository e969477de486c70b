"""The ``slurm`` executor: every job is one task of a SLURM job array, submitted with submitit.

Each array task runs :func:`~ecgscale.study.worker.run_job` (claim, heartbeat, train or resume
from the run's checkpoint, write the result into ``results.sqlite``) on one node, with
``threads_per_worker`` CPUs and ``gpus_per_run`` GPUs (``run_job`` starts ``torchrun`` itself
for several, so the task is one process). The driver only watches the array and yields each
task's :class:`~ecgscale.study.worker.JobResult` as it finishes; a task that dies at the
SLURM level (node failure, killed, out of memory) comes back ``lost`` for the driver to submit
again.

Pre-emption and time-out: SLURM sends ``USR2`` ``signal_delay_s`` before a task's time runs out
(and at pre-emption where the cluster sets ``PreemptParameters=send_user_signal``); submitit
catches it in the task's process and calls :meth:`SlurmTask.checkpoint`, which gives the job's
claim back to the results store (so the requeued task claims it at once instead of waiting for
the heartbeat to go stale) and returns the task itself, which submitit requeues (``scontrol
requeue``) up to ``slurm.max_requeues`` times. The requeued task resumes the run from its last
checkpoint (``train.checkpoint_every``). Each task writes its owner id to
``slurm/owners/<job id>``: a task that SLURM requeued by itself (``--requeue``) gives back the
claim of its earlier process when it restarts, and the driver that of a task that died.

The study folder (``results.sqlite``, the runs' folders, the store and the ``slurm/`` folder
of submitit's pickles and logs) must be on a filesystem shared by the driver and the compute
nodes, and the driver's Python (its virtual environment) must exist at the same path there.
SQLite needs working POSIX locks on that filesystem (check its mount options).
Under this executor ``results.sqlite`` uses a rollback journal (``executor.journal_mode``,
default ``delete`` here): SQLite's WAL mode does not work for processes on different hosts
sharing the file (its shared-memory index is per host).

Packing (``executor.runs_per_gpu``, see :mod:`ecgscale.study.packing`): jobs that share a GPU go
k to an array task (:class:`SlurmPack`), which asks for the same one GPU and
``threads_per_worker`` CPUs as any other and runs its jobs side by side, each in a process of
its own with its share of the CPUs; on pre-emption or time-out it gives back the claims its
processes hold and is requeued like a single job's task.

``slurm.backend`` picks submitit's executor: ``slurm`` (``sbatch``), ``local`` (a process per
task on this machine, through the same pickles, signals and requeues) or ``debug`` (each task
in the driver's process), so the same spec runs on a laptop and in tests.
"""

from __future__ import annotations

import contextlib
import functools
import shutil
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
import submitit
from submitit.core.utils import DelayedSubmission
from submitit.slurm.slurm import SlurmExecutor

from ecgscale.interrupts import sigint_ignored, sleep, stop_processes
from ecgscale.spec import StudySpec
from ecgscale.study.executors import default_workers, init_torch_threads, run_local_gpus
from ecgscale.study.lifecycle import Claim, Jobs, closing, this_process
from ecgscale.study.packing import packs
from ecgscale.study.runs import all_jobs
from ecgscale.study.worker import Job, JobResult, job_id, run_job

POLL_S = {"slurm": 10.0, "local": 0.5, "debug": 0.0}
"""Seconds between two looks at the unfinished tasks (submitit asks ``sacct`` itself, at most
every 10 minutes; a finished task is seen from its result file)."""


class SlurmError(OSError):
    """The slurm executor cannot run here (no ``sbatch``); the message is one line."""


class SlurmTask(submitit.helpers.Checkpointable):
    """One job as a submitit callable: runs it with :func:`run_job` and returns its
    :class:`JobResult`. On pre-emption or time-out, submitit calls :meth:`checkpoint` in this
    process: the claim is given back and the task requeued (the run resumes from its
    checkpoint)."""

    def __init__(
        self, spec: StudySpec, job: Job, store_dir: Path, study_dir: Path, redo: bool = False
    ) -> None:
        self.spec, self.job, self.redo = spec, job, redo
        self.store_dir, self.study_dir = Path(store_dir), Path(study_dir)
        self._claim: Claim | None = None
        self._released = False

    def __call__(self) -> JobResult:
        init_torch_threads(self.spec.executor.threads_per_worker)
        self._released = False
        owner = _owner_file(self.study_dir, job_id(self.job))
        if owner.exists():  # this task ran before and SLURM requeued it: that process is gone
            jobs = Jobs(self.study_dir / "results.sqlite")
            _release_if_held(jobs, job_id(self.job), owner.read_text(), "its task was requeued")
        owner.write_text(this_process())
        try:
            result = run_job(
                self.study_dir,
                self.store_dir,
                self.job,
                redo=self.redo,
                spec=self.spec,
                on_claim=self._claimed,
            )
        finally:
            self._claim = None  # finished: nothing to give back any more
        if self._released and result.status != "done":  # told to stop, not requeued
            return JobResult(
                result.job_id, "lost", "pre-empted or timed out too often", result.attempt, True
            )
        return result

    @property
    def jobs(self) -> list[Job]:
        return [self.job]

    def _claimed(self, claim: Claim) -> None:
        self._claim = claim

    def checkpoint(self, *args: Any, **kwargs: Any) -> DelayedSubmission:
        """Give the job's claim back (pending again) and requeue this task."""
        if self._claim is not None:
            try:
                jobs = Jobs(self.study_dir / "results.sqlite")
                jobs.release(self._claim, "pre-empted or timed out; requeued")
            except Exception as err:  # it is taken over once its heartbeat goes stale
                print(f"could not release {self._claim.job_id}: {err}", file=sys.stderr)
            self._claim, self._released = None, True
        return DelayedSubmission(self, *args, **kwargs)

    def __getstate__(self) -> dict[str, Any]:
        # the claim belongs to this process; a requeued task claims the job again
        return {k: v for k, v in self.__dict__.items() if k not in ("_claim", "_released")}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state, _claim=None, _released=False)


class SlurmPack(submitit.helpers.Checkpointable):
    """Jobs that share one GPU (:func:`~ecgscale.study.packing.packs`) as one array task: run
    side by side on its GPU by :func:`~ecgscale.study.executors.run_local_gpus`, each in a
    process of its own, which records its claim's owner in the job's owner file. Returns their
    :class:`JobResult` list. On pre-emption or time-out, :meth:`checkpoint` gives back the
    claims those processes hold and requeues the task (the processes end with it)."""

    def __init__(
        self, spec: StudySpec, jobs: list[Job], store_dir: Path, study_dir: Path, redo: set[str]
    ) -> None:
        self.spec, self.jobs, self.redo = spec, list(jobs), set(redo)
        self.store_dir, self.study_dir = Path(store_dir), Path(study_dir)
        self._released = False

    def __call__(self) -> list[JobResult]:
        self._released = False
        self._release_held("its task was requeued")  # processes of an earlier start are gone
        results = list(
            run_local_gpus(
                self.spec,
                self.jobs,
                self.store_dir,
                self.study_dir,
                self.redo,
                1,
                on_claim=functools.partial(_record_owner, self.study_dir),
            )
        )
        if self._released:  # told to stop, not requeued
            return [
                r
                if r.status == "done"
                else JobResult(
                    r.job_id, "lost", "pre-empted or timed out too often", r.attempt, True
                )
                for r in results
            ]
        return results

    def _release_held(self, reason: str) -> None:
        """Give back each job whose owner file names a process that still holds it."""
        jobs = Jobs(self.study_dir / "results.sqlite")
        for job in self.jobs:
            owner = _owner_file(self.study_dir, job_id(job))
            if owner.exists():
                _release_if_held(jobs, job_id(job), owner.read_text(), reason)

    def checkpoint(self, *args: Any, **kwargs: Any) -> DelayedSubmission:
        """Give the jobs' claims back (pending again) and requeue this task."""
        self._release_held("pre-empted or timed out; requeued")
        self._released = True
        return DelayedSubmission(self, *args, **kwargs)

    def __getstate__(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if k != "_released"}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state, _released=False)


def _record_owner(study_dir: Path, claim: Claim) -> None:
    """Write the owner of ``claim`` into its job's owner file (``run_job``'s ``on_claim``)."""
    _owner_file(study_dir, claim.job_id).write_text(claim.owner)


def _owner_file(study_dir: Path, job_id_: str) -> Path:
    """Where a task writes its owner id, for the driver to release the job if the task dies."""
    folder = Path(study_dir) / "slurm" / "owners"
    folder.mkdir(parents=True, exist_ok=True)
    return folder / job_id_


def _slurm_parameters(spec: StudySpec) -> dict[str, Any]:
    """``SlurmExecutor.update_parameters`` arguments (sbatch names) of ``spec``."""
    ex, slurm = spec.executor, spec.executor.slurm
    # --requeue: SLURM may requeue the task (submitit does on USR2); false drops an option
    additional = {"requeue": True} | dict(slurm.additional)
    additional = {k: v for k, v in additional.items() if v is not False}
    params: dict[str, Any] = {
        "job_name": f"ecgscale-{spec.name}",
        "time": slurm.time_min,
        "nodes": 1,
        "ntasks_per_node": 1,  # run_job starts torchrun itself for several GPUs
        "cpus_per_task": ex.threads_per_worker,
        "gpus_per_node": ex.gpus_per_run or None,
        "partition": slurm.partition,
        "account": slurm.account,
        "qos": slurm.qos,
        "mem": _mem(slurm.mem_gb) if slurm.mem_gb else None,
        "array_parallelism": slurm.array_parallelism,
        "signal_delay_s": _signal_delay_s(spec),
        "setup": [f"export OMP_NUM_THREADS={ex.threads_per_worker}", *slurm.setup],
        "additional_parameters": additional,
    }
    return {k: v for k, v in params.items() if v is not None}


def _mem(gb: float) -> str:
    return f"{int(gb)}GB" if gb == int(gb) else f"{int(gb * 1024)}MB"


def _signal_delay_s(spec: StudySpec) -> int:
    """Seconds between the USR2 signal and the end of a task: 90, or a quarter of a short
    time limit."""
    return min(90, spec.executor.slurm.time_min * 15)


class _ScriptOnly(SlurmExecutor):
    """A SlurmExecutor that renders scripts on a machine without SLURM (submits nothing)."""

    @classmethod
    def affinity(cls) -> int:
        return 2


def job_script(spec: StudySpec, study_dir: Path, n_tasks: int | None = None) -> str:
    """The sbatch script the slurm executor submits for an array of ``n_tasks`` tasks (default:
    every job of the spec's grid, packed), rendered by submitit without submitting anything."""
    if n_tasks is None:
        n_tasks = len(packs(spec, all_jobs(spec)))
    folder = Path(study_dir).absolute() / "slurm"
    executor = _ScriptOnly(folder, max_num_timeout=spec.executor.slurm.max_requeues)
    executor.update_parameters(**_slurm_parameters(spec))
    if n_tasks > 1:
        executor.parameters["map_count"] = n_tasks
    return executor._make_submission_file_text(executor._submitit_command_str, "script")


def _require_slurm() -> None:
    missing = [cmd for cmd in ("sbatch", "srun", "sacct") if shutil.which(cmd) is None]
    if missing:
        raise SlurmError(
            f"executor.slurm.backend is 'slurm' but {', '.join(missing)} "
            f"{'is' if len(missing) == 1 else 'are'} not on PATH: run "
            "the study from a SLURM login node, or set executor.slurm.backend=local to run the "
            "tasks on this machine"
        )


def make_executor(spec: StudySpec, study_dir: Path) -> submitit.Executor:
    """submitit's executor of ``slurm.backend``, its folder ``study_dir/slurm``, set from the
    spec."""
    slurm = spec.executor.slurm
    folder = Path(study_dir).absolute() / "slurm"
    if slurm.backend == "debug":
        return submitit.DebugExecutor(folder)
    if slurm.backend == "local":
        executor = submitit.LocalExecutor(folder, max_num_timeout=slurm.max_requeues)
        executor.update_parameters(
            timeout_min=slurm.time_min,
            tasks_per_node=1,
            gpus_per_node=spec.executor.gpus_per_run,
            signal_delay_s=_signal_delay_s(spec),
        )
        return executor
    _require_slurm()
    executor = SlurmExecutor(folder, max_num_timeout=slurm.max_requeues)
    executor.update_parameters(**_slurm_parameters(spec))
    return executor


def run_slurm(
    spec: StudySpec, jobs: list[Job], store_dir: Path, study_dir: Path, redo: set[str]
) -> Iterator[JobResult]:
    """Run ``jobs`` as one SLURM job array (through submitit; ``executor.slurm``; jobs that
    share a GPU k to a task) and yield each job's result as its task finishes. With ``backend:
    local`` the tasks are processes of this machine, submitted as slots free up; with
    ``debug`` they run here, one by one."""
    if not jobs:
        return
    study_dir = Path(study_dir).absolute()
    backend = spec.executor.slurm.backend
    executor = make_executor(spec, study_dir)
    store = Jobs(study_dir / "results.sqlite", stale_after_s=spec.executor.stale_after_s)
    for job in jobs:
        _owner_file(study_dir, job_id(job)).unlink(missing_ok=True)
    tasks = [
        SlurmTask(spec, pack[0], store_dir, study_dir, job_id(pack[0]) in redo)
        if len(pack) == 1
        else SlurmPack(spec, pack, store_dir, study_dir, redo & {job_id(j) for j in pack})
        for pack in packs(spec, jobs)
    ]
    if backend == "local":
        window = min(
            spec.executor.slurm.array_parallelism,
            default_workers(spec.executor.threads_per_worker),
        )
    else:
        window = len(tasks)
    queued = list(reversed(tasks))
    running: list[tuple[SlurmTask, submitit.Job]] = []
    try:
        while queued or running:
            if queued and len(running) < window:
                batch = [queued.pop() for _ in range(min(window - len(running), len(queued)))]
                with sigint_ignored():  # local tasks: stopped by the driver, not by a Ctrl-C
                    submitted = executor.submit_array(batch)
                if backend == "local":  # no network filesystem to wait for: a dead task's
                    for sjob in submitted:  # missing result is final at once
                        sjob._results_timeout_s = 2
                running += zip(batch, submitted, strict=True)
                if backend == "slurm":
                    first = submitted[0].job_id.split("_")[0]
                    print(
                        f"submitted SLURM job array {first} ({len(batch)} tasks; logs in "
                        f"{executor.folder})",
                        file=sys.stderr,
                    )
            still = []
            for task, sjob in running:
                if backend == "debug" or sjob.done():  # a debug job runs when asked
                    yield from _results(task, sjob, store)
                else:
                    still.append((task, sjob))
            running = still
            if running:
                sleep(POLL_S[backend])
    finally:  # interrupted, or the caller stopped early: nothing more is submitted
        if running:
            _leave(spec, [sjob for _, sjob in running], backend)


def _leave(spec: StudySpec, running: list[submitit.Job], backend: str) -> None:
    """The driver stops before ``running`` finished. Tasks of this machine (``local``) are
    killed at once (submitit's tasks ignore SIGTERM; their claims are given back by the caller,
    their runs' checkpoints stay); a cluster's keep running, and the driver says so."""
    if backend == "local":
        controllers = []
        for sjob in running:  # a LocalJob keeps the process that controls its task here
            with contextlib.suppress(psutil.Error, AttributeError):
                controllers.append(psutil.Process(sjob._process.pid))
        stop_processes(controllers, grace_s=0)
    elif backend == "slurm":
        ids = " ".join(sorted({sjob.job_id.split("_")[0] for sjob in running}))
        print(
            f"SLURM array {ids}: its {len(running)} unfinished task(s) keep running and write "
            "their results into results.sqlite; run the same command again once they are done "
            f"(`scancel {ids}` stops them: their jobs are then taken over after "
            f"executor.stale_after_s={spec.executor.stale_after_s:g} s)",
            file=sys.stderr,
        )


def _results(task: SlurmTask | SlurmPack, sjob: submitit.Job, store: Jobs) -> list[JobResult]:
    """The JobResult of each of the task's jobs, or ``lost`` (to submit again) when the task
    failed at the SLURM level; then each job's claim, if the dead task still holds it, is
    given back."""
    try:
        error = sjob.exception()  # a debug job runs here
        if error is None:
            result = sjob.result()
            results = result if isinstance(result, list) else [result]
            if all(isinstance(r, JobResult) for r in results):
                return results
            error = TypeError(f"task returned {type(result).__name__}, not JobResults")
    except Exception as err:
        error = err
    reason = f"SLURM task {sjob.job_id} failed: {_one_line(error)}"
    out = []
    for job in task.jobs:
        jid = job_id(job)
        owner = _owner_file(task.study_dir, jid)
        if owner.exists():
            _release_if_held(store, jid, owner.read_text(), reason)
        out.append(JobResult(jid, "lost", reason, retry=True))
    return out


def _release_if_held(jobs: Jobs, jid: str, owner: str, reason: str) -> None:
    """Give ``jid`` back if ``owner`` (a task's process known to be gone) still holds it, so
    the next claim need not wait for its heartbeat to go stale."""
    owner = owner.strip()
    try:
        with closing(jobs.path) as con:
            row = con.execute("SELECT state, owner FROM jobs WHERE job_id = ?", (jid,)).fetchone()
        if owner and row == ("running", owner):
            jobs.release(Claim(jid, owner, 0), reason)
    except Exception as err:  # then it is taken over once its heartbeat goes stale
        print(f"could not release {jid}: {err}", file=sys.stderr)


def _one_line(error: BaseException) -> str:
    """The gist of a submitit error: the last line of the task's traceback, or the first
    lines of an 'uncompleted' message (with the SLURM state)."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    if not lines:
        return type(error).__name__
    if "failed during processing" in lines[0]:  # FailedJobError: the trace between rulers
        trace = str(error).split("-" * 22)
        body = (
            [line.strip() for line in trace[1].splitlines() if line.strip()]
            if len(trace) > 2
            else []
        )
        return body[-1] if body else lines[0]
    if "has not produced any output" in " ".join(lines[:2]):
        return " ".join(lines[:2])
    return f"{type(error).__name__}: {lines[0]}"


__all__ = ["SlurmError", "SlurmPack", "SlurmTask", "job_script", "make_executor", "run_slurm"]
