"""Multi-process training (DDP): the process-group plumbing, and a ``torchrun`` entry.

Train the pending runs of a study, each spread over the processes (the options are those of
``ecgscale train``: ``--set KEY=VALUE``, ``--run RUN_ID``, ``--retry-failed``)::

    OMP_NUM_THREADS=1 torchrun --standalone --nproc_per_node=2 -m ecgscale.train SPEC.yaml --out DIR

Every process takes part in every run, one after the other: one process per GPU (NCCL), or CPU
processes over gloo. Process 0 builds the store, writes weights, checkpoints and the results
table, and evaluates the probes; the others only train. Without ``torchrun`` (no
``WORLD_SIZE``), ``python -m ecgscale.train`` trains the runs in this one process, on its GPU if
it has one. (``ecgscale train`` instead runs several runs side by side in worker processes.)

What the loop does with the processes (see :mod:`ecgscale.train.loop`): every process draws the
same global batch and the same SSL masks, takes its contiguous share of the batch
(:func:`shard`), and DDP averages the gradients, so results do not depend on the number of
processes beyond floating-point noise. BatchNorm is the exception on CPUs: ``SyncBatchNorm`` runs
only on GPUs (torch 2.13 raises for CPU tensors), so CPU processes normalise their own share of
the batch, which changes the results of BatchNorm models (the ResNet) a little; on GPUs BatchNorm
layers become ``SyncBatchNorm`` and see the whole batch. Dropout draws from each process's own
generator (seeded ``seed + rank``): statistically, not bitwise, the same as one process.
"""

from __future__ import annotations

import argparse
import os
import warnings
from contextlib import AbstractContextManager, ExitStack, nullcontext
from pathlib import Path

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel


def init_from_env() -> None:
    """Join the process group that ``torchrun`` describes (when ``WORLD_SIZE`` > 1)."""
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1 or dist.is_initialized():
        return
    if torch.cuda.is_available():
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
    dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")


def close() -> None:
    """Leave the process group, if one was joined."""
    if dist.is_initialized():
        dist.destroy_process_group()


def rank() -> int:
    return dist.get_rank() if dist.is_initialized() else 0


def world_size() -> int:
    return dist.get_world_size() if dist.is_initialized() else 1


def is_main() -> bool:
    """Whether this process writes files (process 0)."""
    return rank() == 0


def device() -> torch.device:
    """This process's device: its GPU (``LOCAL_RANK``) if there are GPUs, else the CPU."""
    if torch.cuda.is_available():
        return torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
    return torch.device("cpu")


def shard(n: int) -> slice:
    """This process's contiguous share of ``n`` items (shares differ in size by at most one)."""
    r, w = rank(), world_size()
    return slice(r * n // w, (r + 1) * n // w)


def all_sum(t: torch.Tensor) -> torch.Tensor:
    """``t`` summed over the processes (``t`` itself in a single process)."""
    if world_size() == 1:
        return t
    buf = t.to(device(), copy=True)
    dist.all_reduce(buf)
    return buf.to(t.device)


def gather(t: torch.Tensor) -> list[torch.Tensor]:
    """Every process's ``t`` (same shape everywhere), on the CPU, in rank order."""
    if world_size() == 1:
        return [t.cpu()]
    buf = t.to(device())
    out = [torch.empty_like(buf) for _ in range(world_size())]
    dist.all_gather(out, buf)
    return [o.cpu() for o in out]


def broadcast(obj: object) -> object:
    """Process 0's ``obj``, on every process (sent pickled between the processes)."""
    if world_size() == 1:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0, device=device())
    return box[0]


def wrap(model: nn.Module) -> nn.Module:
    """``model`` for training across the processes: DDP, with SyncBatchNorm on GPUs."""
    if world_size() == 1:
        return model
    dev = device()
    if dev.type == "cuda":
        model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
    elif any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules()):
        warnings.warn(
            "BatchNorm in CPU processes normalises each process's share of the batch "
            "(SyncBatchNorm needs GPUs): results differ a little from one process",
            stacklevel=2,
        )
    return DistributedDataParallel(model, device_ids=[dev.index] if dev.type == "cuda" else None)


def no_sync(model: nn.Module, skip: bool) -> AbstractContextManager:
    """Within it, backward passes of a DDP ``model`` accumulate without averaging (if ``skip``)."""
    return model.no_sync() if skip and isinstance(model, DistributedDataParallel) else nullcontext()


def main(argv: list[str] | None = None) -> None:
    """Train the pending runs of a study, each across all processes of the group."""
    parser = argparse.ArgumentParser(prog="python -m ecgscale.train")
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

    init_from_env()
    pending = None
    if is_main():
        prepare_data(spec, study_dir, progress=False)
        status = Results(study_dir / "results.sqlite").statuses()
        keep = {"done"} if args.retry_failed else {"done", "failed"}
        pending = {r.run_id for r in grid if status.get(r.run_id) not in keep}
    pending = broadcast(pending)  # the others wait here for the store
    jobs = Jobs(study_dir / "results.sqlite", stale_after_s=spec.executor.stale_after_s)
    for run in grid:
        if run.run_id not in pending or (args.only and run.run_id not in args.only):
            continue
        claim = jobs.claim(run.run_id, "run") if is_main() else None
        if not broadcast(claim is not None):
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
    close()
