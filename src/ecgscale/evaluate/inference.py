"""Forward passes of a frozen encoder on its own device: precision, batch size, input transfer.

Evaluation runs where the model trained: on its GPU (bf16 autocast when the run trained in
bf16), or on the CPU in fp32 exactly as before. A batch fills the device: on a CPU it is
:data:`CPU_BATCH` records; on a GPU, the largest power of two (up to :data:`MAX_BATCH`) whose
measured activation memory fits :data:`MEMORY_SHARE` of the memory free to this process (free
on the device, plus what its allocator caches unused), divided among the runs sharing the GPU
(``ECGSCALE_RUNS_PER_GPU``, set by the executors for packed runs). The next batch is read
(and pinned) in a background thread while the current one runs.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractContextManager, nullcontext

import numpy as np
import torch
from torch import nn

from ecgscale.models import Encoder
from ecgscale.objectives.base import ReadFn
from ecgscale.train.hardware import resolve_precision

RUNS_PER_GPU = "ECGSCALE_RUNS_PER_GPU"
"""Environment variable: the runs sharing this process's GPU (packing); unset means one."""
CPU_BATCH = 256
"""Records per forward pass on a CPU (what evaluation used before it ran on GPUs)."""
MAX_BATCH = 4096
"""Most records per forward pass on a GPU."""
MEMORY_SHARE = 0.5
"""Share of the GPU's free memory one evaluation batch may take."""
PROBE_RECORDS = 8
"""Records of the forward pass that measures a GPU batch's memory per record."""


def resolve_device(name: str | torch.device | None = None) -> torch.device:
    """``name`` as a device; None or ``auto``: the GPU if there is one, else the CPU. A
    one-line ValueError for a name torch does not know or a GPU this machine lacks."""
    if name is None or str(name) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise ValueError(f"device {str(name)!r}: not a device (cpu, cuda, cuda:1, ...)") from None
    if device.type == "cuda" and (device.index or 0) >= torch.cuda.device_count():
        raise ValueError(f"device {str(name)!r}: {torch.cuda.device_count()} CUDA GPU(s) here")
    return device


def device_of(module: nn.Module) -> torch.device:
    """The device of ``module``'s parameters."""
    return next(module.parameters()).device


def autocast(device: torch.device, precision: str) -> AbstractContextManager:
    """bf16 autocast on a GPU when ``precision`` is bf16; fp32 (no autocast) otherwise."""
    if bf16_on(device, precision):
        return torch.autocast(device.type, torch.bfloat16)
    return nullcontext()


def bf16_on(device: torch.device, precision: str) -> bool:
    """Whether forward passes on ``device`` run in bf16: on GPUs under bf16 precision (or
    ``auto``, where the GPU has it) only."""
    return device.type == "cuda" and resolve_precision(precision, device) == "bf16"


def fit_batch(budget_bytes: float, per_record_bytes: float, most: int = MAX_BATCH) -> int:
    """The largest power of two up to ``most`` whose records fit ``budget_bytes`` (at least 1)."""
    fits = max(1, min(most, int(budget_bytes // max(per_record_bytes, 1.0))))
    return 1 << (fits.bit_length() - 1)


def batch_size_for(
    encoder: Encoder, input_len: int, precision: str = "fp32", cpu_batch: int = CPU_BATCH
) -> int:
    """Records per forward pass of ``encoder`` on its device: ``cpu_batch`` on a CPU; on a GPU
    as many as :data:`MEMORY_SHARE` of its free memory holds, by a measured forward pass."""
    device = device_of(encoder)
    if device.type != "cuda":
        return cpu_batch
    free = torch.cuda.mem_get_info(device)[0] + torch.cuda.memory_reserved(device)
    free -= torch.cuda.memory_allocated(device)
    budget = free * MEMORY_SHARE / int(os.environ.get(RUNS_PER_GPU, "1"))
    return fit_batch(budget, _bytes_per_record(encoder, input_len, precision))


@torch.inference_mode()
def _bytes_per_record(encoder: Encoder, input_len: int, precision: str) -> float:
    """Peak GPU memory of a forward pass per record (input included)."""
    device = device_of(encoder)
    torch.cuda.synchronize(device)
    torch.cuda.reset_peak_memory_stats(device)
    before = torch.cuda.memory_allocated(device)
    x = torch.zeros(PROBE_RECORDS, encoder.n_leads, input_len, device=device)
    with autocast(device, precision):
        encoder.features(x)
    return (torch.cuda.max_memory_allocated(device) - before) / PROBE_RECORDS


def batches(read: ReadFn, rows: np.ndarray, batch_size: int, device: torch.device) -> Iterator:
    """The records at ``rows``, ``batch_size`` at a time, as tensors on ``device``; the next
    batch is read (pinned, for a GPU) in a background thread while the current one is used."""

    def load(start: int) -> torch.Tensor:
        x = torch.from_numpy(read(rows[start : start + batch_size]))
        return x.pin_memory() if device.type == "cuda" else x

    with ThreadPoolExecutor(1, thread_name_prefix="ecgscale-eval-reader") as pool:
        upcoming = pool.submit(load, 0)
        for start in range(0, len(rows), batch_size):
            x = upcoming.result()
            if start + batch_size < len(rows):
                upcoming = pool.submit(load, start + batch_size)
            yield x.to(device, non_blocking=True)


@torch.inference_mode()
def pooled(encoder: Encoder, x: torch.Tensor, precision: str = "fp32") -> np.ndarray:
    """Pooled features ``(B, D)`` float32 of ``x`` (on the encoder's device), as numpy."""
    with autocast(x.device, precision):
        return encoder.features(x).float().cpu().numpy()
