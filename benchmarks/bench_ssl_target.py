"""The masked objective's normalised reconstruction target against the plain mean/std version,
timed alternately in the same run on this CPU.

    .venv/bin/python benchmarks/bench_ssl_target.py [--batch 64] [--length 1000] [--patch 10]
        [--threads 1] [--repeats 50]

Both standardise every lead's ``patch``-sample patch of a ``(batch, 12, length)`` batch (the
demo's: 64 records, 10 s at 100 Hz, 0.1 s patches): *plain* with ``Tensor.mean`` and
``Tensor.std`` over the patch dimension (the project's code before 2026-12-05), *project* as
:meth:`ecgscale.objectives.masked.MaskedReconstruction.target` (products with a column of
``1/patch``). Printed: the CPU, the median time of each, their ratio, and the largest difference
between the two targets. One training step computes the target once per batch.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
import torch.nn.functional as F

from ecgscale.models.ladder import build
from ecgscale.objectives.masked import STD_FLOOR_MV, MaskedReconstruction
from ecgscale.train.hardware import cpu_summary

UNTIMED = 2
"""First calls of each left out of the median (allocations)."""


def plain_target(x: torch.Tensor, patch: int) -> torch.Tensor:
    """Each lead's patch standardised with mean() and std() (the reference)."""
    length = x.shape[-1]
    patches = F.pad(x, (0, -length % patch)).unflatten(-1, (-1, patch))
    mean = patches.mean(-1, keepdim=True)
    std = patches.std(-1, keepdim=True, unbiased=False).clamp_min(STD_FLOOR_MV)
    return ((patches - mean) / std).flatten(-2)[..., :length]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--length", type=int, default=1000)
    parser.add_argument("--patch", type=int, default=10)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=50)
    args = parser.parse_args()
    if args.repeats <= UNTIMED:
        parser.error(f"--repeats must exceed the {UNTIMED} untimed first calls")
    torch.set_num_threads(args.threads)
    encoder = build("resnet", 20_000, input_len=args.length, fs=100)
    objective = MaskedReconstruction(encoder, patch=args.patch, mask_ratio=0.5)
    x = 0.5 * torch.randn(args.batch, 12, args.length) + 1.0  # a baseline offset, as in mV
    times: dict[str, list[float]] = {"plain": [], "project": []}
    for _ in range(args.repeats):  # alternating, so the machine's load weighs on both alike
        for name, fn in (
            ("plain", lambda: plain_target(x, args.patch)),
            ("project", lambda: objective.target(x)),
        ):
            start = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - start)
    plain, project = (statistics.median(times[k][UNTIMED:]) * 1e3 for k in ("plain", "project"))
    diff = (objective.target(x) - plain_target(x, args.patch)).abs().max().item()
    print(f"CPU: {cpu_summary()}; {args.threads} thread(s)")
    print(f"target of a ({args.batch}, 12, {args.length}) batch, {args.patch}-sample patches")
    print(f"plain {plain:.2f} ms | project {project:.2f} ms | speed-up {plain / project:.2f}x")
    print(f"largest difference between the targets: {diff:.2g}")


if __name__ == "__main__":
    main()
