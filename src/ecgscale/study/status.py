"""What a study is doing now, read from its results store while it runs (``ecgscale study
status DIR``): jobs by state, running jobs with their progress and last losses (from their
``metrics.csv``), failures with their reasons, and an ETA from the throughput measured so far."""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from ecgscale.numformat import duration
from ecgscale.study.code_version import other_code, other_code_warning
from ecgscale.study.lifecycle import Jobs, owner_alive
from ecgscale.study.results import Results
from ecgscale.study.runs import all_jobs
from ecgscale.study.specfile import load_study_spec
from ecgscale.study.worker import job_id
from ecgscale.train.metrics import read_metrics

ORDER = ("done", "running", "lost", "pending", "failed", "not submitted")


@dataclass
class Status:
    """A snapshot of a study's jobs (``jobs``: one row per job of the grid, with its ``folder``
    in the study and ``shown``, its state as the operator sees it: a running job whose worker is
    gone is ``lost``)."""

    name: str
    study_dir: Path
    jobs: pd.DataFrame
    now: float
    other_code: Counter = field(default_factory=Counter)
    """Finished jobs trained by other code than this process's, by code."""

    def counts(self) -> dict[str, int]:
        counts = self.jobs["shown"].value_counts()
        return {s: int(counts.get(s, 0)) for s in ORDER if counts.get(s, 0)}

    def eta_s(self) -> tuple[float | None, str]:
        """Seconds until the jobs left are done, at the rate the jobs of the latest submission
        finished since the first of them started; and how that was measured."""
        left = int(self.jobs["shown"].isin(["running", "lost", "pending"]).sum())
        if not left:
            return 0.0, "nothing left to run"
        latest = self.jobs[self.jobs["submitted_at"] == self.jobs["submitted_at"].max()]
        finished = latest.dropna(subset=["finished_at"])
        if finished.empty:
            return None, "no job of this submission finished yet"
        elapsed = self.now - float(latest["started_at"].min())
        rate = len(finished) / elapsed
        return (
            left / rate,
            f"{len(finished)} jobs in {duration(elapsed / 3600)}, {rate * 3600:.3g}/h",
        )

    def format(self) -> str:
        total = len(self.jobs)
        counts = ", ".join(f"{n} {s}" for s, n in self.counts().items())
        lines = [f"study {self.name!r} ({self.study_dir}): {total} jobs — {counts}"]
        running = self.jobs[self.jobs["shown"].isin(["running", "lost"])]
        if len(running):
            lines.append("running:")
            for r in running.itertuples():
                progress = (
                    f"step {int(r.step)}/{int(r.total_steps)} ({r.step / r.total_steps:.0%})"
                    if pd.notna(r.step) and pd.notna(r.total_steps) and r.total_steps
                    else "starting"
                )
                beat = f"heartbeat {duration((self.now - r.heartbeat_at) / 3600)} ago"
                state = "  LOST: worker gone, will be taken over" if r.shown == "lost" else ""
                lines.append(
                    f"  {r.job_id}  {progress}  attempt {int(r.attempts)}  {r.owner}  {beat}{state}"
                )
                losses = last_losses(read_metrics(self.study_dir / r.folder / "metrics.csv"))
                if losses:
                    lines.append(f"    {losses}")
        failed = self.jobs[self.jobs["shown"] == "failed"]
        if len(failed):
            lines.append("failed:")
            for r in failed.itertuples():
                lines.append(f"  {r.job_id}  attempt {int(r.attempts)}: {r.error}")
        if self.other_code:
            lines.append(other_code_warning(self.other_code, total))
        eta, how = self.eta_s()
        if eta is None:
            lines.append(f"ETA: unknown ({how})")
        elif eta > 0:
            lines.append(f"ETA: ~{duration(eta / 3600)} at the rate so far ({how})")
        return "\n".join(lines)


def last_losses(metrics: pd.DataFrame) -> str | None:
    """A job's latest losses from its metrics rows: ``step 30: train loss 0.512, val loss
    0.498 (step 25)``; None before its first row."""
    if metrics.empty:
        return None
    last = metrics.iloc[-1]
    text = f"step {int(last['step'])}: train loss {last['train_loss']:.4g}"
    validated = metrics.dropna(subset=["val_loss"])
    if len(validated):
        val = validated.iloc[-1]
        text += f", val loss {val['val_loss']:.4g} (step {int(val['step'])})"
    return text


def study_status(study_dir: Path) -> Status:
    """The status of the study in ``study_dir`` (its ``spec.yaml`` and ``results.sqlite``)."""
    study_dir = Path(study_dir)
    spec = load_study_spec(study_dir)
    grid_jobs = all_jobs(spec)
    grid = pd.DataFrame(
        {"job_id": [job_id(j) for j in grid_jobs], "folder": [j.folder for j in grid_jobs]}
    )
    others: Counter = Counter()
    if (study_dir / "results.sqlite").is_file():
        table = Jobs(study_dir / "results.sqlite").table()
        codes = Results(study_dir / "results.sqlite").done_codes()
        others = other_code(codes[j] for j in grid["job_id"] if j in codes)
    else:
        table = pd.DataFrame(columns=["job_id", "state"])
    jobs = grid.merge(table, on="job_id", how="left")
    now = time.time()
    stale = spec.executor.stale_after_s
    jobs["shown"] = [
        "not submitted"
        if pd.isna(r.state)
        else "lost"
        if r.state == "running" and not owner_alive(r.owner, r.heartbeat_at, stale, now)
        else r.state
        for r in jobs.itertuples()
    ]
    return Status(spec.name, study_dir, jobs, now, others)
