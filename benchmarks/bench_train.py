"""Training throughput of the project's models against plain eager fp32 PyTorch, and the loss
both reach, on this CPU.

    .venv/bin/python benchmarks/bench_train.py [--families resnet transformer]
        [--rungs 50000 500000 5000000] [--steps N] [--input-len 4096] [--fs 400]
        [--batch 64] [--threads 2] [--precision auto|fp32|bf16] [--compile]
        [--peak-gflops 234]

For each family and rung, two implementations of the same architecture train side by side on
the same synthetic batches (``ecgscale.data.synthetic.generate``, site "code", labels
included; ``--input-len`` samples at ``--fs`` Hz, default 12 x 4096 at 400 Hz, batch 64) from
the same weights:

- *plain*: the ladder's shape (:func:`ecgscale.models.ladder.shape_for`) written the
  straightforward way in this file, eager fp32: ``nn.Conv1d`` / ``nn.BatchNorm1d`` / ``nn.ReLU``
  / ``nn.MaxPool1d`` residual blocks, or ``nn.TransformerEncoderLayer`` (pre-LN, GELU) blocks
  over the ladder's token embedding (its convolutional stem, or a linear patch embedding);
  a linear head on the mean token (the input zero-padded to whole tokens, as the project's);
  ``torch.optim.AdamW`` with its defaults (single-tensor on the CPU) and ``clip_grad_norm_``.
- *project*: :func:`ecgscale.models.ladder.build` + ``create_objective("sl", ...)``, stepped
  as :func:`ecgscale.train.loop.pretrain` steps (:func:`project_step`: autocast to bf16 when
  ``TrainSpec.precision`` is "bf16", ``torch.compile`` when ``TrainSpec.compile``, gradient
  clipping, fused AdamW with the loop's betas). The loop's data loader, evaluations and
  checkpoints are left out: only the step is timed.

The plain model loads the project model's initial weights (the parameters map one to one), and
both use ``TrainSpec``'s learning rate, weight decay and clipping with the project's warm-up +
cosine schedule over the ``--steps`` steps, so their losses differ only by floating-point
rounding (and bf16, when on). The two steps alternate (plain, project, plain, ...), so the
machine's load, which varies a lot on shared machines, weighs on both alike: each model's
samples/s is ``batch / median step time``, the first two steps of each left out, and the
speed-up is the median over steps of the ratio of the two step times.

Printed per model: samples/s of each, the speed-up (goal: >= 1.8x at the 500K and 5M rungs),
the final loss of each, i.e. the mean training loss of the last quarter of the steps (at least
two; the same batches for both), and their relative difference (goal: within 2%), the achieved
GFLOP/s (training FLOPs per sample from :func:`ecgscale.models.ladder.measure`,
forward + backward, times samples/s) and its fraction of the CPU's peak: ``--peak-gflops`` is
the fp32 peak of ``--threads`` cores (default: 117 GFLOP/s per core, the 2-core Zen 4 figure
of 234 in ``shared/MEASURED.md``; check it against the CPU printed in the header), and a bf16
run is set against twice that (AMX units do far more). A matrix product's GFLOP/s in the same
process is printed in the header as the practical fp32 ceiling. Steps per model: ``--steps``,
else 30, 20 and 8 for the 50K, 500K and 5M rungs (20 for others): a full run took 5 minutes on
the 2-core AVX2 machine, in fp32.

``--precision auto`` (the default) trains the project in bf16 where oneDNN has native bf16 on
this CPU (AVX-512 BF16 or AMX) and in fp32 elsewhere: without it bf16 runs emulated, hundreds of
times slower. ``OMP_WAIT_POLICY`` defaults to PASSIVE here (set it to override): with busy-
waiting OpenMP threads, a core shared with other processes made two-thread steps several times
slower than one-thread steps in our measurements, for both implementations.
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before torch starts OpenMP

import argparse
import math
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ecgscale.data.schema import LABELS
from ecgscale.data.synthetic import generate
from ecgscale.models.ladder import build, measure, shape_for
from ecgscale.objectives import Objective, create_objective
from ecgscale.spec import TrainSpec
from ecgscale.train.hardware import cpu_summary, native_bf16
from ecgscale.train.schedule import warmup_cosine

BETAS = (0.9, 0.95)
"""AdamW betas of ``ecgscale.train.loop.pretrain``."""

DEFAULT_STEPS = {50_000: 30, 500_000: 20, 5_000_000: 8}
"""Steps per rung when ``--steps`` is not given (a full run: 3.5-5 minutes on 2 AVX2 cores)."""

WARMUP_STEPS = 2
"""Steps of each implementation left out of the timings (allocations, oneDNN primitives)."""

GOAL_SPEEDUP, GOAL_LOSS = 1.8, 0.02
"""Acceptance: speed-up at the 500K and 5M rungs, and relative difference of the losses."""


# --- plain implementations ----------------------------------------------------------------------


class PlainResBlock(nn.Module):
    """Pre-activation residual block, written the usual way."""

    def __init__(self, c_in: int, c_out: int, kernel_size: int, stride: int):
        super().__init__()
        pad = (kernel_size - 1) // 2
        self.bn1 = nn.BatchNorm1d(c_in)
        self.conv1 = nn.Conv1d(c_in, c_out, kernel_size, padding=pad, bias=False)
        self.bn2 = nn.BatchNorm1d(c_out)
        self.conv2 = nn.Conv1d(c_out, c_out, kernel_size, stride=stride, padding=pad, bias=False)
        self.relu = nn.ReLU()
        skip: list[nn.Module] = []
        if stride > 1:
            skip.append(nn.MaxPool1d(stride, stride))
        if c_in != c_out:
            skip.append(nn.Conv1d(c_in, c_out, 1, bias=False))
        self.skip = nn.Sequential(*skip)

    def forward(self, x: Tensor) -> Tensor:
        h = self.conv1(self.relu(self.bn1(x)))
        h = self.conv2(self.relu(self.bn2(h)))
        return h + self.skip(x)


class PlainResNet(nn.Module):
    """The ladder's ResNet shape (no dropout: the ladder's models have none) + a linear head."""

    def __init__(
        self,
        stem_width: int,
        widths: list[int],
        blocks: int,
        downsample: list[int],
        kernel_size: int,
        n_labels: int,
    ):
        super().__init__()
        self.token_span = math.prod(downsample)
        self.stem = nn.Conv1d(12, stem_width, kernel_size, padding=kernel_size // 2, bias=False)
        layers: list[nn.Module] = []
        c_in = stem_width
        for c_out, stride in zip(widths, downsample, strict=True):
            layers.append(PlainResBlock(c_in, c_out, kernel_size, stride))
            layers += [PlainResBlock(c_out, c_out, kernel_size, 1) for _ in range(blocks - 1)]
            c_in = c_out
        self.blocks = nn.Sequential(*layers)
        self.norm = nn.BatchNorm1d(c_in)
        self.head = nn.Linear(c_in, n_labels)

    def forward(self, x: Tensor) -> Tensor:
        x = F.pad(x, (0, -x.shape[-1] % self.token_span))  # as the project pads: to whole tokens
        h = torch.relu(self.norm(self.blocks(self.stem(x))))  # (B, D, L)
        return self.head(h.mean(dim=2))

    def load_project(self, objective: Objective) -> None:
        """Copy the weights of the project's objective: same names, same shapes."""
        self.load_state_dict(
            {k.removeprefix("encoder."): v for k, v in objective.state_dict().items()}
        )


TRANSFORMER_NAMES = {
    "ln1": "norm1",
    "attn.qkv": "self_attn.in_proj",
    "attn.proj": "self_attn.out_proj",
    "ln2": "norm2",
    "mlp.fc": "linear1",
    "mlp.proj": "linear2",
}
"""Project block module -> ``nn.TransformerEncoderLayer`` module."""


class PlainTransformer(nn.Module):
    """The ladder's Transformer shape with ``nn.TransformerEncoderLayer`` blocks + a linear head:
    a linear patch embedding, or the ladder's convolutional stem (``stem`` channels, GELU) and a
    strided convolution whose kernel reads ``embed_kernel`` samples per token."""

    def __init__(
        self,
        dim: int,
        depth: int,
        heads: int,
        patch: int,
        n_labels: int,
        stem: int = 0,
        stem_kernel: int = 7,
        stem_stride: int = 1,
        embed_kernel: int | None = None,
    ):
        super().__init__()
        self.patch = patch
        kernel, step = embed_kernel or patch, stem_stride if stem else 1
        if stem or kernel != patch:
            layers: list[nn.Module] = []
            if stem:
                layers += [nn.Conv1d(12, stem, stem_kernel, step, stem_kernel // 2), nn.GELU()]
            pad = (kernel - patch) // 2 // step
            layers.append(nn.Conv1d(stem or 12, dim, kernel // step, patch // step, pad))
            self.embed: nn.Module = nn.Sequential(*layers)
        else:
            self.embed = nn.Linear(12 * patch, dim)
        layer = nn.TransformerEncoderLayer(
            dim, heads, 4 * dim, dropout=0.0, activation="gelu", batch_first=True, norm_first=True
        )
        self.blocks = nn.TransformerEncoder(layer, depth, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, n_labels)

    def forward(self, x: Tensor) -> Tensor:
        B, C, T = x.shape
        x = F.pad(x, (0, -T % self.patch))
        L = x.shape[-1] // self.patch
        if isinstance(self.embed, nn.Linear):
            h = self.embed(x.reshape(B, C, L, self.patch).transpose(1, 2).reshape(B, L, -1))
        else:
            h = self.embed(x).transpose(1, 2)
        dim = h.shape[-1]
        half = (dim + 1) // 2
        freqs = 10000.0 ** (-torch.arange(half, dtype=torch.float32, device=x.device) / half)
        angles = torch.arange(L, dtype=torch.float32, device=x.device)[:, None] * freqs
        h = h + 0.1 * torch.cat([angles.sin(), angles.cos()], dim=1)[:, :dim]
        return self.head(self.norm(self.blocks(h)).mean(dim=1))

    def load_project(self, objective: Objective) -> None:
        """Copy the weights of the project's objective, renamed (the fused QKV projection is
        ``in_proj``: queries, keys, values, each head after head, in both)."""
        state = {}
        for key, value in objective.state_dict().items():
            key = key.removeprefix("encoder.")
            if key.startswith("blocks."):
                _, i, rest = key.split(".", 2)
                module, leaf = rest.rsplit(".", 1)
                sep = "_" if module == "attn.qkv" else "."
                key = f"blocks.layers.{i}.{TRANSFORMER_NAMES[module]}{sep}{leaf}"
            state[key] = value
        self.load_state_dict(state)


def plain_model(
    family: str, shape: dict[str, Any], n_labels: int
) -> PlainResNet | PlainTransformer:
    """The plain implementation of the ladder's ``shape``."""
    if family == "resnet":
        return PlainResNet(**shape, n_labels=n_labels)
    return PlainTransformer(**shape, n_labels=n_labels)


# --- steps ---------------------------------------------------------------------------------------

Step = Callable[[Tensor, Tensor], float]


def plain_step(model: nn.Module, cfg: TrainSpec, schedule: Callable[[int], float]) -> Step:
    """One training step of the plain model: eager fp32, default AdamW, gradient clipping."""
    opt = torch.optim.AdamW(
        model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay, betas=BETAS
    )
    sched = torch.optim.lr_scheduler.LambdaLR(opt, schedule)

    def step(x: Tensor, y: Tensor) -> float:
        loss = F.binary_cross_entropy_with_logits(model(x), y)
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
        opt.step()
        sched.step()
        return float(loss.detach())

    return step


def project_step(objective: Objective, cfg: TrainSpec, schedule: Callable[[int], float]) -> Step:
    """One training step as ``ecgscale.train.loop.pretrain`` takes it: ``TrainSpec.precision``
    (bf16 autocast), ``TrainSpec.compile``, clipping, fused AdamW, set-to-None gradients."""
    opt = torch.optim.AdamW(
        objective.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay, betas=BETAS, fused=True
    )
    sched = torch.optim.lr_scheduler.LambdaLR(opt, schedule)
    forward = torch.compile(objective) if cfg.compile else objective

    def step(x: Tensor, y: Tensor) -> float:
        with torch.autocast("cpu", torch.bfloat16, enabled=cfg.precision == "bf16"):
            loss = forward(x, y)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(objective.parameters(), cfg.grad_clip)
        opt.step()
        sched.step()
        opt.zero_grad(set_to_none=True)
        return float(loss.detach())

    return step


# --- measurement ---------------------------------------------------------------------------------


@dataclass
class Result:
    family: str
    rung: int
    n_params: int
    flops_per_sample: int
    steps: int
    plain_s: list[float]
    project_s: list[float]
    plain_losses: list[float]
    project_losses: list[float]

    def samples_per_s(self, times: list[float], batch: int) -> float:
        return batch / statistics.median(times[WARMUP_STEPS:])

    @staticmethod
    def final(losses: list[float]) -> float:
        """Mean training loss of the last quarter of the steps (at least two)."""
        return statistics.mean(losses[-max(2, len(losses) // 4) :])

    def speedup(self) -> float:
        pairs = zip(self.plain_s[WARMUP_STEPS:], self.project_s[WARMUP_STEPS:], strict=True)
        return statistics.median(a / b for a, b in pairs)


def compare(
    family: str,
    rung: int,
    batches: list[tuple[Tensor, Tensor]],
    *,
    steps: int,
    fs: float,
    cfg: TrainSpec,
    seed: int,
) -> Result:
    """Train the plain and the project's model from the same weights on the same batches,
    alternating their steps; time each step."""
    input_len = batches[0][0].shape[-1]
    torch.manual_seed(seed)
    objective = create_objective("sl", build(family, rung, input_len=input_len, fs=fs), fs=fs)
    plain = plain_model(family, shape_for(family, rung, input_len=input_len, fs=fs), len(LABELS))
    plain.load_project(objective)
    stats = measure(objective.encoder, input_len)

    def schedule(s: int) -> float:
        return warmup_cosine(s, warmup=steps // 4, total=steps, min_ratio=cfg.min_lr_ratio)

    runs = {"plain": plain_step(plain.train(), cfg, schedule)}
    runs["project"] = project_step(objective.train(), cfg, schedule)
    times: dict[str, list[float]] = {name: [] for name in runs}
    losses: dict[str, list[float]] = {name: [] for name in runs}
    for i in range(steps):
        x, y = batches[i % len(batches)]
        for name, step in runs.items():
            t0 = time.perf_counter()
            losses[name].append(step(x, y))
            times[name].append(time.perf_counter() - t0)
    return Result(
        family,
        rung,
        stats.n_params,
        stats.flops_per_sample,
        steps,
        times["plain"],
        times["project"],
        losses["plain"],
        losses["project"],
    )


def matmul_gflops(seconds: float = 1.0, n: int = 1024) -> float:
    """GFLOP/s of an fp32 ``n x n`` matrix product: the practical ceiling of this process."""
    a, b = torch.randn(n, n), torch.randn(n, n)
    a @ b
    count, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        a @ b
        count += 1
    return 2 * n**3 * count / (time.perf_counter() - t0) / 1e9


def synthetic_batches(
    n_batches: int, batch: int, input_len: int, fs: float, seed: int
) -> list[tuple[Tensor, Tensor]]:
    """``n_batches`` batches of synthetic CODE-like records and their six labels."""
    signals, meta = generate("code", n_batches * batch, fs=fs, n_samples=input_len, seed=seed)
    labels = meta[list(LABELS)].to_numpy(np.float32)
    return [
        (torch.from_numpy(signals[i : i + batch]), torch.from_numpy(labels[i : i + batch]))
        for i in range(0, n_batches * batch, batch)
    ]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument(
        "--families",
        nargs="+",
        default=["resnet", "transformer"],
        choices=["resnet", "transformer"],
    )
    ap.add_argument("--rungs", nargs="+", type=int, default=list(DEFAULT_STEPS))
    ap.add_argument("--steps", type=int, help="steps per model (default: 30 / 20 / 8 by rung)")
    ap.add_argument("--input-len", type=int, default=4096)
    ap.add_argument("--fs", type=float, default=400.0)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--precision", choices=["auto", "fp32", "bf16"], default="auto")
    ap.add_argument("--compile", action="store_true", help="TrainSpec.compile for the project")
    ap.add_argument(
        "--peak-gflops", type=float, help="fp32 peak of --threads cores (default: 117 per core)"
    )
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    if args.steps is not None and args.steps <= WARMUP_STEPS:
        ap.error(f"--steps must be more than {WARMUP_STEPS}")

    t_start = time.perf_counter()
    torch.set_num_threads(args.threads)
    precision = args.precision
    if precision == "auto":
        precision = "bf16" if native_bf16() else "fp32"
    cfg = TrainSpec(precision=precision, compile=args.compile)
    peak = args.peak_gflops or 117.0 * args.threads
    project_peak = peak * (2 if precision == "bf16" else 1)
    print(f"CPU: {cpu_summary()}")
    print(
        f"torch {torch.__version__}, {args.threads} threads, OMP_WAIT_POLICY="
        f"{os.environ['OMP_WAIT_POLICY']}, load average {os.getloadavg()[0]:.2f} at start"
    )
    print(
        f"project precision: {precision} (native bf16 on this CPU: {native_bf16()}), "
        f"compile: {args.compile}; fp32 peak assumed {peak:.0f} GFLOP/s"
        + (f", bf16 {project_peak:.0f}" if precision == "bf16" else "")
        + f"; fp32 matmul here: {matmul_gflops():.0f} GFLOP/s"
    )
    print(
        f"input 12 x {args.input_len} at {args.fs:g} Hz, batch {args.batch}, lr {cfg.lr}, "
        f"weight decay {cfg.weight_decay}, clip {cfg.grad_clip}; first {WARMUP_STEPS} steps untimed"
    )
    n_steps = {rung: args.steps or DEFAULT_STEPS.get(rung, 20) for rung in args.rungs}
    t0 = time.perf_counter()
    batches = synthetic_batches(8, args.batch, args.input_len, args.fs, args.seed)
    print(f"data: {len(batches)} batches generated in {time.perf_counter() - t0:.1f} s\n")

    header = (
        f"{'model':<20} {'params':>9} {'steps':>5} | {'samples/s plain':>15} {'project':>8} "
        f"{'speed-up':>8} | {'loss plain':>10} {'project':>8} {'diff':>7} | "
        f"{'GFLOP/s plain':>13} {'project':>8} | {'% peak plain':>12} {'project':>8} | goal"
    )
    print(header)
    print("-" * len(header))
    for family in args.families:
        for rung in args.rungs:
            r = compare(
                family, rung, batches, steps=n_steps[rung], fs=args.fs, cfg=cfg, seed=args.seed
            )
            sps_plain = r.samples_per_s(r.plain_s, args.batch)
            sps_project = r.samples_per_s(r.project_s, args.batch)
            gf_plain = r.flops_per_sample * sps_plain / 1e9
            gf_project = r.flops_per_sample * sps_project / 1e9
            plain_loss, project_loss = r.final(r.plain_losses), r.final(r.project_losses)
            diff = project_loss / plain_loss - 1
            speedup = r.speedup()
            if rung < 500_000:
                goal = "n/a"
            else:
                ok = speedup >= GOAL_SPEEDUP and abs(diff) <= GOAL_LOSS
                goal = "met" if ok else "NOT met"
            print(
                f"{family + ' ' + format(rung, ','):<20} {r.n_params:>9,} {r.steps:>5} | "
                f"{sps_plain:>15.1f} {sps_project:>8.1f} {speedup:>7.2f}x | "
                f"{plain_loss:>10.4f} {project_loss:>8.4f} {diff:>+7.2%} | "
                f"{gf_plain:>13.1f} {gf_project:>8.1f} | "
                f"{gf_plain / peak:>12.1%} {gf_project / project_peak:>8.1%} | {goal}",
                flush=True,
            )
    print(
        f"\nwall time {time.perf_counter() - t_start:.0f} s, "
        f"load average {os.getloadavg()[0]:.2f} at the end"
    )


if __name__ == "__main__":
    main()
