"""Data-path figures: ingest throughput, ingest memory, random-batch reads, reads vs training.

    .venv/bin/python benchmarks/bench_data.py [--code15-records 20000] [--skip-code15]
                                              [--workdir DIR] [--keep]

What is measured and compared, all in one run (timings on shared machines vary; compare the
ratios, which are taken within the run):

1. Ingest throughput, records/s of wall clock with ``workers=2``, each ingest run as
   ``python -m ecgscale data ingest`` in a subprocess (its wall clock includes the
   interpreter's start; ingest's own ``wall_s`` from ``store.json`` is printed beside it):
   (a) the PTB-XL sample (``--ptbxl``, 500 Hz WFDB) into a new store of 400 Hz x 4096 samples,
   and again with ``workers=1`` for comparison (the workers' start-up, mostly importing scipy
   and pandas, weighs on a source this small); (b) a generated CODE-15% folder
   (``write_code15``: ``--code15-records`` records in 2 HDF5 parts, contiguous float32) into
   a new store of 400 Hz x 4096.
2. Peak memory of (1b): the RSS of the ingest process and all its descendants (the spawned
   workers and the resource tracker) is polled every ``--poll-ms``; printed are the peak of the
   summed RSS (goal: under 1 GiB; shared pages such as libraries count once per process, so
   the sum overstates), the peak RSS of the largest single process, and the peak of the summed
   PSS (shared pages split between the processes that map them: the tree's real share). The
   size of the HDF5 parts is printed beside it.
3. Random-batch reads: batches of 64 random rows of the PTB-XL store of (1a) by ``Store.read``
   (float32 (64, 12, 4096)), warm (the whole store is read once first), in records/s, against
   the baseline of reading the same records one by one with ``wfdb.rdsamp`` (their files warm
   in the page cache; rdsamp returns float64 at 500 Hz and does no resampling or padding, so
   the baseline does less work). Goal: >= 50x. With (1b) the same is timed on the CODE-15%
   store, for information (page cache as the ingest left it; no goal).
4. Reads vs training: samples/s of training steps (forward, backward, gradient clipping and
   AdamW, as ``ecgscale.train.loop`` does; batch 64 of 12 x 4096 from memory, 2 torch threads,
   warm-up steps excluded) of the ladder's smallest models, ``build("resnet", 20000)`` and
   ``build("transformer", 20000)`` at 4096 samples and 400 Hz, with the supervised objective;
   the ratio of (3)'s read records/s to them. Goal: >= 10x (data never starves training).

Everything is written under a fresh folder in ``--workdir`` (default: the system's temporary
folder), removed at the end unless ``--keep``. The CODE-15% part needs about 300 KB of free
disk per record (HDF5 float32 + float16 store); the script checks before writing.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import psutil
import torch
import wfdb

from ecgscale.data.fixtures import write_code15
from ecgscale.data.schema import LABELS, LEADS
from ecgscale.data.store import Store
from ecgscale.models.ladder import build
from ecgscale.objectives import create_objective
from ecgscale.train.hardware import cpu_summary

FS = 400.0
N_SAMPLES = 4096
BATCH = 64
WORKERS = 2
TORCH_THREADS = 2
GIB = 2**30
MEMORY_GOAL = 1 * GIB
READ_GOAL = 50.0
STARVE_GOAL = 10.0
PTBXL_DEFAULT = Path(__file__).resolve().parents[2] / "shared" / "data" / "ptbxl-sample"
OPTS = ("rate=500",)  # PTB-XL reader option: records500/
MARGIN_BYTES = 2 * GIB  # free disk left over after the CODE-15% files, at least


# --------------------------------------------------------------------------- printing


def _verdict(met: bool) -> str:
    return "PASS" if met else "MISS"


def _gib(n_bytes: float) -> str:
    return f"{n_bytes / GIB:.2f} GiB"


def _section(title: str) -> None:
    print(f"\n== {title}", flush=True)


def _line(label: str, value: str) -> None:
    print(f"  {label:<46} {value}", flush=True)


def _folder_bytes(folder: Path, pattern: str = "*") -> int:
    return sum(p.stat().st_size for p in folder.rglob(pattern) if p.is_file())


# --------------------------------------------------------------------------- 1. ingest


@dataclass
class TreeMemory:
    """Peaks of the memory of a process tree, sampled while it ran (bytes)."""

    rss_sum: int = 0
    rss_max_single: int = 0
    pss_sum: int = 0
    max_processes: int = 0
    samples: int = 0


def _tree(root: psutil.Process) -> list[psutil.Process]:
    try:
        return [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return []


def _sample_tree(root: psutil.Process, peaks: TreeMemory) -> None:
    """Add one sample of the tree's RSS and PSS to ``peaks`` (processes may vanish meanwhile)."""
    rss, pss = [], []
    for proc in _tree(root):
        try:
            full = proc.memory_full_info()
        except (psutil.NoSuchProcess, psutil.ZombieProcess, psutil.AccessDenied):
            continue
        rss.append(full.rss)
        pss.append(getattr(full, "pss", full.rss))
    if not rss:
        return
    peaks.rss_sum = max(peaks.rss_sum, sum(rss))
    peaks.rss_max_single = max(peaks.rss_max_single, max(rss))
    peaks.pss_sum = max(peaks.pss_sum, sum(pss))
    peaks.max_processes = max(peaks.max_processes, len(rss))
    peaks.samples += 1


def run_watched(command: list[str], poll_s: float, log: Path) -> tuple[float, TreeMemory]:
    """Run ``command``, sampling its process tree's memory every ``poll_s``; (wall s, peaks).

    Its output goes to ``log``; RuntimeError with the end of it if the command fails.
    """
    peaks = TreeMemory()
    with open(log, "w") as out:
        t0 = time.perf_counter()
        proc = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT)
        root = psutil.Process(proc.pid)
        while proc.poll() is None:
            _sample_tree(root, peaks)
            time.sleep(poll_s)
        wall = time.perf_counter() - t0
    if proc.returncode != 0:
        tail = log.read_text()[-4000:]
        raise RuntimeError(f"{' '.join(command)} exited {proc.returncode}:\n{tail}")
    return wall, peaks


def cli_ingest(
    kind: str,
    folder: Path,
    store: Path,
    *,
    workers: int,
    poll_s: float,
    options: tuple[str, ...] = (),
) -> tuple[float, TreeMemory]:
    """``python -m ecgscale data ingest KIND`` into a new 400 Hz x 4096 store, memory watched;
    (wall s of the subprocess, memory peaks). Its output goes to ``<store>.log``."""
    command = [sys.executable, "-m", "ecgscale", "data", "ingest", kind, str(folder)]
    command += ["--store", str(store), "--workers", str(workers), "--quiet"]
    command += ["--fs", f"{FS:g}", "--n-samples", str(N_SAMPLES)]
    for option in options:
        command += ["-o", option]
    return run_watched(command, poll_s, store.with_name(store.name + ".log"))


def generate_code15(folder: Path, n_records: int) -> tuple[float, int]:
    """Write a CODE-15% folder of ``n_records`` in 2 parts; (wall s, bytes of the parts)."""
    t0 = time.perf_counter()
    write_code15(folder, n_records, 2, seed=0, fs=FS, n_samples=N_SAMPLES)
    return time.perf_counter() - t0, _folder_bytes(folder, "exams_part*.hdf5")


def store_entry(store: Path, name: str) -> dict:
    """The source's entry in ``store.json``."""
    info = json.loads((store / "store.json").read_text())
    return next(s for s in info["sources"] if s["name"] == name)


# --------------------------------------------------------------------------- 3. reads


def random_batches(n: int, n_batches: int, seed: int = 0) -> list[np.ndarray]:
    """``n_batches`` batches of ``BATCH`` distinct random rows of ``range(n)``."""
    rng = np.random.default_rng(seed)
    return [rng.choice(n, min(BATCH, n), replace=False) for _ in range(n_batches)]


def store_reads_per_s(store: Store, batches: list[np.ndarray]) -> float:
    """Records/s of ``Store.read`` over the batches."""
    t0 = time.perf_counter()
    for rows in batches:
        store.read(rows)
    return sum(len(b) for b in batches) / (time.perf_counter() - t0)


def reads_by_threads(store: Store, batches: list[np.ndarray]) -> dict[int, float]:
    """Records/s of ``Store.read`` with 1 and with ``TORCH_THREADS`` torch threads (it converts
    float16 to float32 with torch); the setting is restored to ``TORCH_THREADS``."""
    rates = {}
    for threads in sorted({1, TORCH_THREADS}):
        torch.set_num_threads(threads)
        rates[threads] = store_reads_per_s(store, batches)
    torch.set_num_threads(TORCH_THREADS)
    return rates


def _threads(n: int) -> str:
    return f"{n} torch thread{'s' if n > 1 else ''}"


def warm_store(store: Store) -> None:
    """Read every record once (page cache and memory maps warm)."""
    for start in range(0, len(store), 1024):
        store.read(np.arange(start, min(start + 1024, len(store))))


def ptbxl_paths(folder: Path, store: Store, rows: np.ndarray) -> list[Path]:
    """The 500 Hz WFDB record paths (without suffix) of store rows of a PTB-XL source."""
    database = pd.read_csv(folder / "ptbxl_database.csv", index_col="ecg_id")
    ecg_ids = store.meta["ecg_id"].to_numpy()[rows]
    return [folder / database.at[int(e), "filename_hr"] for e in ecg_ids]


def rdsamp_reads_per_s(paths: list[Path]) -> float:
    """Records/s of ``wfdb.rdsamp``, one record at a time (files pre-read into the cache)."""
    for path in set(paths):
        for suffix in (".hea", ".dat"):
            path.with_suffix(suffix).read_bytes()
    t0 = time.perf_counter()
    for path in paths:
        wfdb.rdsamp(str(path))
    return len(paths) / (time.perf_counter() - t0)


# --------------------------------------------------------------------------- 4. training


def train_samples_per_s(
    family: str, warmup_steps: int, min_steps: int, min_seconds: float
) -> tuple[int, float, int]:
    """(parameters, samples/s, timed steps) of supervised training steps of the ladder's 20K
    model of ``family`` on batches of 64 x 12 x 4096 held in memory."""
    torch.manual_seed(0)
    objective = create_objective("sl", build(family, 20_000, input_len=N_SAMPLES, fs=FS), fs=FS)
    objective.train()
    n_params = sum(p.numel() for p in objective.encoder.parameters())
    opt = torch.optim.AdamW(objective.parameters(), lr=1e-3, weight_decay=0.01, betas=(0.9, 0.95))
    x = torch.randn(BATCH, len(LEADS), N_SAMPLES)
    y = (torch.rand(BATCH, len(LABELS)) < 0.1).float()

    def step() -> None:
        loss = objective.loss(x, y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(objective.parameters(), 1.0)
        opt.step()

    for _ in range(warmup_steps):
        step()
    steps, t0 = 0, time.perf_counter()
    while steps < min_steps or time.perf_counter() - t0 < min_seconds:
        step()
        steps += 1
    return n_params, steps * BATCH / (time.perf_counter() - t0), steps


# --------------------------------------------------------------------------- stages


def check_disk(workdir: Path, n_records: int) -> None:
    """Exit with a message unless the CODE-15% files fit with room to spare."""
    per_record = N_SAMPLES * len(LEADS) * (4 + 2)  # HDF5 float32 + store float16
    need = n_records * per_record + MARGIN_BYTES
    free = shutil.disk_usage(workdir).free
    if free < need:
        sys.exit(
            f"{workdir}: {_gib(free)} free, the CODE-15% part needs {_gib(need)} "
            "(with a 2 GiB margin); lower --code15-records or use --skip-code15"
        )
    _line("free disk / needed", f"{_gib(free)} / {_gib(need)}")


def _ingest_lines(store: Path, name: str, wall: float, workers: int) -> None:
    """Records, wall clock and throughput of a finished ingest."""
    entry = store_entry(store, name)
    n, own = entry["n_records"], entry["wall_s"]
    _line("records stored / quarantined", f"{n:,} / {entry['n_quarantined']}")
    _line("wall clock, subprocess / ingest's own wall_s", f"{wall:.1f} s / {own:.1f} s")
    _line(
        f"throughput (workers={workers}), subprocess / own",
        f"{n / wall:,.0f} / {n / own:,.0f} records/s",
    )


def stage_ptbxl_ingest(folder: Path, store: Path, poll_s: float) -> None:
    _section(f"1a. ingest PTB-XL sample (500 Hz WFDB) -> store {FS:g} Hz x {N_SAMPLES}")
    wall, _ = cli_ingest("ptbxl", folder, store, workers=WORKERS, poll_s=poll_s, options=OPTS)
    _ingest_lines(store, "ptbxl", wall, WORKERS)
    print("  for comparison, the same with workers=1 (no worker start-up):")
    one = store.with_name(store.name + "-1worker")
    wall, _ = cli_ingest("ptbxl", folder, one, workers=1, poll_s=poll_s, options=OPTS)
    _ingest_lines(one, "ptbxl", wall, 1)
    shutil.rmtree(one)


def stage_code15(folder: Path, store: Path, n_records: int, poll_s: float) -> None:
    _section(f"1b. ingest generated CODE-15% (2 HDF5 parts) -> store {FS:g} Hz x {N_SAMPLES}")
    check_disk(folder.parent, n_records)
    gen_s, part_bytes = generate_code15(folder, n_records)
    _line("generated (write_code15)", f"{n_records:,} records in {gen_s:.1f} s")
    wall, peaks = cli_ingest("code15", folder, store, workers=WORKERS, poll_s=poll_s)
    _ingest_lines(store, "code15", wall, WORKERS)
    _line("store size (float16 shards)", _gib(_folder_bytes(store, "*.npy")))

    _section("2. peak memory of the CODE-15% ingest (1b), process tree")
    _line("HDF5 parts on disk (the input)", _gib(part_bytes))
    _line(
        "sampling",
        f"{peaks.samples} samples every {1e3 * poll_s:.0f} ms, "
        f"up to {peaks.max_processes} processes",
    )
    met = peaks.rss_sum < MEMORY_GOAL
    _line(
        "peak of summed RSS (overstates: shared pages)",
        f"{_gib(peaks.rss_sum)}  goal < {_gib(MEMORY_GOAL)}  {_verdict(met)}",
    )
    _line("peak RSS of the largest single process", _gib(peaks.rss_max_single))
    _line("peak of summed PSS (shared pages split)", _gib(peaks.pss_sum))
    _line("input size / peak summed RSS", f"{part_bytes / max(peaks.rss_sum, 1):.1f}x")


def stage_reads(ptbxl: Path, store_dir: Path, n_batches: int, n_baseline: int) -> dict[int, float]:
    """Section 3 on the PTB-XL store; returns its warm random-batch records/s by torch threads."""
    store = Store(store_dir)
    warm_store(store)
    batches = random_batches(len(store), n_batches)
    ours = reads_by_threads(store, batches)
    rows = np.concatenate(batches)[:n_baseline]
    base = rdsamp_reads_per_s(ptbxl_paths(ptbxl, store, rows))
    print(
        f"  PTB-XL store: {len(store)} records, warm (all read once first), "
        f"{n_batches} batches of {BATCH}"
    )
    _line("wfdb.rdsamp, one by one (files cached)", f"{base:>9,.0f} records/s  ({len(rows)} reads)")
    for threads, rate in ours.items():
        ratio = rate / base
        _line(
            f"Store.read, {_threads(threads)}",
            f"{rate:>9,.0f} records/s  {ratio:>6,.1f}x baseline  goal >= {READ_GOAL:g}x  "
            f"{_verdict(ratio >= READ_GOAL)}",
        )
    return ours


def stage_code15_reads(store_dir: Path, n_batches: int) -> dict[int, float]:
    """Random batches from the CODE-15% store, page cache as the ingest left it; records/s by
    torch threads."""
    store = Store(store_dir)
    rates = reads_by_threads(store, random_batches(len(store), n_batches, seed=1))
    print(
        f"  extra, no goal: CODE-15% store, {len(store):,} records, page cache as the ingest "
        f"left it, {n_batches} batches"
    )
    for threads, rate in rates.items():
        _line(f"Store.read, {_threads(threads)}", f"{rate:>9,.0f} records/s")
    return rates


def stage_training(
    reads: dict[int, float], read_label: str, warmup: int, min_steps: int, min_seconds: float
) -> None:
    _section(
        f"4. reads vs training (batch {BATCH}, {len(LEADS)} x {N_SAMPLES}, "
        f"{_threads(TORCH_THREADS)}, supervised)"
    )
    _line(
        f"read rate compared ({read_label})",
        "; ".join(f"{_threads(t)} {r:,.0f} records/s" for t, r in reads.items()),
    )
    print(f"  verdict on reads with {_threads(TORCH_THREADS)}, as in the training process")
    for family in ("resnet", "transformer"):
        n_params, rate, steps = train_samples_per_s(family, warmup, min_steps, min_seconds)
        ratios = {t: r / rate for t, r in reads.items()}
        verdict = _verdict(ratios[TORCH_THREADS] >= STARVE_GOAL)
        others = ", ".join(
            f"{ratio:,.0f}x with {_threads(t)}" for t, ratio in ratios.items() if t != TORCH_THREADS
        )
        _line(
            f"{family} 20K ({n_params:,} params)",
            f"{rate:>7,.1f} samples/s ({steps} timed steps, {warmup} warm-up)",
        )
        _line(
            "  reads / training",
            f"{ratios[TORCH_THREADS]:>7,.1f}x  goal >= {STARVE_GOAL:g}x  {verdict}  ({others})",
        )


# --------------------------------------------------------------------------- main


def _parse() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--code15-records", type=int, default=20_000, help="generated records")
    parser.add_argument("--skip-code15", action="store_true", help="skip stages 1b and 2")
    parser.add_argument("--ptbxl", type=Path, default=PTBXL_DEFAULT, help="PTB-XL folder")
    parser.add_argument("--workdir", type=Path, help="folder for the work files (default: temp)")
    parser.add_argument("--keep", action="store_true", help="keep the work files")
    parser.add_argument("--batches", type=int, default=200, help="random batches timed")
    parser.add_argument("--baseline-reads", type=int, default=300, help="wfdb.rdsamp reads")
    parser.add_argument("--warmup-steps", type=int, default=2, help="untimed training steps")
    parser.add_argument("--train-steps", type=int, default=5, help="timed training steps, least")
    parser.add_argument("--train-seconds", type=float, default=5.0, help="timed training, least")
    parser.add_argument("--poll-ms", type=float, default=50.0, help="memory sampling period")
    return parser.parse_args()


def _timed(label: str, func: Callable[[], object]) -> object:
    t0 = time.perf_counter()
    result = func()
    print(f"  ({label}: {time.perf_counter() - t0:.1f} s)", flush=True)
    return result


def run_stages(args: argparse.Namespace, work: Path) -> None:
    """Every stage that the options and the data present allow, in order."""
    ptbxl_store, code15_store = work / "ptbxl-store", work / "code15-store"
    have_ptbxl = (args.ptbxl / "records500").is_dir()
    if have_ptbxl:
        _timed("stage 1a", lambda: stage_ptbxl_ingest(args.ptbxl, ptbxl_store, args.poll_ms / 1e3))
    else:
        _section("1a. skipped")
        print(f"  {args.ptbxl}/records500 not found: no PTB-XL records to ingest or read")
    if not args.skip_code15:
        _timed(
            "stages 1b and 2",
            lambda: stage_code15(
                work / "code15", code15_store, args.code15_records, args.poll_ms / 1e3
            ),
        )
    _section(f"3. random batches of {BATCH} (Store.read) vs wfdb.rdsamp one by one")
    reads: dict[int, float] | None = None
    read_label = ""
    t0 = time.perf_counter()
    if have_ptbxl:
        reads = stage_reads(args.ptbxl, ptbxl_store, args.batches, args.baseline_reads)
        read_label = "PTB-XL store"
    else:
        print("  PTB-XL part skipped (no PTB-XL folder): no baseline, no ratio")
    if not args.skip_code15:
        code15_rate = stage_code15_reads(code15_store, args.batches)
        if reads is None:
            reads, read_label = code15_rate, "CODE-15% store"
    print(f"  (stage 3: {time.perf_counter() - t0:.1f} s)", flush=True)
    if reads is None:
        _section("4. skipped: no store was read")
        return
    _timed(
        "stage 4",
        lambda: stage_training(
            reads, read_label, args.warmup_steps, args.train_steps, args.train_seconds
        ),
    )


def main() -> None:
    args = _parse()
    torch.set_num_threads(TORCH_THREADS)
    t0 = time.perf_counter()
    if args.workdir:
        args.workdir.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="bench_data-", dir=args.workdir))
    print(f"CPU: {cpu_summary()}")
    print(f"ecgscale data path; work folder {work}")
    print("load average (1, 5, 15 min) at start: " + ", ".join(f"{x:.2f}" for x in os.getloadavg()))
    try:
        run_stages(args, work)
    finally:
        if args.keep:
            print(f"\nwork files kept in {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
    print("\nload average (1, 5, 15 min) at end: " + ", ".join(f"{x:.2f}" for x in os.getloadavg()))
    print(f"total wall time {time.perf_counter() - t0:.0f} s")


if __name__ == "__main__":
    main()
