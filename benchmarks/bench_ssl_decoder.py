"""What the masked objective's decoder block costs a training step, against the linear head
alone, timed alternately in the same run on this CPU.

    .venv/bin/python benchmarks/bench_ssl_decoder.py [--batch 64] [--length 500] [--threads 1]
        [--repeats 30] [--depth 1]

For each family and demo size (20K, 200K; 5 s at 100 Hz as the demo), one optimiser step
(forward, backward, AdamW) of masked reconstruction with the linear head (``decoder_depth``
0, the baseline) and with ``--depth`` decoder blocks (the demo's 1), alternating so that the
machine's load weighs on both alike, under the precision a study picks here (``precision:
auto``: bf16 autocast where the CPU has it natively, else fp32; run it with
``ONEDNN_MAX_CPU_ISA=AVX2 ATEN_CPU_CAPABILITY=avx2`` for an AVX2-only CPU's kernels). One
thread, as each of the demo's two local workers has. Printed: the CPU, then per model the
median step time of each and their ratio, and the FLOPs the block adds as a share of the
encoder's (counted as :func:`ecgscale.models.ladder.measure` counts them).
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from torch.utils.flop_counter import FlopCounterMode

from ecgscale.models.ladder import build
from ecgscale.objectives import create_objective
from ecgscale.train.hardware import cpu_summary, resolve_precision

MODELS = [(f, n) for f in ("resnet", "transformer") for n in (20_000, 200_000)]
UNTIMED = 3
"""First steps of each left out of the median (allocations, oneDNN primitives)."""


def step_fn(family: str, size: int, depth: int, args: argparse.Namespace, bf16: bool):
    """A closure that runs one training step of a fresh objective."""
    torch.manual_seed(0)
    encoder = build(family, size, input_len=args.length, fs=100)
    objective = create_objective("ssl", encoder, fs=100, decoder_depth=depth)
    optimizer = torch.optim.AdamW(objective.parameters(), lr=1e-3)
    x = 0.5 * torch.randn(args.batch, 12, args.length)
    generator = torch.Generator().manual_seed(1)

    def step() -> None:
        with torch.autocast("cpu", torch.bfloat16, enabled=bf16):
            loss = objective.loss(x, None, generator=generator)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    return step


def decoder_flops_share(family: str, size: int, depth: int, length: int) -> float:
    """Training FLOPs the decoder adds, over those of the objective with the linear head."""
    counts = []
    with torch.device("meta"):
        encoder = build(family, size, input_len=length, fs=100)
        for d in (0, depth):
            objective = create_objective("ssl", encoder, fs=100, decoder_depth=d)
            with FlopCounterMode(display=False) as counter:
                objective.reconstruct(torch.zeros(2, 12, length)).sum().backward()
            counts.append(counter.get_total_flops())
    return counts[1] / counts[0] - 1


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--length", type=int, default=500)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=30)
    parser.add_argument("--depth", type=int, default=1)
    args = parser.parse_args()
    if args.repeats <= UNTIMED:
        parser.error(f"--repeats must exceed the {UNTIMED} untimed first steps")
    torch.set_num_threads(args.threads)
    precision = resolve_precision("auto", torch.device("cpu"))
    print(f"CPU: {cpu_summary()}; {args.threads} thread(s); precision {precision}")
    print(f"one step of {args.batch} x 12 x {args.length}; decoder {args.depth} block(s)")
    for family, size in MODELS:
        steps = {d: step_fn(family, size, d, args, precision == "bf16") for d in (0, args.depth)}
        times: dict[int, list[float]] = {d: [] for d in steps}
        for _ in range(args.repeats):
            for depth, step in steps.items():
                start = time.perf_counter()
                step()
                times[depth].append(time.perf_counter() - start)
        head, decoder = (statistics.median(times[d][UNTIMED:]) * 1e3 for d in (0, args.depth))
        share = decoder_flops_share(family, size, args.depth, args.length)
        print(
            f"{family} {size // 1000}K: linear head {head:.1f} ms | decoder {decoder:.1f} ms | "
            f"ratio {decoder / head:.2f}x | FLOPs {share:+.0%}"
        )


if __name__ == "__main__":
    main()
