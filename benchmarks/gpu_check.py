"""What a GPU gives ecgscale, measured against baselines of the same run (``gpu_check.sh``).

    benchmarks/gpu_check.sh [--dry] [--out DIR] [--peak-tflops X] [--seconds S]

Four measurements, each printed with the baseline it is set against:

1. **Baseline**: the GPU's bf16 ``torch.mm`` rate (8192 x 8192), the practical ceiling, and its
   nominal dense bf16 peak where the device is known (:data:`PEAKS`, or ``--peak-tflops``).
2. **MFU** of SL training steps at the 5M, 50M and 200M rungs of both families, 12 x 4096 @ 400 Hz,
   batch 256, bf16 autocast, fused AdamW, batches already on the GPU: samples/s, ms per step,
   achieved TFLOP/s (the encoder's training FLOPs per sample, as ``ecgscale study plan`` counts
   them), MFU against the nominal peak and against the measured ``torch.mm`` rate, peak memory.
   A rung that runs out of memory is retried at half the batch.
3. **Evaluation on the device vs the CPU**: ``extract_features`` (what every run's evaluation
   calls) of the 5M ResNet on 4,096 records in host memory, on the GPU in bf16 (batch chosen
   from its memory) and fp32, against the CPU in fp32 with all its cores (for ``--seconds``):
   records/s, their ratio, and how far the GPU's bf16 features are from the CPU's.
4. **Packing** of the 500K ResNet rung: ``runs_per_gpu: auto``'s 4 training processes on the
   GPU, one stepping alone (the others waiting), then all 4 side by side, each on batches
   copied from pinned host memory for ``--seconds``: samples/s alone and in all, their ratio
   (what packing gains), and each process's peak memory.

``--dry`` (or ``GPU_CHECK_DRY=1``) runs the same code on the CPU at tiny sizes (20K-100K rungs,
12 x 256 @ 100 Hz, batch 8, two packed processes), in seconds: what CI checks. Without ``--dry``
and without a CUDA GPU it stops with one line. Figures go to ``DIR/gpu_check.json`` and the
printed text to ``DIR/gpu_check.txt`` when ``--out`` (default ``$OUT``) is given.
"""

from __future__ import annotations

import os
import sys


def dry_mode(argv: list[str]) -> bool:
    """Whether ``--dry`` or ``GPU_CHECK_DRY`` asks for the dry mode."""
    return "--dry" in argv or os.environ.get("GPU_CHECK_DRY", "") not in ("", "0")


if dry_mode(sys.argv):  # before torch starts OpenMP: busy-waiting threads on shared CI cores
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # made tiny steps 100x slower

import argparse  # noqa: E402
import json  # noqa: E402
import multiprocessing as mp  # noqa: E402
import platform  # noqa: E402
import time  # noqa: E402
from dataclasses import asdict, dataclass  # noqa: E402
from pathlib import Path  # noqa: E402
from queue import Empty  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402

from ecgscale.evaluate.inference import batch_size_for  # noqa: E402
from ecgscale.evaluate.probe import extract_features  # noqa: E402
from ecgscale.models import build, measure  # noqa: E402
from ecgscale.objectives import create_objective  # noqa: E402
from ecgscale.study.packing import AUTO_RUNS_PER_GPU  # noqa: E402
from ecgscale.train.hardware import cpu_summary  # noqa: E402

PEAKS = {"H200": 989.0, "H100 SXM": 989.0, "H100 80GB HBM3": 989.0, "H100": 756.0, "A100": 312.0}
"""Nominal dense bf16 TFLOP/s by a substring of ``torch.cuda.get_device_name()`` (first
match; the H100 without SXM/HBM3 in its name is taken as the PCIe card)."""


@dataclass(frozen=True)
class Sizes:
    """What one mode measures."""

    device: str
    input_len: int
    fs: float
    batch: int
    rungs: tuple[int, ...]
    warmup: int
    steps: int
    eval_rung: int
    eval_records: int
    pack_rung: int
    pack_runs: int
    mm_size: int


def pack_runs(target: int) -> int:
    """``runs_per_gpu: auto``'s runs per GPU of a rung (ecgscale.study.packing)."""
    return next((k for size, k in AUTO_RUNS_PER_GPU if target <= size), 1)


FULL = Sizes(
    device="cuda",
    input_len=4096,
    fs=400.0,
    batch=256,
    rungs=(5_000_000, 50_000_000, 200_000_000),
    warmup=3,
    steps=10,
    eval_rung=5_000_000,
    eval_records=4096,
    pack_rung=500_000,
    pack_runs=pack_runs(500_000),
    mm_size=8192,
)
DRY = Sizes(
    device="cpu",
    input_len=256,
    fs=100.0,
    batch=8,
    rungs=(20_000, 50_000, 100_000),
    warmup=1,
    steps=2,
    eval_rung=20_000,
    eval_records=64,
    pack_rung=20_000,
    pack_runs=2,
    mm_size=256,
)


class Report:
    """Printed lines and figures, written to ``out`` at the end (if given)."""

    def __init__(self, out: Path | None) -> None:
        self.out, self.lines, self.figures = out, [], {}

    def say(self, line: str = "") -> None:
        print(line, flush=True)
        self.lines.append(line)

    def write(self) -> None:
        if self.out is None:
            return
        self.out.mkdir(parents=True, exist_ok=True)
        (self.out / "gpu_check.json").write_text(json.dumps(self.figures, indent=1) + "\n")
        (self.out / "gpu_check.txt").write_text("\n".join(self.lines) + "\n")


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def mm_rate(sizes: Sizes, device: torch.device, seconds: float = 1.0) -> float:
    """TFLOP/s of ``torch.mm`` on ``device`` (bf16 on a GPU, fp32 on a CPU)."""
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    n = sizes.mm_size
    a, b = (torch.randn(n, n, device=device, dtype=dtype) for _ in range(2))
    torch.mm(a, b)
    synchronize(device)
    count, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        for _ in range(10):
            torch.mm(a, b)
        synchronize(device)
        count += 10
    return count * 2 * n**3 / (time.perf_counter() - start) / 1e12


def nominal_peak(name: str, given: float | None) -> float | None:
    """The device's nominal dense bf16 TFLOP/s: given, else :data:`PEAKS` by name."""
    if given is not None:
        return given
    return next((peak for key, peak in PEAKS.items() if key in name), None)


class Trainer:
    """SL training steps of one rung as ``pretrain`` takes them (bf16 autocast on a GPU,
    gradient clipping, fused AdamW), on batches handed to :meth:`step`."""

    def __init__(self, family: str, target: int, sizes: Sizes, device: torch.device) -> None:
        torch.manual_seed(0)
        encoder = build(family, target, input_len=sizes.input_len, fs=sizes.fs)
        self.flops_per_sample = measure(encoder, sizes.input_len).flops_per_sample
        self.objective = create_objective("sl", encoder, fs=sizes.fs).to(device)
        self.optimizer = torch.optim.AdamW(self.objective.parameters(), lr=1e-4, fused=True)
        self.device = device

    def step(self, x: torch.Tensor, y: torch.Tensor) -> None:
        with torch.autocast(self.device.type, torch.bfloat16, enabled=self.device.type == "cuda"):
            loss = self.objective.loss(x, y)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.objective.parameters(), 1.0)
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)


def peak_memory_gb(device: torch.device) -> float:
    return torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else 0.0


def mfu_section(report: Report, sizes: Sizes, device: torch.device, mm: float, peak: float | None):
    report.say("")
    report.say(f"MFU: SL training steps, 12 x {sizes.input_len} @ {sizes.fs:g} Hz, bf16 autocast")
    report.say(
        f"{'family':<12} {'rung':>5} {'batch':>5} {'samples/s':>10} {'ms/step':>8} "
        f"{'TFLOP/s':>8} {'MFU':>6} {'of mm':>6} {'peak GB':>8}"
    )
    rows = report.figures["mfu"] = []  # what was measured stays if a later rung fails
    for family in ("resnet", "transformer"):
        for target in sizes.rungs:
            row = _mfu_row(family, target, sizes, device, mm, peak)
            rows.append(row)
            mfu = f"{row['mfu']:.1%}" if row["mfu"] is not None else "-"
            report.say(
                f"{family:<12} {label(target):>5} {row['batch']:>5} {row['samples_per_s']:>10,.0f}"
                f" {row['ms_per_step']:>8.1f} {row['tflops']:>8.2f} {mfu:>6} "
                f"{row['of_mm']:>6.1%} {row['peak_memory_gb']:>8.1f}"
            )


def _mfu_row(family, target, sizes: Sizes, device, mm: float, peak: float | None) -> dict:
    """:func:`_time_steps` at the batch of ``sizes``, halved while it runs out of memory."""
    batch = sizes.batch
    while batch >= 32 or batch == sizes.batch:
        try:
            return _time_steps(family, target, sizes, device, mm, peak, batch)
        except torch.cuda.OutOfMemoryError:
            pass  # the failed step's tensors are freed with the exception, then the cache
        torch.cuda.empty_cache()
        batch //= 2
    raise RuntimeError(f"{family} {label(target)}: out of GPU memory even at batch {2 * batch}")


def _time_steps(family, target, sizes: Sizes, device, mm, peak, batch: int) -> dict:
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)
    trainer = Trainer(family, target, sizes, device)
    x = torch.randn(batch, 12, sizes.input_len, device=device)
    y = torch.randint(0, 2, (batch, 6), device=device).float()
    for _ in range(sizes.warmup):
        trainer.step(x, y)
    synchronize(device)
    start = time.perf_counter()
    for _ in range(sizes.steps):
        trainer.step(x, y)
    synchronize(device)
    elapsed = time.perf_counter() - start
    rate = sizes.steps * batch / elapsed
    tflops = rate * trainer.flops_per_sample / 1e12
    row = {
        "family": family,
        "rung": target,
        "batch": batch,
        "samples_per_s": rate,
        "ms_per_step": elapsed / sizes.steps * 1e3,
        "tflops": tflops,
        "mfu": tflops / peak if peak else None,
        "of_mm": tflops / mm,
        "peak_memory_gb": peak_memory_gb(device),
    }
    del trainer, x, y
    return row


def eval_section(report: Report, sizes: Sizes, device: torch.device, seconds: float) -> None:
    """Evaluation's forward passes on the device (bf16, fp32) against the CPU (fp32)."""
    torch.manual_seed(0)
    signals = np.random.default_rng(0).normal(0, 0.5, (sizes.eval_records, 12, sizes.input_len))
    signals = signals.astype(np.float32)

    def read(rows: np.ndarray) -> np.ndarray:
        return signals[rows]

    encoder = build("resnet", sizes.eval_rung, input_len=sizes.input_len, fs=sizes.fs)
    rows = np.arange(sizes.eval_records)
    on_device = {}
    encoder.to(device)
    for precision in ("bf16", "fp32"):
        extract_features(encoder, read, rows[:64], precision=precision)  # warm-up
        synchronize(device)
        start = time.perf_counter()
        features = extract_features(encoder, read, rows, precision=precision)
        on_device[precision] = (sizes.eval_records / (time.perf_counter() - start), features)
    batch = batch_size_for(encoder, sizes.input_len, "bf16")
    encoder.cpu()
    threads = torch.get_num_threads()
    torch.set_num_threads(os.cpu_count() or 1)
    done, start = 0, time.perf_counter()
    cpu_features = []
    while time.perf_counter() - start < seconds and done < sizes.eval_records:
        chunk = rows[done : done + 64]
        cpu_features.append(extract_features(encoder, read, chunk, precision="fp32"))
        done += len(chunk)
    cpu_rate = done / (time.perf_counter() - start)
    torch.set_num_threads(threads)
    cpu = np.concatenate(cpu_features)
    bf16 = on_device["bf16"][1][: len(cpu)]
    error = float(np.abs(bf16 - cpu).max() / np.abs(cpu).max())
    cosine = float(
        np.mean(
            np.sum(bf16 * cpu, 1) / (np.linalg.norm(bf16, axis=1) * np.linalg.norm(cpu, axis=1))
        )
    )
    figures = {
        "rung": sizes.eval_rung,
        "records": sizes.eval_records,
        "device_batch": batch,
        "device_bf16_records_per_s": on_device["bf16"][0],
        "device_fp32_records_per_s": on_device["fp32"][0],
        "cpu_fp32_records_per_s": cpu_rate,
        "cpu_threads": os.cpu_count(),
        "cpu_records": done,
        "ratio_bf16_to_cpu": on_device["bf16"][0] / cpu_rate,
        "ratio_fp32_to_cpu": on_device["fp32"][0] / cpu_rate,
        "bf16_vs_cpu_max_relative_error": error,
        "bf16_vs_cpu_mean_cosine": cosine,
    }
    report.figures["evaluation"] = figures
    report.say("")
    report.say(
        f"evaluation: extract_features of the ResNet {label(sizes.eval_rung)}, "
        f"{sizes.eval_records:,} records of 12 x {sizes.input_len}"
    )
    bf16 = "bf16" if device.type == "cuda" else "bf16 setting (fp32 on a CPU)"
    report.say(
        f"  {device.type} {bf16} (batch {batch}): {figures['device_bf16_records_per_s']:,.0f} "
        f"records/s = {figures['ratio_bf16_to_cpu']:,.1f}x the CPU"
    )
    report.say(
        f"  {device.type} fp32: {figures['device_fp32_records_per_s']:,.0f} records/s = "
        f"{figures['ratio_fp32_to_cpu']:,.1f}x the CPU"
    )
    report.say(
        f"  CPU fp32, {os.cpu_count()} threads: {cpu_rate:,.0f} records/s ({done} records; the "
        "baseline)"
    )
    report.say(
        f"  bf16 features vs the CPU's: max relative error {error:.2g}, mean cosine {cosine:.5f}"
    )


def pack_section(report: Report, sizes: Sizes, device: torch.device, seconds: float) -> None:
    """``pack_runs`` training processes of one rung: the first steps alone on the device for
    ``seconds`` (the others wait, holding their memory), then all of them side by side."""
    ctx = mp.get_context("spawn")
    runs = sizes.pack_runs
    barrier, queue = ctx.Barrier(runs), ctx.Queue()
    threads = max(1, (os.cpu_count() or 1) // (2 * runs))
    args = (sizes, device.type, seconds, threads, barrier, queue)
    procs = [ctx.Process(target=_packed_run, args=(rank, *args)) for rank in range(runs)]
    for proc in procs:
        proc.start()
    results = sorted(_collect(queue, procs))
    alone = results[0][1]
    packed = [r[2] for r in results]
    together = sum(r["samples_per_s"] for r in packed)
    gain = together / alone["samples_per_s"]
    report.figures["packing"] = {
        "rung": sizes.pack_rung,
        "batch": sizes.batch,
        "seconds": seconds,
        "threads_per_process": threads,
        "alone": alone,
        "packed": packed,
        "packed_samples_per_s": together,
        "gain": gain,
    }
    report.say("")
    report.say(
        f"packing: ResNet {label(sizes.pack_rung)} training (batch {sizes.batch}, batches from "
        f"pinned host memory), {seconds:g} s per phase, {threads} thread(s) per process"
    )
    report.say(
        f"  alone: {alone['samples_per_s']:,.0f} samples/s ({alone['ms_per_step']:.1f} ms a "
        f"step, {alone['peak_memory_gb']:.2f} GB; the baseline)"
    )
    per = ", ".join(f"{r['samples_per_s']:,.0f}" for r in packed)
    report.say(
        f"  {runs} side by side: {together:,.0f} samples/s in all ({per}) = {gain:.2f}x alone; "
        f"peak {max(r['peak_memory_gb'] for r in packed):.2f} GB each"
    )


def _collect(queue, procs: list) -> list:
    """One result from each of ``procs``; a RuntimeError (the others ended) if one dies first."""
    results = []
    while len(results) < len(procs):
        try:
            results.append(queue.get(timeout=5))
        except Empty:
            dead = [p.exitcode for p in procs if p.exitcode not in (None, 0)]
            if dead:
                for proc in procs:
                    proc.terminate()
                raise RuntimeError(
                    f"a packed training process died (exit code {dead[0]})"
                ) from None
    for proc in procs:
        proc.join()
    return results


def _packed_run(rank: int, sizes: Sizes, device_type: str, seconds: float, threads: int, *sync):
    """Process ``rank`` of :func:`pack_section`: warm up; step alone (rank 0) while the others
    wait; then step with all of them; each phase for ``seconds`` on batches copied from pinned
    host memory."""
    barrier, queue = sync
    torch.set_num_threads(threads)
    device = torch.device(device_type)
    trainer = Trainer("resnet", sizes.pack_rung, sizes, device)
    host = torch.randn(4 * sizes.batch, 12, sizes.input_len)
    host = host.pin_memory() if device.type == "cuda" else host
    y = torch.randint(0, 2, (sizes.batch, 6), device=device).float()

    def batch(i: int) -> torch.Tensor:
        start = (i % 4) * sizes.batch
        return host[start : start + sizes.batch].to(device, non_blocking=True)

    def run() -> dict:
        steps, start = 0, time.perf_counter()
        while time.perf_counter() - start < seconds:
            trainer.step(batch(steps), y)
            steps += 1
        synchronize(device)
        elapsed = time.perf_counter() - start
        return {
            "samples_per_s": steps * sizes.batch / elapsed,
            "ms_per_step": elapsed / steps * 1e3,
            "peak_memory_gb": peak_memory_gb(device),
        }

    for i in range(sizes.warmup):
        trainer.step(batch(i), y)
    synchronize(device)
    barrier.wait(timeout=600)
    alone = run() if rank == 0 else None
    barrier.wait(timeout=600)
    queue.put((rank, alone, run()))


def label(n: float) -> str:
    """5000000 -> 5M."""
    for unit, size in (("M", 1e6), ("K", 1e3)):
        if n >= size:
            return f"{n / size:g}{unit}"
    return f"{n:g}"


def header(report: Report, sizes: Sizes, device: torch.device, dry: bool) -> str:
    """Print what this runs on; returns the device's name."""
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"
    memory = (
        f", {torch.cuda.get_device_properties(device).total_memory / 2**30:.0f} GiB"
        if device.type == "cuda"
        else ""
    )
    report.say(f"gpu_check{' (dry: tiny sizes on the CPU)' if dry else ''}")
    report.say(f"device: {name}{memory}; torch {torch.__version__}, CUDA {torch.version.cuda}")
    report.say(f"CPU: {cpu_summary()}; Python {platform.python_version()}")
    report.figures["device"] = {
        "name": name,
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "cpu": cpu_summary(),
        "dry": dry,
        "sizes": asdict(sizes),
    }
    return name


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--dry", action="store_true", help="tiny sizes on the CPU, in seconds")
    parser.add_argument("--out", type=Path, default=os.environ.get("OUT") or None)
    parser.add_argument("--peak-tflops", type=float, help="nominal dense bf16 peak of the GPU")
    parser.add_argument("--seconds", type=float, help="per packing phase and CPU evaluation")
    args = parser.parse_args(argv)
    dry = args.dry or dry_mode([])
    sizes = DRY if dry else FULL
    seconds = args.seconds or (1.0 if dry else 20.0)
    if sizes.device == "cuda" and not torch.cuda.is_available():
        print("gpu_check: no CUDA GPU here; run it with --dry on a CPU", file=sys.stderr)
        return 2
    device = torch.device(sizes.device)
    report = Report(args.out)
    started = time.perf_counter()
    name = header(report, sizes, device, dry)
    peak = nominal_peak(name, args.peak_tflops)
    mm = mm_rate(sizes, device)
    report.figures["baseline"] = {"mm_tflops": mm, "nominal_peak_tflops": peak}
    kind = "bf16" if device.type == "cuda" else "fp32"
    nominal = f"; nominal peak {peak:g} TFLOP/s" if peak else "; nominal peak unknown"
    report.say(f"baseline: {kind} torch.mm ({sizes.mm_size}^2) {mm:.3g} TFLOP/s{nominal}")
    failed = []
    for section, run in (
        ("mfu", lambda: mfu_section(report, sizes, device, mm, peak)),
        ("evaluation", lambda: eval_section(report, sizes, device, seconds)),
        ("packing", lambda: pack_section(report, sizes, device, seconds)),
    ):
        try:
            run()
        except Exception as err:  # unattended: the other sections still run and are written
            failed.append(section)
            report.figures.setdefault("errors", {})[section] = f"{type(err).__name__}: {err}"
            report.say(f"{section}: FAILED: {type(err).__name__}: {err}")
    report.figures["wall_s"] = time.perf_counter() - started
    report.say("")
    outcome = f"with {', '.join(failed)} failed" if failed else "done"
    report.say(f"gpu_check {outcome} in {report.figures['wall_s']:.0f} s")
    report.write()
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
