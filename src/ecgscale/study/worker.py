"""One job on a worker, whatever the executor: claim it, keep its heartbeat, run it, write its
result; a run of several processes goes under ``torchrun``.

``python -m ecgscale.study.worker STUDY_DIR JOB_ID`` runs one job from the command line (what a
SLURM task or a ``torchrun`` child calls); the study folder's ``spec.yaml`` says the rest.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

from ecgscale.interrupts import GRACE_S
from ecgscale.spec import StudySpec
from ecgscale.study.lifecycle import Claim, Jobs, NotOwner
from ecgscale.study.results import write_run, write_scratch
from ecgscale.study.runs import (
    Hooks,
    Outcome,
    RunSpec,
    ScratchSpec,
    all_jobs,
    execute,
    store_dir,
)
from ecgscale.study.specfile import load_spec

Job = RunSpec | ScratchSpec


@dataclass(frozen=True)
class JobResult:
    """What a worker hands back: ``status`` done, failed, skipped (done already, or running
    under a live owner elsewhere) or lost (its worker died: set by the executor)."""

    job_id: str
    status: str
    error: str | None = None
    attempt: int = 0
    retry: bool = False
    """A failure worth another attempt (not a deterministic one such as divergence)."""


def job_id(job: Job) -> str:
    return job.run_id if isinstance(job, RunSpec) else job.scratch_id


def job_kind(job: Job) -> str:
    return "run" if isinstance(job, RunSpec) else "scratch"


def processes_per_run(spec: StudySpec) -> int:
    """Processes that train one run: one per GPU it asks for, else one."""
    return max(1, spec.executor.gpus_per_run)


class Heartbeat:
    """A thread that marks a claimed job alive every ``every_s`` seconds, with its progress."""

    def __init__(self, jobs: Jobs, claim: Claim, every_s: float) -> None:
        self.jobs, self.claim, self.every_s = jobs, claim, every_s
        self.progress: tuple[int | None, int | None] = (None, None)
        self.lost = False
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._beat, name="ecgscale-heartbeat", daemon=True)

    def _beat(self) -> None:
        while not self._stop.wait(self.every_s):
            try:
                self.lost = not self.jobs.heartbeat(self.claim, *self.progress)
            except Exception as err:  # a busy or unreachable store: try again next beat
                print(f"heartbeat of {self.claim.job_id} failed: {err}", file=sys.stderr)

    def __enter__(self) -> Heartbeat:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def run_job(
    study_dir: Path,
    store_dir: Path,
    job: Job,
    *,
    redo: bool = False,
    spec: StudySpec | None = None,
    on_claim: Callable[[Claim], None] | None = None,
) -> JobResult:
    """Claim ``job`` in the study's results store, run it, write its result; never raises for
    a failure of the job itself. ``redo`` claims a finished run to evaluate it again (its
    saved weights are reused, nothing is trained). ``on_claim`` is told the claim once taken
    (e.g. to give it back when the process is told to stop). Stopped by an exception from
    outside the job (``KeyboardInterrupt``, ``SystemExit``), it gives the job back (pending;
    a run's checkpoints stay for the next attempt) and raises it."""
    study_dir = Path(study_dir)
    spec = spec or load_spec(study_dir / "spec.yaml")
    jobs = Jobs(study_dir / "results.sqlite", stale_after_s=spec.executor.stale_after_s)
    claim = jobs.claim(job_id(job), job_kind(job), redo=redo)
    if claim is None:
        return JobResult(job_id(job), "skipped")
    try:
        if on_claim is not None:
            on_claim(claim)
        return _run_claimed(jobs, claim, spec, study_dir, store_dir, job)
    except BaseException as err:  # stopped from outside (Ctrl-C, SIGTERM): give the job back
        jobs.release(claim, f"stopped: {type(err).__name__}")
        raise


def _run_claimed(
    jobs: Jobs, claim: Claim, spec: StudySpec, study_dir: Path, store_dir: Path, job: Job
) -> JobResult:
    """Run the claimed ``job`` (with its heartbeat) and write its result."""
    trained: list[int] = []
    with Heartbeat(jobs, claim, spec.executor.heartbeat_s) as beat:

        def on_train(step: int) -> None:
            trained.append(step)
            jobs.log(claim, "trained", f"from step {step}" if step else "from the start")

        def on_progress(step: int, total: int) -> None:
            beat.progress = (step, total)

        if processes_per_run(spec) > 1:
            jobs.log(claim, "trained", f"under torchrun, {processes_per_run(spec)} processes")
            out = _run_under_torchrun(study_dir, job, processes_per_run(spec))
        else:
            out = execute(spec, job, store_dir, study_dir, Hooks(on_train, on_progress))
    if out.row["status"] == "done" and not trained and processes_per_run(spec) == 1:
        jobs.log(claim, "evaluated", "from saved weights")
    return record(jobs, claim, job, out)


def record(jobs: Jobs, claim: Claim, job: Job, out: Outcome) -> JobResult:
    """Write ``out``, what the claimed ``job`` made, to the results store and finish the claim
    (skipped when the claim was taken over meanwhile)."""
    row = out.row
    try:
        with jobs.finishing(claim, row["status"], row["error"]) as con:
            if isinstance(job, RunSpec):
                write_run(con, row, out.evals, out.tasks)
            else:
                write_scratch(con, row)
    except NotOwner as err:
        return JobResult(job_id(job), "skipped", str(err), claim.attempt)
    error = row["error"]
    retry = row["status"] == "failed" and not str(error).startswith("diverged")
    return JobResult(job_id(job), row["status"], error, claim.attempt, retry)


def _run_under_torchrun(study_dir: Path, job: Job, processes: int) -> Outcome:
    """Run ``job`` across ``processes`` processes of this node; rank 0 writes the outcome."""
    with tempfile.TemporaryDirectory(prefix="ecgscale-") as tmp:
        outcome = Path(tmp) / "outcome.json"
        command = [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--standalone",
            f"--nproc_per_node={processes}",
            "-m",
            "ecgscale.study.worker",
            str(study_dir),
            job_id(job),
            "--child",
            str(outcome),
        ]
        env = {**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")}
        # its own process group: a terminal's Ctrl-C reaches this worker's driver, not torchrun
        proc = subprocess.Popen(
            command,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,
        )
        try:
            stdout, stderr = proc.communicate()
        except BaseException:  # this worker is stopped: so are torchrun and its processes
            _stop_group(proc)
            raise
        if outcome.exists():
            data = json.loads(outcome.read_text())
            return Outcome(data["row"], data["evals"], data["tasks"])
    tail = (stderr or stdout).strip().splitlines()[-1:] or ["no output"]
    row = {
        **asdict(job),
        "status": "failed",
        "error": f"torchrun exited {proc.returncode}: {tail[0]}",
    }
    return Outcome(row)


def _stop_group(proc: subprocess.Popen) -> None:
    """Stop the process group that ``proc`` leads: SIGTERM, then SIGKILL after the grace."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, sig)
        try:
            proc.wait(GRACE_S)
            return
        except subprocess.TimeoutExpired:
            continue


def find_job(spec: StudySpec, job_id_: str) -> Job:
    """The job of ``spec``'s grid with id ``job_id_``."""
    for job in all_jobs(spec):
        if job_id(job) == job_id_:
            return job
    raise KeyError(f"job {job_id_!r} is not in the grid of study {spec.name!r}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m ecgscale.study.worker")
    parser.add_argument("study_dir", type=Path)
    parser.add_argument("job_id")
    parser.add_argument("--redo", action="store_true", help="evaluate a finished run again")
    parser.add_argument("--child", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    from ecgscale.train import distributed

    spec = load_spec(args.study_dir / "spec.yaml")
    job = find_job(spec, args.job_id)
    if args.child is None:
        result = run_job(args.study_dir, store_dir(spec, args.study_dir), job, redo=args.redo)
        print(json.dumps(asdict(result)))
        return 0 if result.status in ("done", "skipped") else 1
    distributed.init_from_env()
    try:
        out = execute(spec, job, store_dir(spec, args.study_dir), args.study_dir)
        if distributed.is_main():
            tmp = args.child.with_suffix(".tmp")
            tmp.write_text(json.dumps({"row": out.row, "evals": out.evals, "tasks": out.tasks}))
            os.replace(tmp, args.child)
    finally:
        distributed.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
