"""Packing: several small runs share one GPU, each in a process of its own.

Small rungs cannot keep a GPU busy. Measured on an H200 at 12 x 4096 samples @ 400 Hz, bf16,
batch 256 (``benchmarks/gpu_hours.py --measure``): the 200M rungs reach 25-28% MFU, the 5M-50M
ones 12-19%, the 500K ones under 2%, where a step takes 10-12 ms whatever its FLOPs (kernel
launches, not arithmetic). A run of one GPU (``executor.gpus_per_run: 1``) that holds it alone
leaves it idle most of the time; with ``executor.runs_per_gpu: k``, k such runs share it, each
in a process of its own (processes, not threads: each launches its kernels from its own CPU
core, which is what a small model is short of; CUDA time-slices the GPU between them):

- ``local``: each job starts in a fresh process whose ``CUDA_VISIBLE_DEVICES`` names a GPU with
  room for it (:class:`GpuBoard`: a GPU holds shares up to 1, a packed job takes 1/k);
- ``ray``: a task asks for 1/k of a GPU (Ray's fractional GPUs) and 1/k of the CPUs;
- ``slurm``: k jobs go to one array task (one GPU), each in a process of its own (:func:`packs`).

Packed runs split the ``threads_per_worker`` CPUs of their GPU (:func:`threads_per_run`), so a
GPU asks for as many CPUs packed as not. Runs under ``torchrun`` (``gpus_per_run`` > 1) and CPU
runs are never packed. ``runs_per_gpu: auto`` sets k by the rung's target size
(:data:`AUTO_RUNS_PER_GPU`); ``benchmarks/gpu_check.sh`` measures, on a GPU, the throughput and
memory of packed runs of the 500K rung against one run per GPU.
"""

from __future__ import annotations

from collections.abc import Sequence
from fractions import Fraction

from ecgscale.numformat import compact_caps
from ecgscale.spec import StudySpec
from ecgscale.study.runs import RunSpec, ScratchSpec

Job = RunSpec | ScratchSpec

AUTO_RUNS_PER_GPU: tuple[tuple[int, int], ...] = ((2_000_000, 4), (20_000_000, 2))
"""``runs_per_gpu: auto``: (largest target parameters, runs per GPU); above the last, 1. The
rungs up to 2M (under 2% MFU alone, 10-12 ms steps set by launches) go four to a GPU; up to 20M
(5-19% MFU) two; above, one. At 12 x 4096 and batch 256 a 20M run holds a few GB of activations
in bf16, so two fit a 40 GB GPU and four 2M ones any GPU."""


def runs_per_gpu(spec: StudySpec, job: Job) -> int:
    """How many runs share ``job``'s GPU: 1 for CPU runs and runs of several GPUs, else
    ``executor.runs_per_gpu`` (``auto``: by :data:`AUTO_RUNS_PER_GPU`)."""
    ex = spec.executor
    if ex.gpus_per_run != 1:
        return 1
    if ex.runs_per_gpu != "auto":
        return ex.runs_per_gpu
    return next((k for size, k in AUTO_RUNS_PER_GPU if job.target_params <= size), 1)


def threads_per_run(spec: StudySpec, runs: int) -> int:
    """CPU threads of each of ``runs`` runs sharing one GPU's ``threads_per_worker`` CPUs."""
    return max(1, spec.executor.threads_per_worker // runs)


def packs(spec: StudySpec, jobs: Sequence[Job]) -> list[list[Job]]:
    """``jobs`` in groups that share one GPU: jobs of the same runs per GPU k, k to a group, in
    the order given (a group closes when full; the last of each k may hold fewer)."""
    out: list[list[Job]] = []
    open_packs: dict[int, list[Job]] = {}
    for job in jobs:
        k = runs_per_gpu(spec, job)
        pack = open_packs.setdefault(k, [])
        if not pack:
            out.append(pack)
        pack.append(job)
        if len(pack) == k:
            del open_packs[k]
    return out


class GpuBoard:
    """The GPUs of one machine and the share of each that running jobs hold (at most 1)."""

    def __init__(self, gpus: int) -> None:
        self.used = [Fraction(0)] * gpus

    def place(self, gpus: int, share: Fraction) -> tuple[int, ...] | None:
        """GPUs for a job of ``gpus`` GPUs taking ``share`` of each (1/runs per GPU; a job of
        several GPUs takes them whole), or None if they are not free. A one-GPU job goes to the
        fullest GPU with room (packed with others, free GPUs kept free), several to the first
        free ones."""
        if gpus == 1:
            room = [i for i, used in enumerate(self.used) if used + share <= 1]
            chosen = (max(room, key=lambda i: (self.used[i], -i)),) if room else ()
        else:
            chosen = tuple(i for i, used in enumerate(self.used) if used == 0)[:gpus]
        if len(chosen) < gpus:
            return None
        for i in chosen:
            self.used[i] += share
        return chosen

    def release(self, chosen: tuple[int, ...], share: Fraction) -> None:
        """Give back the ``share`` of each GPU that :meth:`place` gave a job."""
        for i in chosen:
            self.used[i] -= share


def packing_words(spec: StudySpec) -> str:
    """The packing setting in words."""
    setting = spec.executor.runs_per_gpu
    if setting != "auto":
        return f"runs_per_gpu {setting}"
    (first, k), *rest = AUTO_RUNS_PER_GPU
    rule = [f"{k} runs to a GPU up to {compact_caps(first)} parameters"]
    rule += [f"{k} up to {compact_caps(size)}" for size, k in rest]
    return f"runs_per_gpu auto ({', '.join(rule)}, else 1)"
