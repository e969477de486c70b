r"""A study's pending runs under ``torchrun``, each spread over the processes (the options are
those of ``ecgscale train``: ``--set KEY=VALUE``, ``--run RUN_ID``, ``--retry-failed``)::

    OMP_NUM_THREADS=1 torchrun --standalone --nproc_per_node=2 \
        -m ecgscale.study.torchrun SPEC.yaml --out DIR

Every process takes part in every run, one after the other (see
:mod:`ecgscale.train.distributed`), through :func:`ecgscale.study.runs.execute` as every worker.
Process 0 builds the store, writes weights, checkpoints and the results table, and evaluates the
probes; the others only train. Without ``torchrun`` (no ``WORLD_SIZE``), ``python -m
ecgscale.study.torchrun`` trains the runs in this one process, on its GPU if it has one.
(``ecgscale train`` instead runs several runs side by side in worker processes.)
"""

from __future__ import annotations

import argparse
from contextlib import ExitStack
from pathlib import Path

from ecgscale.spec import SpecError, StudySpec
from ecgscale.study.lifecycle import Jobs
from ecgscale.study.results import Results
from ecgscale.study.runner import prepare_data
from ecgscale.study.runs import execute, expand, expand_references, store_dir
from ecgscale.study.specfile import load_spec
from ecgscale.study.worker import Heartbeat, Job, JobResult, job_id, job_kind, record
from ecgscale.train import distributed


def main(argv: list[str] | None = None) -> None:
    """Train the pending runs of a study, each across all processes of the group."""
    parser = argparse.ArgumentParser(prog="python -m ecgscale.study.torchrun")
    parser.add_argument("spec", nargs="?", type=Path, help="study spec (default: the demo)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--out", type=Path, help="study folder (default: studies/<name>)")
    parser.add_argument("--run", dest="only", action="append", help="train only this run id")
    parser.add_argument("--retry-failed", action="store_true", help="train failed runs again")
    args = parser.parse_args(argv)

    try:
        spec = load_spec(args.spec, args.overrides)
    except SpecError as err:
        parser.error(str(err))
    grid = [*expand(spec), *expand_references(spec)]
    unknown = set(args.only or ()) - {r.run_id for r in grid}
    if unknown:
        parser.error(f"run {sorted(unknown)[0]!r} is not in this study's grid")
    study_dir = args.out or Path("studies") / spec.name

    distributed.init_from_env()
    pending = None
    if distributed.is_main():
        prepare_data(spec, study_dir, progress=False)
        status = Results(study_dir / "results.sqlite").statuses()
        keep = {"done"} if args.retry_failed else {"done", "failed"}
        pending = {r.run_id for r in grid if status.get(r.run_id) not in keep}
    pending = distributed.broadcast(pending)  # the others wait here for the store
    jobs = Jobs(study_dir / "results.sqlite", stale_after_s=spec.executor.stale_after_s)
    for run in grid:
        if run.run_id not in pending or (args.only and run.run_id not in args.only):
            continue
        res = run_in_group(jobs, spec, study_dir, run)
        if res is not None:
            print(f"{res.job_id}: {res.status}" + (f" ({res.error})" if res.error else ""))
    distributed.close()


def run_in_group(jobs: Jobs, spec: StudySpec, study_dir: Path, job: Job) -> JobResult | None:
    """``job`` trained by every process of the group, each calling this (what
    :func:`ecgscale.study.worker.run_job` does in one process): process 0 claims it, keeps its
    heartbeat and records its outcome, and returns its result. None on the other processes,
    and when ``job`` is done or running under another live worker."""
    claim = jobs.claim(job_id(job), job_kind(job)) if distributed.is_main() else None
    if not distributed.broadcast(claim is not None):
        return None
    with ExitStack() as stack:
        if claim:
            stack.enter_context(Heartbeat(jobs, claim, spec.executor.heartbeat_s))
        out = execute(spec, job, store_dir(spec, study_dir), study_dir)
    return record(jobs, claim, job, out) if claim else None


if __name__ == "__main__":
    main()
