"""Multi-process training (DDP): the process-group plumbing.

A process group trains one run: one process per GPU (NCCL), or CPU processes over gloo, started
by ``torchrun`` (:mod:`ecgscale.study.torchrun` trains a study's runs that way). Process 0
writes weights, checkpoints and results, and evaluates the probes; the others only train.

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

import os
import warnings
from contextlib import AbstractContextManager, nullcontext

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
