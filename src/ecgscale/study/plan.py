"""What a study will cost, before anything runs: its grid, FLOPs, device-hours, wall time.

:func:`plan_study` lists every job of a spec (the pre-training runs of
:func:`~ecgscale.study.runs.expand`, the untrained references of
:func:`~ecgscale.study.runs.expand_references`, which only evaluate, and the from-scratch task
models of :func:`~ecgscale.study.runs.expand_scratch`) with the actual parameter count and FLOPs per
sample of its encoder, measured on the ``meta`` device (no memory, no compute, so a 200M model
costs nothing to plan). A job's training FLOPs are

    flops_per_sample x min(batch_size, D) x max_steps

with the pre-training settings (``train``) for runs and ``spec.scratch_train`` (``train`` with
``transfer.train``'s overrides) for from-scratch models, D being the run's data size or the
model's D_F (a step never takes more records than there are), and max_steps the job's step
budget (``train.epochs`` makes it grow with D: :meth:`~ecgscale.spec.TrainSpec.steps_for`).
It is an upper bound: early stopping may stop a job sooner. Its evaluation FLOPs are the
forward FLOPs per sample times the records it evaluates (:mod:`ecgscale.study.eval_records`: a
run's probe set, probe validation, ID test, OOD and task sets, each record once; a from-scratch
model's task validation and test sets), counted in the study's store when there is one, else
estimated from the spec. Not counted: the SL/SSL heads, validation during training, the probes'
fits and bootstrap (on the CPU), elementwise ops and norms (see
:func:`~ecgscale.models.ladder.measure`).

Times divide FLOPs by one sustained rate per job, in order of precedence: ``tflops`` (given);
for CPU runs, the rate of the finished runs in the study folder's ``results.sqlite`` (their
training and evaluation FLOPs over their wall time); for GPU runs (``executor.gpus_per_run`` >
0) :data:`GPU_TFLOPS` per GPU; else a brief ``torch.mm`` benchmark of this machine with
``executor.threads_per_worker`` threads times :data:`CPU_EFFICIENCY`. On GPUs a training step
takes at least :data:`GPU_STEP_FLOOR_S`, whatever its FLOPs: what small models cost.

Packing (``executor.runs_per_gpu``, :mod:`ecgscale.study.packing`): jobs that share a GPU are
grouped as the executors group them (:func:`~ecgscale.study.packing.packs`); a group holds its
GPU for :func:`pack_hours`, each job keeping its own speed while the GPU has compute to spare,
and each job's device-hours are its share of its group's. The wall time spreads the groups
(single jobs without packing) of the jobs not yet done over the executor's slots, longest
first (LPT), each to the slot that frees first; GPU-hours and wall time without packing are
given beside.
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

from ecgscale.models import ModelStats, build, measure
from ecgscale.numformat import amount, compact_caps, duration
from ecgscale.spec import StudySpec
from ecgscale.study.eval_records import EvalRecords, evaluation_records
from ecgscale.study.executors import local_gpus
from ecgscale.study.packing import packing_words, packs, runs_per_gpu
from ecgscale.study.runs import RunSpec, ScratchSpec, all_jobs
from ecgscale.study.worker import Job

GPU_TFLOPS = 0.40 * 312
"""Default sustained TFLOP/s per GPU: 40% MFU of an A100's 312 dense bf16 TFLOP/s (~125)."""

GPU_STEP_FLOOR_S = 0.011
"""Least time of a training step on a GPU, whatever its FLOPs: measured on an H200 at 12 x 4096
samples, bf16 (``benchmarks/gpu_hours.py --measure``), the 500K rungs of both families at batch
256 and the Transformer 5M rung at batch 512 took 10-12 ms a step (kernel launches), at 0.3-5%
MFU."""

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
    "eval_records",
    "eval_flops",
    "train_hours",
    "eval_hours",
    "hours",
    "runs_per_gpu",
    "pack",
    "device_hours",
    "status",
]
"""Columns of :attr:`Plan.jobs`. ``kind``: run or scratch; ``paradigm``: sl/ssl, or scratch;
``task``: a from-scratch model's task (empty for runs); ``data_size``: D, or D_F; ``flops``:
training FLOPs; ``eval_records``, ``eval_flops``: what its evaluation passes forward;
``train_hours``, ``eval_hours``, ``hours``: its time on a slot of its own; ``runs_per_gpu``:
jobs sharing its GPU; ``pack``: the group it shares it with (numbered from 0); ``device_hours``:
its share of its group's device time; ``status``: from the study's results (pending without)."""


@functools.cache
def rung_stats(family: str, target_params: int, input_len: int, fs: float) -> ModelStats:
    """Parameter counts and FLOPs per sample (training, forward) of the ladder's encoder, built
    on the meta device (cached: a 200M model takes well under a second)."""
    with torch.device("meta"):
        encoder = build(family, target_params, input_len=input_len, fs=fs)
    return measure(encoder, input_len)


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
    """LPT schedule of the jobs not yet done (their packs) over ``slots``."""
    eval_records: EvalRecords
    """What a run's (and a from-scratch model's) evaluation passes forward."""
    unpacked: tuple[float, float] = (0.0, 0.0)
    """(device-hours, wall hours) with one job per GPU, where packing groups several."""
    packing: str = ""
    """The packing setting in words (empty where no job shares a GPU)."""
    step_floor_s: float = 0.0
    """Least time of a training step assumed (:data:`GPU_STEP_FLOOR_S` on GPUs, else 0)."""
    scratch_batch: int = 0
    """Batch size of the from-scratch models: ``spec.scratch_train``'s."""
    notes: list[str] = field(default_factory=list)

    @property
    def totals(self) -> dict[str, Any]:
        jobs, runs = self.jobs, self.jobs[self.jobs["kind"] == "run"]
        references = jobs[jobs["kind"] == "reference"]
        pending = jobs[jobs["status"] != "done"]
        eval_share = (jobs["eval_hours"] / jobs["hours"]).fillna(0)
        eval_device = float((jobs["device_hours"] * eval_share).sum())
        return {
            "runs": int(len(runs)),
            "references": int(len(references)),
            "scratch": int((jobs["kind"] == "scratch").sum()),
            "jobs_done": int(len(jobs) - len(pending)),
            "target_params_min": int(jobs["target_params"].min()),
            "target_params_max": int(jobs["target_params"].max()),
            "params_min": int(jobs["n_params"].min()),
            "params_max": int(jobs["n_params"].max()),
            "flops": float(jobs["flops"].sum()),
            "flops_runs": float(runs["flops"].sum()),
            "eval_flops": float(jobs["eval_flops"].sum()),
            "eval_records_per_run": self.eval_records.per_run,
            "eval_records_exact": self.eval_records.exact,
            "device": self.device,
            "device_hours": float(jobs["device_hours"].sum()),
            "eval_device_hours": eval_device,
            "packs": int(jobs["pack"].nunique()),
            "device_hours_unpacked": self.unpacked[0],
            "longest_job_hours": float(pending["hours"].max()) if len(pending) else 0.0,
            "slots": self.slots,
            "wall_hours": self.wall_hours,
            "wall_hours_unpacked": self.unpacked[1],
            "flops_per_s_per_job": self.throughput.flops_per_s,
        }

    def assumptions(self) -> dict[str, str]:
        floor = (
            f"; a training step takes at least {self.step_floor_s * 1e3:g} ms (kernel launches, "
            "measured on an H200)"
            if self.step_floor_s
            else ""
        )
        return {
            "flops": "encoder training FLOPs per sample (forward + backward, measured on the meta "
            "device) x min(batch, D) x max_steps: an upper bound, as early stopping may stop a "
            "job sooner; heads and validation during training not counted",
            "evaluation": "forward FLOPs per sample x the records evaluated: "
            f"{self.eval_records.describe()}; a from-scratch model its task's validation and "
            "test sets; the probes' fits and bootstrap (CPU) not counted",
            "throughput": self.throughput.note + floor,
            "throughput_source": self.throughput.source,
            "packing": self.packing or "one job per GPU (or per slot)",
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
                "eval_records": {
                    "per_run": self.eval_records.roles,
                    "scratch": self.eval_records.scratch,
                    "exact": self.eval_records.exact,
                },
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
        per_gpu = self.device == "GPU"
        refs = f"{t['references']} untrained references, " if t["references"] else ""
        out = [
            f"plan of study {self.study!r}: {t['runs']} pre-training runs, {refs}{t['scratch']} "
            "from-scratch task models",
            f"{'run_id':<{width}}  {'family':<11} {'par':<3} {'target':>6} {'params':>12} "
            f"{'D':>9} {'seed':>4} {'batch':>5} {'steps':>5} {'FLOPs':>7} {'train':>8} "
            f"{'eval':>8}{' /GPU' if per_gpu else ''} {unit:>8}"
            f"{'  status' if t['jobs_done'] else ''}",
        ]
        for r in runs.itertuples():
            out.append(
                f"{r.job_id:<{width}}  {r.family:<11} {r.paradigm:<3} "
                f"{compact_caps(r.target_params):>6} {r.n_params:>12,} {r.data_size:>9,} "
                f"{r.seed:>4} "
                f"{r.batch_size:>5} {r.max_steps:>5} {compact_caps(r.flops):>7} "
                f"{duration(r.train_hours):>8} {duration(r.eval_hours):>8}"
                f"{f' {r.runs_per_gpu:>4}' if per_gpu else ''} {r.device_hours:>8.3g}"
                + (f"  {r.status}" if t["jobs_done"] else "")
            )
        references = jobs[jobs["kind"] == "reference"]
        if len(references):
            out += [
                "",
                f"untrained references ({len(references)}): each family x size x seed's initial "
                f"encoder, evaluated only: {references['device_hours'].sum():.3g} {unit}",
            ]
        if len(scratch):
            out += ["", *self._scratch_summary(scratch, unit)]
        out += ["", *self._totals_lines()]
        return "\n".join(out)

    def _scratch_summary(self, scratch: pd.DataFrame, unit: str) -> list[str]:
        lo, hi = int(scratch["max_steps"].min()), int(scratch["max_steps"].max())
        steps = f"max_steps {hi}" if lo == hi else f"{lo}..{hi} steps by D_F"
        out = [
            f"from-scratch task models ({len(scratch)}; spec.scratch_train: batch "
            f"min({self.scratch_batch}, D_F), {steps}), by family and size:",
            f"{'family':<11} {'target':>6} {'params':>12} {'jobs':>4} {'tasks':<16} "
            f"{'D_F':<12} {'FLOPs':>7} {'longest':>8} {unit:>8}",
        ]
        groups = scratch.groupby(["family", "target_params"], sort=False)
        for (family, target), g in groups:
            tasks = ",".join(dict.fromkeys(g["task"]))
            d_f = f"{g['data_size'].min():,}..{g['data_size'].max():,}"
            out.append(
                f"{family:<11} {compact_caps(target):>6} {g['n_params'].iloc[0]:>12,} {len(g):>4} "
                f"{tasks[:16]:<16} {d_f:<12} {compact_caps(g['flops'].sum()):>7} "
                f"{duration(g['hours'].max()):>8} {g['device_hours'].sum():>8.3g}"
            )
        return out

    def _totals_lines(self) -> list[str]:
        t = self.totals
        total = t["runs"] + t["references"] + t["scratch"]
        pending = total - t["jobs_done"]
        done = f" ({t['jobs_done']} done, {pending} to run)" if t["jobs_done"] else ""
        device = "GPU-hours" if self.device == "GPU" else "CPU core-hours"
        train_device = t["device_hours"] - t["eval_device_hours"]
        out = [
            "totals:",
            f"  jobs: {t['runs']} runs + "
            + (f"{t['references']} untrained + " if t["references"] else "")
            + f"{t['scratch']} from-scratch = {total}{done}",
            f"  parameters: {compact_caps(t['target_params_min'])}.."
            f"{compact_caps(t['target_params_max'])} "
            f"(actual {t['params_min']:,}..{t['params_max']:,})",
            f"  training FLOPs: {compact_caps(t['flops'])} "
            f"({compact_caps(t['flops_runs'])} in pre-training); "
            "an upper bound: max_steps each, early stopping may stop sooner",
            f"  evaluation FLOPs: {compact_caps(t['eval_flops'])}: forward passes over "
            f"{self.eval_records.describe()}",
            f"  device time: {amount(t['device_hours'])} {device}: training "
            f"{amount(train_device)} + evaluation {amount(t['eval_device_hours'])} "
            f"({duration(t['device_hours'])} of one {self.device})",
        ]
        if self.packing:
            out.append(
                f"  packing: {self.packing}: {total} jobs as {t['packs']} "
                f"GPU allocations; {amount(t['device_hours'])} GPU-hours instead of "
                f"{amount(t['device_hours_unpacked'])} with one job per GPU, wall time "
                f"~{duration(t['wall_hours'])} instead of ~{duration(t['wall_hours_unpacked'])}"
            )
        out += [
            f"  assumption: {self.assumptions()['throughput']}",
            f"  slots: {self.slots} ({self.slots_note})",
            f"  wall time: ~{duration(t['wall_hours'])} (longest job "
            f"{duration(t['longest_job_hours'])}; longest-first over {self.slots} slot"
            f"{'s' if self.slots != 1 else ''}{', jobs not done only' if done else ''})",
        ]
        out += [f"  note: {n}" for n in [*self.notes, *self.eval_records.notes]]
        return out


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
    """Jobs (groups of jobs sharing a GPU, with packing) that run at once on the spec's
    executor (``slots`` overrides), and why."""
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
        gpus = local_gpus(ex)
        n = max(1, gpus // ex.gpus_per_run)
        return n, f"local executor: {gpus} GPUs here / {ex.gpus_per_run} per run"
    n = max(1, cores() // ex.threads_per_worker)
    return n, f"local executor: {cores()} cores here / {ex.threads_per_worker} thread(s) per worker"


def calibrated_rate(
    study_dir: Path, batch_size: int, eval_flops: dict[str, float]
) -> tuple[float, int] | None:
    """(FLOP/s per run, runs) of the finished runs in ``study_dir/results.sqlite``: their
    training FLOPs and evaluation FLOPs (``eval_flops`` by run id; 0 for runs not in it) over
    their wall time; None without any."""
    path = Path(study_dir) / "results.sqlite"
    if not path.is_file():
        return None
    try:
        with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as con:
            rows = con.execute(
                "SELECT run_id, flops_per_sample, data_size, steps, wall_s FROM runs WHERE"
                " status = 'done' AND flops_per_sample > 0 AND steps > 0 AND wall_s > 0"
            ).fetchall()
    except sqlite3.Error:
        return None
    if not rows:
        return None
    flops = sum(f * min(batch_size, d) * s + eval_flops.get(r, 0.0) for r, f, d, s, _ in rows)
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


def throughput(
    spec: StudySpec,
    study_dir: Path | None,
    tflops: float | None,
    eval_flops: dict[str, float] | None = None,
) -> Throughput:
    """The sustained FLOP/s of one job, by the first of: given, calibrated (``eval_flops``: the
    evaluation FLOPs of each run, by id), GPU default, CPU benchmark."""
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
    calibrated = (
        calibrated_rate(study_dir, spec.train.batch_size, eval_flops or {}) if study_dir else None
    )
    if calibrated is not None:
        rate, n = calibrated
        return Throughput(
            rate,
            "calibrated",
            f"{rate / 1e9:.3g} GFLOP/s per run, calibrated on the {n} finished run(s) in "
            f"{Path(study_dir) / 'results.sqlite'} (training and evaluation FLOPs / wall "
            "time)",
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


def pack_hours(hours: list[float], compute_hours: list[float]) -> float:
    """Hours a group of jobs holds its GPU: each job keeps its own time (``hours``) while the
    GPU has compute to spare; together they take at least their summed compute time."""
    return max(max(hours), sum(compute_hours))


def _store_dir(spec: StudySpec, study_dir: Path | None) -> Path | None:
    """The study's store folder (``data.store``, else ``<study>/store``); None if unknown."""
    if spec.data.store:
        return Path(spec.data.store)
    return study_dir / "store" if study_dir is not None else None


def _submission_order(jobs: list[Job]) -> list[Job]:
    """Jobs as ``train_runs`` submits them: runs, then from-scratch models, largest first."""

    def key(job: Job) -> tuple[int, str]:
        size = job.data_size if isinstance(job, RunSpec) else job.d_f
        return job.target_params * size, _job_id(job)

    runs = [j for j in jobs if isinstance(j, RunSpec)]
    scratch = [j for j in jobs if isinstance(j, ScratchSpec)]
    return sorted(runs, key=key, reverse=True) + sorted(scratch, key=key, reverse=True)


def _job_id(job: Job) -> str:
    return job.run_id if isinstance(job, RunSpec) else job.scratch_id


def _row(spec: StudySpec, job: Job, records: EvalRecords, status: dict[str, str]) -> dict:
    """A job's row of sizes and FLOPs (times are added later)."""
    run = isinstance(job, RunSpec)
    trains = not run or job.trains
    d = job.data_size if run else job.d_f
    cfg = spec.train.for_family(job.family) if run else spec.scratch_for(job.family)
    cfg = cfg.for_data(d) if trains else cfg
    steps = cfg.max_steps if trains else 0
    stats = rung_stats(job.family, job.target_params, spec.data.n_samples, spec.data.fs)
    evaluated = records.per_run if run else records.scratch[job.task]
    return {
        "kind": ("run" if trains else "reference") if run else "scratch",
        "job_id": _job_id(job),
        "family": job.family,
        "paradigm": job.paradigm if run else "scratch",
        "task": "" if run else job.task,
        "target_params": job.target_params,
        "n_params": stats.n_params,
        "data_size": d,
        "seed": job.seed,
        "batch_size": min(cfg.batch_size, d),
        "max_steps": steps,
        "flops_per_sample": stats.flops_per_sample,
        "flops": float(stats.flops_per_sample) * min(cfg.batch_size, d) * steps,
        "eval_records": evaluated,
        "eval_flops": float(stats.forward_flops_per_sample) * evaluated,
        "runs_per_gpu": runs_per_gpu(spec, job),
        "status": status.get(_job_id(job), "pending"),
    }


def plan_study(
    spec: StudySpec,
    study_dir: str | Path | None = None,
    tflops: float | None = None,
    slots: int | None = None,
) -> Plan:
    """Plan ``spec``: every job's size, FLOPs and time, the totals and the wall time on its
    executor. ``study_dir`` (if given) supplies finished runs to calibrate a CPU's rate on, the
    jobs already done and (``<study>/store``, unless ``data.store``) the store the evaluation's
    records are counted in; ``tflops`` (sustained TFLOP/s per job) and ``slots`` (jobs, or
    groups sharing a GPU, at once) override the assumptions."""
    study_dir = Path(study_dir) if study_dir is not None else None
    records = evaluation_records(spec, _store_dir(spec, study_dir))
    status = _statuses(study_dir)
    jobs = _submission_order(all_jobs(spec))
    if not jobs:
        raise ValueError(f"study {spec.name!r} has no jobs")
    frame = pd.DataFrame([_row(spec, job, records, status) for job in jobs]).set_index("job_id")
    runs = frame[frame["kind"] == "run"]
    rate = throughput(spec, study_dir, tflops, runs["eval_flops"].to_dict())
    floor = GPU_STEP_FLOOR_S if spec.executor.gpus_per_run > 0 else 0.0
    steps = frame["max_steps"].clip(lower=1)  # an untrained reference takes none
    per_step = (frame["flops"] / steps / rate.flops_per_s).clip(lower=floor)
    frame["train_hours"] = frame["max_steps"] * per_step / 3600
    frame["eval_hours"] = frame["eval_flops"] / rate.flops_per_s / 3600
    frame["hours"] = frame["train_hours"] + frame["eval_hours"]
    compute = (frame["flops"] + frame["eval_flops"]) / rate.flops_per_s / 3600
    per_device = spec.executor.gpus_per_run or spec.executor.threads_per_worker

    def grouped(members: list[Job]) -> list[tuple[list[str], float]]:
        """The packs of ``members`` with the hours each holds its device."""
        out = []
        for pack in packs(spec, members):
            ids = [_job_id(j) for j in pack]
            out.append((ids, pack_hours(frame.loc[ids, "hours"], compute[ids])))
        return out

    frame["pack"], frame["device_hours"] = 0, 0.0
    for number, (ids, hours) in enumerate(grouped(jobs)):
        frame.loc[ids, "pack"] = number
        frame.loc[ids, "device_hours"] = hours * per_device / len(ids)
    pending = [j for j in jobs if frame.at[_job_id(j), "status"] != "done"]
    n_slots, slots_note = executor_slots(spec, slots)
    wall = lpt_makespan([h for _, h in grouped(pending)], n_slots) if pending else 0.0
    unpacked_wall = lpt_makespan(frame.loc[[_job_id(j) for j in pending], "hours"], n_slots)
    order = [_job_id(j) for j in all_jobs(spec)]
    frame = frame.loc[order].reset_index()[COLUMNS]
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
        wall_hours=wall,
        eval_records=records,
        unpacked=(float((frame["hours"] * per_device).sum()), unpacked_wall if pending else 0.0),
        packing=packing_words(spec) if (frame["runs_per_gpu"] > 1).any() else "",
        step_floor_s=floor,
        scratch_batch=spec.scratch_train.batch_size,
        notes=notes,
    )
