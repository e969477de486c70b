"""Training you can watch: a row of metrics at every log point of :func:`~ecgscale.train.pretrain`,
to ``metrics.csv`` (flushed row by row, so a reader sees it grow) and, when asked for, to
TensorBoard event files.

A row (:data:`COLUMNS`): ``step``; ``lr``, the learning rate that step trained with;
``train_loss``, the mean training loss of the steps since the previous row; ``val_loss`` at
validations (empty otherwise); ``grad_norm``, the gradient norm of that step before clipping;
``samples_per_s``, the records trained per second since the previous row by all processes
together (validations and checkpoints left out), and ``flops_per_s``, that rate times the
model's training FLOPs per record (:func:`ecgscale.models.measure`). A run resumed from a
checkpoint first drops the rows after the checkpoint's step, so its file holds each step once.
"""

from __future__ import annotations

import csv
import importlib.util
import io
import math
import os
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Protocol

import pandas as pd

from ecgscale.spec import SpecError

COLUMNS: tuple[str, ...] = (
    "step",
    "lr",
    "train_loss",
    "val_loss",
    "grad_norm",
    "samples_per_s",
    "flops_per_s",
)
"""The columns of ``metrics.csv``, in order (also the TensorBoard scalar tags, ``step`` aside)."""

TENSORBOARD_EXTRA = "pip install 'ecgscale[tensorboard]'"


class Sink(Protocol):
    """Where rows go: ``start(step)`` when training (re)starts after ``step``, ``write(row)``
    at each log point, ``close()`` at the end."""

    def start(self, step: int) -> None: ...

    def write(self, row: dict[str, float | None]) -> None: ...

    def close(self) -> None: ...


def read_metrics(path: Path) -> pd.DataFrame:
    """The whole rows of a ``metrics.csv`` (also one being written: a torn last line is left
    out), as floats with ``step`` an int; empty (with :data:`COLUMNS`) when there is no file."""
    path = Path(path)
    text = path.read_text() if path.is_file() else ""
    lines = text.splitlines(keepends=True)
    whole = [line for line in lines[1:] if line.endswith("\n")] if lines else []
    header = lines[0].strip().split(",") if lines else list(COLUMNS)
    if not whole:
        return pd.DataFrame(columns=header)
    frame = pd.read_csv(io.StringIO("".join([lines[0], *whole])))
    frame = frame.apply(pd.to_numeric, errors="coerce").dropna(subset=["step"])
    return frame.astype({"step": int})


class MetricsCsv:
    """``metrics.csv`` of one job: rows appended and flushed as they come."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._file: io.TextIOWrapper | None = None

    def start(self, step: int) -> None:
        """Keep the rows up to ``step`` (none when training starts afresh), then append."""
        kept = read_metrics(self.path)
        kept = kept[kept["step"] <= step].reindex(columns=list(COLUMNS))
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(self.path.name + ".tmp")
        with open(tmp, "w", newline="") as f:
            writer = csv.writer(f, lineterminator="\n")
            writer.writerow(COLUMNS)
            for row in kept.to_dict(orient="records"):
                writer.writerow(_cells(row))
        os.replace(tmp, self.path)
        self._file = open(self.path, "a", newline="")  # noqa: SIM115 (closed by close())
        self._writer = csv.writer(self._file, lineterminator="\n")

    def write(self, row: dict[str, float | None]) -> None:
        self._writer.writerow(_cells(row))
        self._file.flush()

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None


def _cells(row: dict) -> list[str]:
    """A row's CSV cells: ints as ints, floats exactly (``repr``), missing values empty."""
    cells = []
    for column in COLUMNS:
        value = row.get(column)
        if value is None or (isinstance(value, float) and math.isnan(value)):
            cells.append("")
        elif column == "step":
            cells.append(str(int(value)))
        else:
            cells.append(repr(float(value)))
    return cells


def tensorboard_wanted(setting: bool | str) -> bool:
    """Whether to write TensorBoard events under ``monitor.tensorboard`` = ``setting``: ``auto``
    when the package is installed; ``true`` requires it (a one-line SpecError otherwise)."""
    installed = importlib.util.find_spec("tensorboard") is not None
    if setting is True and not installed:
        raise SpecError(
            "monitor.tensorboard: true needs the tensorboard package; "
            f"install it with {TENSORBOARD_EXTRA} (or set monitor.tensorboard: auto)"
        )
    return installed if setting == "auto" else bool(setting)


class TensorBoardEvents:
    """TensorBoard event files of one job in ``logdir``: one scalar per column of each row."""

    def __init__(self, logdir: Path) -> None:
        self.logdir = Path(logdir)
        self._writer = None

    def start(self, step: int) -> None:
        """Open a writer that hides the events written after ``step`` by an earlier attempt."""
        from torch.utils.tensorboard import SummaryWriter

        _after_earlier_files(self.logdir)
        self._writer = SummaryWriter(str(self.logdir), purge_step=step + 1)

    def write(self, row: dict[str, float | None]) -> None:
        for tag in COLUMNS[1:]:
            value = row.get(tag)
            if value is not None and not math.isnan(value):
                self._writer.add_scalar(tag, value, global_step=int(row["step"]))
        self._writer.flush()

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None


MAX_EVENT_WAIT_S = 2.0
"""The longest :func:`_after_earlier_files` waits for the clock to pass an earlier file's second."""


def _after_earlier_files(logdir: Path) -> None:
    """Wait (two seconds at most) until a new event file's name sorts after those in ``logdir``.

    TensorBoard reads a folder's event files in name order, ``events.out.tfevents.<second>.
    <host>.<pid>.<counter>``, and a resumed attempt's purge of the steps it redoes works only
    when its file is read last; within one second the pid and counter decide, as text (a
    counter of 10 sorts before 9), so an attempt resumed in the same second waits for the next.
    A file from further ahead (another host's clock) is not waited for.
    """
    seconds = [
        int(parts[3])
        for path in logdir.glob("events.out.tfevents.*")
        if len(parts := path.name.split(".")) > 3 and parts[3].isdigit()
    ]
    next_second = max(seconds, default=0) + 1
    if next_second - time.time() > MAX_EVENT_WAIT_S:
        return
    while (wait := next_second - time.time()) > 0:
        time.sleep(wait)


class TrainLog:
    """The rows :func:`~ecgscale.train.pretrain` reports, to each of ``sinks`` (none: the rows
    are only computed, as on processes other than 0). ``flops_per_sample``: the model's
    training FLOPs per record, for ``flops_per_s``."""

    def __init__(self, sinks: Sequence[Sink] = (), *, flops_per_sample: float | None = None):
        self.sinks = list(sinks)
        self.flops_per_sample = flops_per_sample
        self._step, self._batch, self._clock, self._paused = 0, 0, 0.0, 0.0

    def start(self, step: int, batch: int) -> None:
        """Training of ``batch`` records a step (re)starts after ``step``."""
        for sink in self.sinks:
            sink.start(step)
        self._step, self._batch = step, batch
        self._clock, self._paused = time.perf_counter(), 0.0

    @contextmanager
    def paused(self) -> Iterator[None]:
        """Time spent within is not training time (validation, checkpoints)."""
        t0 = time.perf_counter()
        try:
            yield
        finally:
            self._paused += time.perf_counter() - t0

    def row(
        self,
        step: int,
        *,
        lr: float,
        train_loss: float,
        grad_norm: float,
        val_loss: float | None = None,
    ) -> dict[str, float | None]:
        """Write the row of ``step`` (throughput since the previous row) and return it."""
        now = time.perf_counter()
        seconds = now - self._clock - self._paused
        rate = self._batch * (step - self._step) / seconds if seconds > 0 else math.nan
        flops = rate * self.flops_per_sample if self.flops_per_sample else None
        row = {
            "step": step,
            "lr": lr,
            "train_loss": train_loss,
            "val_loss": val_loss,
            "grad_norm": grad_norm,
            "samples_per_s": rate,
            "flops_per_s": flops,
        }
        for sink in self.sinks:
            sink.write(row)
        self._step, self._clock, self._paused = step, now, 0.0
        return row

    def close(self) -> None:
        for sink in self.sinks:
            sink.close()
