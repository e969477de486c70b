"""What a study will cost, before anything runs: its grid, training FLOPs, device-hours, wall time.

:func:`plan_study` lists every job of a spec (the pre-training runs of
:func:`~ecgscale.study.runs.expand` and the from-scratch task models of
:func:`~ecgscale.study.runs.expand_scratch`) with the actual parameter count and training FLOPs
per sample of its encoder, measured on the ``meta`` device (no memory, no compute, so a 200M
model costs nothing to plan). A job's training FLOPs are

    flops_per_sample x min(batch_size, D) x max_steps

with the pre-training settings (``train``) for runs and ``spec.scratch_train`` (``train`` with
``transfer.train``'s overrides) for from-scratch models, D being the run's data size or the
model's D_F (a step never takes more records than there are). It is an upper bound: early
stopping may stop a job sooner. Not counted: the SL/SSL heads, validation, evaluation (probes,
bootstrap), elementwise ops and norms (see :func:`~ecgscale.models.ladder.measure`).

Times divide FLOPs by one sustained rate per job, in order of precedence: ``tflops`` (given);
for CPU runs, the rate of the finished runs in the study folder's ``results.sqlite`` (their
FLOPs over their wall time, evaluation included); for GPU runs (``executor.gpus_per_run`` > 0)
:data:`GPU_TFLOPS` per GPU; else a brief ``torch.mm`` benchmark of this machine with
``executor.threads_per_worker`` threads times :data:`CPU_EFFICIENCY`. The wall time spreads the
jobs not yet done over the executor's slots, longest first (LPT), each to the slot that frees
first.
"""

from __future__ import annotations

import contextlib
import functools
import heapq
import json
import os
import sqlite3
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import pandas as pd
import torch

from ecgscale.models import build, measure
from ecgscale.study.runs import expand, expand_scratch
from ecgscale.study.spec import StudySpec

GPU_TFLOPS = 0.40 * 312
"""Default sustained TFLOP/s per GPU: 40% MFU of an A100's 312 dense bf16 TFLOP/s (~125)."""

CPU_EFFICIENCY = 0.35
"""Share of a ``torch.mm`` benchmark's FLOP rate that CPU training sustains: ResNets reach
~150 of 234 GFLOP/s fp32 peak on a 2-core Zen 4 at best, small models much less."""

RAY_SLOTS = 1
"""Slots assumed for a ray cluster when ``--slots`` is not given (the cluster is not asked)."""

Format = Literal["table", "csv", "json"]

COLUMNS = [
    "kind",
    "job_id",
    "family",
    "paradigm",
    "task",
    "target_params",
    "n_params",
    "data_size",
    "seed",
    "batch_size",
    "max_steps",
    "flops_per_sample",
    "flops",
    "hours",
    "device_hours",
    "status",
]
"""Columns of :attr:`Plan.jobs`. ``kind``: run or scratch; ``paradigm``: sl/ssl, or scratch;
``task``: a from-scratch model's task (empty for runs); ``data_size``: D, or D_F; ``hours``:
the job's wall time on one slot; ``status``: from the study's results (pending without)."""


@functools.cache
def rung_stats(family: str, target_params: int, input_len: int, fs: float) -> tuple[int, int]:
    """(actual parameters, training FLOPs per sample) of the ladder's encoder, built on the meta
    device (cached: a 200M model takes well under a second)."""
    with torch.device("meta"):
        encoder = build(family, target_params, input_len=input_len, fs=fs)
    stats = measure(encoder, input_len)
    return stats.n_params, stats.flops_per_sample


@dataclass
class Throughput:
    """Sustained FLOP/s of one job, and where the figure comes from."""

    flops_per_s: float
    source: Literal["given", "calibrated", "gpu-default", "cpu-benchmark"]
    note: str


@dataclass
class Plan:
    """The jobs of a study with their sizes, FLOPs and times, and the totals."""

    study: str
    jobs: pd.DataFrame
    """One row per job (:data:`COLUMNS`), runs first, in the order of ``expand``."""
    throughput: Throughput
    slots: int
    slots_note: str
    device: str
    """``GPU`` or ``CPU core``: what the device-hours count."""
    wall_hours: float
    """LPT schedule of the jobs not yet done over ``slots``."""
    scratch_train: tuple[int, int] = (0, 0)
    """(batch_size, max_steps) of the from-scratch models: ``spec.scratch_train``'s."""
    notes: list[str] = field(default_factory=list)

    @property
    def totals(self) -> dict[str, Any]:
        jobs, runs = self.jobs, self.jobs[self.jobs["kind"] == "run"]
        pending = jobs[jobs["status"] != "done"]
        return {
            "runs": int(len(runs)),
            "scratch": int(len(jobs) - len(runs)),
            "jobs_done": int(len(jobs) - len(pending)),
            "target_params_min": int(jobs["target_params"].min()),
            "target_params_max": int(jobs["target_params"].max()),
            "params_min": int(jobs["n_params"].min()),
            "params_max": int(jobs["n_params"].max()),
            "flops": float(jobs["flops"].sum()),
            "flops_runs": float(runs["flops"].sum()),
            "device": self.device,
            "device_hours": float(jobs["device_hours"].sum()),
            "longest_job_hours": float(pending["hours"].max()) if len(pending) else 0.0,
            "slots": self.slots,
            "wall_hours": self.wall_hours,
            "flops_per_s_per_job": self.throughput.flops_per_s,
        }

    def assumptions(self) -> dict[str, str]:
        return {
            "flops": "encoder training FLOPs per sample (forward + backward, measured on the meta "
            "device) x min(batch, D) x max_steps: an upper bound, as early stopping may stop a "
            "job sooner; heads, validation and evaluation not counted",
            "throughput": self.throughput.note,
            "throughput_source": self.throughput.source,
            "slots": self.slots_note,
            "wall": "longest-processing-time-first over the slots, jobs not yet done only",
        }

    def format(self, fmt: Format = "table") -> str:
        """The plan as a text table with totals, as CSV (the job rows) or as JSON."""
        if fmt == "csv":
            return self.jobs.to_csv(index=False)
        if fmt == "json":
            content = {
                "study": self.study,
                "totals": self.totals,
                "assumptions": self.assumptions(),
                "notes": self.notes,
                "jobs": json.loads(self.jobs.to_json(orient="records")),
            }
            return json.dumps(content, indent=1)
        if fmt != "table":
            raise ValueError(f"format {fmt!r}: choose table, csv or json")
        return self._table()

    def _table(self) -> str:
        jobs, t = self.jobs, self.totals
        runs, scratch = jobs[jobs["kind"] == "run"], jobs[jobs["kind"] == "scratch"]
        unit = "GPU-h" if self.device == "GPU" else "core-h"
        width = max([len("run_id"), *runs["job_id"].str.len()])
        out = [
            f"plan of study {self.study!r}: {t['runs']} pre-training runs, {t['scratch']} "
            "from-scratch task models",
            f"{'run_id':<{width}}  {'family':<11} {'par':<3} {'target':>6} {'params':>12} "
            f"{'D':>9} {'seed':>4} {'batch':>5} {'steps':>5} {'FLOPs':>7} {'time':>8} "
            f"{unit:>8}{'  status' if t['jobs_done'] else ''}",
        ]
        for r in runs.itertuples():
            out.append(
                f"{r.job_id:<{width}}  {r.family:<11} {r.paradigm:<3} "
                f"{human(r.target_params):>6} {r.n_params:>12,} {r.data_size:>9,} {r.seed:>4} "
                f"{r.batch_size:>5} {r.max_steps:>5} {human(r.flops):>7} "
                f"{duration(r.hours):>8} {r.device_hours:>8.3g}"
                + (f"  {r.status}" if t["jobs_done"] else "")
            )
        if len(scratch):
            out += ["", *self._scratch_summary(scratch, unit)]
        out += ["", *self._totals_lines()]
        return "\n".join(out)

    def _scratch_summary(self, scratch: pd.DataFrame, unit: str) -> list[str]:
        batch, steps = self.scratch_train
        out = [
            f"from-scratch task models ({len(scratch)}; spec.scratch_train: batch "
            f"min({batch}, D_F), max_steps {steps}), by family and size:",
            f"{'family':<11} {'target':>6} {'params':>12} {'jobs':>4} {'tasks':<16} "
            f"{'D_F':<12} {'FLOPs':>7} {'longest':>8} {unit:>8}",
        ]
        groups = scratch.groupby(["family", "target_params"], sort=False)
        for (family, target), g in groups:
            tasks = ",".join(dict.fromkeys(g["task"]))
            d_f = f"{g['data_size'].min():,}..{g['data_size'].max():,}"
            out.append(
                f"{family:<11} {human(target):>6} {g['n_params'].iloc[0]:>12,} {len(g):>4} "
                f"{tasks[:16]:<16} {d_f:<12} {human(g['flops'].sum()):>7} "
                f"{duration(g['hours'].max()):>8} {g['device_hours'].sum():>8.3g}"
            )
        return out

    def _totals_lines(self) -> list[str]:
        t = self.totals
        pending = t["runs"] + t["scratch"] - t["jobs_done"]
        done = f" ({t['jobs_done']} done, {pending} to run)" if t["jobs_done"] else ""
        device = "GPU-hours" if self.device == "GPU" else "CPU core-hours"
        out = [
            "totals:",
            f"  jobs: {t['runs']} runs + {t['scratch']} from-scratch = "
            f"{t['runs'] + t['scratch']}{done}",
            f"  parameters: {human(t['target_params_min'])}..{human(t['target_params_max'])} "
            f"(actual {t['params_min']:,}..{t['params_max']:,})",
            f"  training FLOPs: {human(t['flops'])} ({human(t['flops_runs'])} in pre-training); "
            "an upper bound: max_steps each, early stopping may stop sooner",
            f"  device time: {amount(t['device_hours'])} {device} ("
            f"{duration(t['device_hours'])} of one {self.device})",
            f"  assumption: {self.throughput.note}",
            f"  slots: {self.slots} ({self.slots_note})",
            f"  wall time: ~{duration(t['wall_hours'])} (longest job "
            f"{duration(t['longest_job_hours'])}; longest-first over {self.slots} slot"
            f"{'s' if self.slots != 1 else ''}{', jobs not done only' if done else ''})",
        ]
        out += [f"  note: {n}" for n in self.notes]
        return out


def human(x: float) -> str:
    """A count in SI units: 20000 -> 20K, 2.5e14 -> 250T."""
    for unit, size in (("E", 1e18), ("P", 1e15), ("T", 1e12), ("G", 1e9), ("M", 1e6), ("K", 1e3)):
        if abs(x) >= size:
            return f"{x / size:.3g}{unit}"
    return f"{x:.3g}"


def amount(x: float) -> str:
    """A positive amount to about 3 figures, without exponents: 12,345, 12.3, 0.0123."""
    if x >= 100:
        return f"{x:,.0f}"
    if x >= 0.001 or x == 0:
        return f"{x:.3g}"
    return "<0.001"


def duration(hours: float) -> str:
    """Hours as s, min, h or days."""
    seconds = hours * 3600
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 90 * 60:
        return f"{seconds / 60:.1f} min"
    if hours < 48:
        return f"{hours:.1f} h"
    return f"{hours / 24:.1f} days"


def lpt_makespan(times: list[float], slots: int) -> float:
    """Wall time of ``times`` on ``slots`` parallel slots, longest first, each to the slot that
    frees first (LPT: at least max(sum/slots, longest), at most 4/3 of the optimum)."""
    if slots < 1:
        raise ValueError(f"slots: {slots} must be at least 1")
    loads = [0.0] * min(slots, max(1, len(times)))
    for t in sorted(times, reverse=True):
        heapq.heapreplace(loads, loads[0] + t)
    return max(loads)


def cores() -> int:
    """Cores of this process's CPU set."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def executor_slots(spec: StudySpec, slots: int | None) -> tuple[int, str]:
    """Jobs that run at once on the spec's executor (``slots`` overrides), and why."""
    ex = spec.executor
    if slots is not None:
        if slots < 1:
            raise ValueError(f"--slots: {slots} must be at least 1")
        return slots, "given"
    if ex.kind == "slurm":
        return ex.slurm.array_parallelism, "slurm executor: executor.slurm.array_parallelism"
    if ex.kind == "ray":
        return RAY_SLOTS, f"ray executor: {RAY_SLOTS} assumed; give --slots K for the cluster"
    if ex.workers is not None:
        return ex.workers, "local executor: executor.workers"
    if ex.gpus_per_run > 0:
        gpus = torch.cuda.device_count() if torch.cuda.is_available() else 0
        n = max(1, gpus // ex.gpus_per_run)
        return n, f"local executor: {gpus} GPUs here / {ex.gpus_per_run} per run"
    n = max(1, cores() // ex.threads_per_worker)
    return n, f"local executor: {cores()} cores here / {ex.threads_per_worker} thread(s) per worker"


def calibrated_rate(study_dir: Path, batch_size: int) -> tuple[float, int] | None:
    """(FLOP/s per run, runs) of the finished runs in ``study_dir/results.sqlite``: their
    training FLOPs over their wall time (evaluation included); None without any."""
    path = Path(study_dir) / "results.sqlite"
    if not path.is_file():
        return None
    try:
        with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as con:
            rows = con.execute(
                "SELECT flops_per_sample, data_size, steps, wall_s FROM runs WHERE status = 'done'"
                " AND flops_per_sample > 0 AND steps > 0 AND wall_s > 0"
            ).fetchall()
    except sqlite3.Error:
        return None
    if not rows:
        return None
    flops = sum(f * min(batch_size, d) * s for f, d, s, _ in rows)
    return flops / sum(w for *_, w in rows), len(rows)


def mm_rate(threads: int, seconds: float = 0.2, n: int = 512) -> float:
    """FLOP/s of fp32 ``torch.mm`` (n x n) on this machine with ``threads`` threads."""
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        a, b = torch.randn(n, n), torch.randn(n, n)
        torch.mm(a, b)  # warm-up
        count, start = 0, time.perf_counter()
        while (elapsed := time.perf_counter() - start) < seconds:
            torch.mm(a, b)
            count += 1
    finally:
        torch.set_num_threads(before)
    return count * 2 * n**3 / elapsed


def throughput(spec: StudySpec, study_dir: Path | None, tflops: float | None) -> Throughput:
    """The sustained FLOP/s of one job, by the first of: given, calibrated, GPU default, CPU
    benchmark."""
    ex = spec.executor
    if tflops is not None:
        if tflops <= 0:
            raise ValueError(f"--tflops: {tflops:g} must be positive")
        return Throughput(tflops * 1e12, "given", f"{tflops:g} TFLOP/s sustained per job (given)")
    if ex.gpus_per_run > 0:
        rate = GPU_TFLOPS * ex.gpus_per_run
        return Throughput(
            rate * 1e12,
            "gpu-default",
            f"{rate:.4g} TFLOP/s per run: 40% MFU of an A100's 312 bf16 TFLOP/s x "
            f"{ex.gpus_per_run} GPU(s) (a default; small models reach far less; --tflops X)",
        )
    calibrated = calibrated_rate(study_dir, spec.train.batch_size) if study_dir else None
    if calibrated is not None:
        rate, n = calibrated
        return Throughput(
            rate,
            "calibrated",
            f"{rate / 1e9:.3g} GFLOP/s per run, calibrated on the {n} finished run(s) in "
            f"{Path(study_dir) / 'results.sqlite'} (training FLOPs / wall time, evaluation "
            "included)",
        )
    threads = ex.threads_per_worker
    peak = mm_rate(threads)
    return Throughput(
        peak * CPU_EFFICIENCY,
        "cpu-benchmark",
        f"{peak * CPU_EFFICIENCY / 1e9:.3g} GFLOP/s per run: this CPU's torch.mm with {threads} "
        f"thread(s), {peak / 1e9:.3g} GFLOP/s, x {CPU_EFFICIENCY:g} training efficiency (a "
        "measured guess; --tflops X, or finished runs in the study folder, replace it)",
    )


def _statuses(study_dir: Path | None) -> dict[str, str]:
    """Job id -> status in the study's results (runs and from-scratch models); {} without."""
    path = Path(study_dir) / "results.sqlite" if study_dir else None
    if path is None or not path.is_file():
        return {}
    out: dict[str, str] = {}
    try:
        with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as con:
            for query in (
                "SELECT run_id, status FROM runs",
                "SELECT scratch_id, status FROM scratch",
            ):
                with contextlib.suppress(sqlite3.OperationalError):  # a table older files lack
                    out.update(con.execute(query).fetchall())
    except sqlite3.Error:
        return {}
    return out


def plan_study(
    spec: StudySpec,
    study_dir: str | Path | None = None,
    tflops: float | None = None,
    slots: int | None = None,
) -> Plan:
    """Plan ``spec``: every job's size, FLOPs and time, the totals and the wall time on its
    executor. ``study_dir`` (if given) supplies finished runs to calibrate a CPU's rate on and
    the jobs already done; ``tflops`` (sustained TFLOP/s per job) and ``slots`` (jobs at once)
    override the assumptions."""
    study_dir = Path(study_dir) if study_dir is not None else None
    input_len, fs = spec.data.n_samples, spec.data.fs
    status = _statuses(study_dir)
    rows = []
    for kind, jobs, cfg in (
        ("run", expand(spec), spec.train),
        ("scratch", expand_scratch(spec), spec.scratch_train),
    ):
        for job in jobs:
            n_params, per_sample = rung_stats(job.family, job.target_params, input_len, fs)
            d = job.data_size if kind == "run" else job.d_f
            job_id = job.run_id if kind == "run" else job.scratch_id
            rows.append(
                {
                    "kind": kind,
                    "job_id": job_id,
                    "family": job.family,
                    "paradigm": job.paradigm if kind == "run" else "scratch",
                    "task": "" if kind == "run" else job.task,
                    "target_params": job.target_params,
                    "n_params": n_params,
                    "data_size": d,
                    "seed": job.seed,
                    "batch_size": min(cfg.batch_size, d),
                    "max_steps": cfg.max_steps,
                    "flops_per_sample": per_sample,
                    "flops": float(per_sample) * min(cfg.batch_size, d) * cfg.max_steps,
                    "status": status.get(job_id, "pending"),
                }
            )
    if not rows:
        raise ValueError(f"study {spec.name!r} has no jobs")
    rate = throughput(spec, study_dir, tflops)
    per_device = spec.executor.gpus_per_run or spec.executor.threads_per_worker
    frame = pd.DataFrame(rows)
    frame["hours"] = frame["flops"] / rate.flops_per_s / 3600
    frame["device_hours"] = frame["hours"] * per_device
    frame = frame[COLUMNS]
    n_slots, slots_note = executor_slots(spec, slots)
    pending = frame.loc[frame["status"] != "done", "hours"].tolist()
    notes = []
    if min(spec.data_sizes) < spec.train.batch_size:
        notes.append("runs whose D is below train.batch_size take D records a step")
    return Plan(
        study=spec.name,
        jobs=frame,
        throughput=rate,
        slots=n_slots,
        slots_note=slots_note,
        device="GPU" if spec.executor.gpus_per_run > 0 else "CPU core",
        wall_hours=lpt_makespan(pending, n_slots) if pending else 0.0,
        scratch_train=(spec.scratch_train.batch_size, spec.scratch_train.max_steps),
        notes=notes,
    )
