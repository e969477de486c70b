"""GPU-hours of a paper-like scaling grid, from the measured training FLOPs of every rung.

    .venv/bin/python benchmarks/gpu_hours.py [--epochs 10 | --samples N] [--mfu 0.3]
        [--tflops 989] [--records 2.3e6] [--fractions 0.01,0.03,0.1,0.3,1] [--seeds 1]
    .venv/bin/python benchmarks/gpu_hours.py --measure 5M,50M,200M [--batch 256]   # on a GPU

The grid: both families x both paradigms (SL, SSL) x the default ladder (20K-200M) x nested
data sizes (fractions of CODE's 2.3M records) x seeds. FLOPs per sample are counted with
FlopCounterMode on the meta device for the whole objective (encoder + the SL classification
head or the SSL reconstruction head; forward and the parameters' backward) at the paper's input,
12 leads x 4096 samples @ 400 Hz. A run sees ``epochs x D`` samples (or a fixed ``--samples``),
and takes ``samples x FLOPs / (peak x MFU)`` seconds on one GPU (default: H100 SXM, 989 TFLOP/s
dense bf16, MFU 0.3). Not counted: evaluation (probes, validation), elementwise ops and norms
(FlopCounterMode counts matmuls, convolutions and attention), input pipelines, restarts. Small
rungs cannot keep a GPU busy, so their real cost is set by data loading and kernel launches, not
FLOPs: read their hours as a lower bound (they are a negligible share of the total anyway).

``--measure RUNGS`` instead times SL training steps of those rungs on the CUDA device (bf16
autocast, fused AdamW, random data on the GPU, 3 warm-up and 10 timed steps) and prints the
achieved MFU (counted FLOPs per second / ``--tflops``), to choose ``--mfu`` from. Measured on
an H200 (989 TFLOP/s dense bf16, as the H100 SXM), torch 2.11, 12 x 4096 @ 400 Hz: the 200M
rungs reach 25% (ResNet) and 27% (Transformer) at batch 256; at batch 512 the 50M rungs 17%
and 19%, the 5M rungs 12% and 5%; at batch 256 the 500K rungs 2% and 0.3%.
"""

from __future__ import annotations

import argparse
import time

import torch
from torch.utils.flop_counter import FlopCounterMode

from ecgscale.models import ModelStats, build, measure
from ecgscale.models.ladder import DEFAULT_RUNGS, ladder_families
from ecgscale.objectives import create_objective

PARADIGMS = ("sl", "ssl")


def rung_flops(
    family: str, target: int, input_len: int, fs: float
) -> tuple[ModelStats, dict[str, int]]:
    """The encoder's measured stats, and each paradigm's training FLOPs per sample (+ head)."""
    with torch.device("meta"):
        encoder = build(family, target, input_len=input_len, fs=fs)
        objectives = {
            p: create_objective(p, encoder, fs=fs, mask_ratio=0.5, mask_patch_s=0.25)
            for p in PARADIGMS
        }
    x = torch.zeros(2, 12, input_len, device="meta")
    y = torch.zeros(2, 6, device="meta")
    flops = {}
    for paradigm, objective in objectives.items():
        with FlopCounterMode(display=False) as counter:
            torch.autograd.grad(objective.loss(x, y), list(objective.parameters()))
        flops[paradigm] = counter.get_total_flops() // 2
    return measure(encoder, input_len), flops


def measured_rate(family: str, target: int, input_len: int, fs: float, batch: int) -> float:
    """Samples/s of SL training steps on the CUDA device (bf16 autocast, fused AdamW)."""
    torch.manual_seed(0)
    with torch.device("cuda"):
        objective = create_objective("sl", build(family, target, input_len=input_len, fs=fs), fs=fs)
    optimizer = torch.optim.AdamW(objective.parameters(), fused=True)
    x = torch.randn(batch, 12, input_len, device="cuda")
    y = torch.randint(0, 2, (batch, 6), device="cuda").float()

    def step() -> None:
        with torch.autocast("cuda", dtype=torch.bfloat16):
            loss = objective.loss(x, y)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    for _ in range(3):
        step()
    torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(10):
        step()
    torch.cuda.synchronize()
    return 10 * batch / (time.perf_counter() - start)


def measure_mfu(rungs: list[int], batch: int, args: argparse.Namespace) -> None:
    """Print the achieved MFU of SL training of ``rungs`` of both families on this GPU."""
    print(f"{torch.cuda.get_device_name()}, batch {batch}, 12 x {args.input_len} @ {args.fs:g} Hz")
    print(f"{'family':<12} {'rung':>5} {'samples/s':>10} {'TFLOP/s':>8} {'MFU':>6}")
    for family in ladder_families():
        for target in rungs:
            _, flops = rung_flops(family, target, args.input_len, args.fs)
            rate = measured_rate(family, target, args.input_len, args.fs, batch)
            achieved = rate * flops["sl"] / 1e12
            print(
                f"{family:<12} {label(target):>5} {rate:>10,.0f} {achieved:>8.1f} "
                f"{achieved / args.tflops:>6.1%}"
            )


def label(n: float) -> str:
    """2300000 -> 2.3M."""
    for unit, size in (("G", 1e9), ("M", 1e6), ("K", 1e3)):
        if n >= size:
            return f"{n / size:.3g}{unit}"
    return f"{n:g}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    budget = parser.add_mutually_exclusive_group()
    budget.add_argument("--epochs", type=float, default=10, help="samples per run = epochs x D")
    budget.add_argument("--samples", type=float, help="a fixed number of samples per run")
    parser.add_argument("--records", type=float, default=2.3e6, help="records of the full set")
    parser.add_argument("--fractions", default="0.01,0.03,0.1,0.3,1", help="nested subsets")
    parser.add_argument("--seeds", type=int, default=1)
    parser.add_argument("--tflops", type=float, default=989, help="peak dense TFLOP/s per GPU")
    parser.add_argument("--mfu", type=float, default=0.3, help="model-FLOP utilisation")
    parser.add_argument("--input-len", type=int, default=4096)
    parser.add_argument("--fs", type=float, default=400)
    parser.add_argument("--measure", metavar="RUNGS", help="e.g. 5M,50M,200M: time them on a GPU")
    parser.add_argument("--batch", type=int, default=256, help="batch size of --measure")
    args = parser.parse_args()
    if args.measure:
        scale = {"K": 10**3, "M": 10**6}
        rungs = [
            round(float(r[:-1]) * scale[r[-1]] if r[-1] in scale else float(r))
            for r in args.measure.upper().split(",")
        ]
        measure_mfu(rungs, args.batch, args)
        return
    sizes = [round(float(f) * args.records) for f in args.fractions.split(",")]
    flop_rate = args.tflops * 1e12 * args.mfu

    def hours(flops: int, d: int) -> float:
        samples = args.samples if args.samples is not None else args.epochs * d
        return args.seeds * samples * flops / flop_rate / 3600

    budget_text = (
        f"{args.samples:,.0f} samples"
        if args.samples is not None
        else f"{args.epochs:g} epochs of D"
    )
    n_runs = len(ladder_families()) * len(PARADIGMS) * len(DEFAULT_RUNGS) * len(sizes) * args.seeds
    print(
        f"{n_runs} runs: {len(ladder_families())} families x {len(PARADIGMS)} paradigms x "
        f"{len(DEFAULT_RUNGS)} rungs x {len(sizes)} data sizes x {args.seeds} seed(s); input 12 x "
        f"{args.input_len} @ {args.fs:g} Hz; {budget_text} per run; {args.tflops:g} TFLOP/s "
        f"at MFU {args.mfu:g}"
    )
    header = f"{'rung':>5} {'params':>7} {'GF SL':>7} {'GF SSL':>7} {'head':>5} |"
    header += "".join(f" {'D=' + label(d):>8}" for d in sizes) + f" | {'GPU-h':>8}"
    totals = dict.fromkeys(PARADIGMS, 0.0)
    for family in ladder_families():
        print(f"\n{family}: GFLOP per sample (SSL: its head's share), GPU-hours SL + SSL")
        print(header)
        family_total = 0.0
        for target in DEFAULT_RUNGS:
            stats, flops = rung_flops(family, target, args.input_len, args.fs)
            row = [sum(hours(flops[p], d) for p in PARADIGMS) for d in sizes]
            for p in PARADIGMS:
                totals[p] += sum(hours(flops[p], d) for d in sizes)
            family_total += sum(row)
            head_share = 1 - stats.flops_per_sample / flops["ssl"]
            print(
                f"{label(target):>5} {label(stats.n_params):>7} {flops['sl'] / 1e9:>7.3g} "
                f"{flops['ssl'] / 1e9:>7.3g} {head_share:>5.0%} |"
                + "".join(f" {h:>8.3f}" for h in row)
                + f" | {sum(row):>8.3f}"
            )
        print(f"{family} total: {family_total:,.1f} GPU-hours")
    total = sum(totals.values())
    print(
        f"\ngrid total: {total:,.1f} GPU-hours (SL {totals['sl']:,.1f}, SSL {totals['ssl']:,.1f})"
        f" = {total / 24:,.1f} GPU-days"
    )


if __name__ == "__main__":
    main()
