r"""A study's pending runs under ``torchrun``, each spread over the processes (the options are
those of ``ecgscale train``: ``--set KEY=VALUE``, ``--run RUN_ID``, ``--retry-failed``)::

    OMP_NUM_THREADS=1 torchrun --standalone --nproc_per_node=2 \
        -m ecgscale.study.torchrun SPEC.yaml --out DIR

Every process takes part in every run, one after the other (see
:mod:`ecgscale.train.distributed`). Process 0 builds the store, writes weights, checkpoints and
the results table, and evaluates the probes; the others only train. Without ``torchrun`` (no
``WORLD_SIZE``), ``python -m ecgscale.study.torchrun`` trains the runs in this one process, on
its GPU if it has one. (``ecgscale train`` instead runs several runs side by side in worker
processes.)
"""

from __future__ import annotations

import argparse
from contextlib import ExitStack
from pathlib import Path

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

    from ecgscale.spec import SpecError
    from ecgscale.study.lifecycle import Jobs
    from ecgscale.study.results import Results, write_run
    from ecgscale.study.runner import prepare_data, store_dir
    from ecgscale.study.runs import execute_run, expand
    from ecgscale.study.specfile import load_spec
    from ecgscale.study.worker import Heartbeat

    try:
        spec = load_spec(args.spec, args.overrides)
    except SpecError as err:
        parser.error(str(err))
    grid = expand(spec)
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
        claim = jobs.claim(run.run_id, "run") if distributed.is_main() else None
        if not distributed.broadcast(claim is not None):
            continue  # done, or running under another live worker
        with ExitStack() as stack:
            if claim:
                stack.enter_context(Heartbeat(jobs, claim, spec.executor.heartbeat_s))
            out = execute_run(spec, run, store_dir(spec, study_dir), study_dir / run.folder)
        row = out.row
        if claim:
            with jobs.finishing(claim, row["status"], row["error"]) as con:
                write_run(con, row, out.evals, out.tasks)
            print(f"{run.run_id}: {row['status']}" + (f" ({row['error']})" if row["error"] else ""))
    distributed.close()


if __name__ == "__main__":
    main()
