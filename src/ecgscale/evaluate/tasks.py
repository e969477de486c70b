"""Unseen clinical tasks: which stored records each task uses, and their targets.

A task (:class:`ecgscale.study.spec.TaskSpec`) takes the records of one source or site whose
target is known, in the store's train/val/test splits. Its D_F subsets are nested prefixes of
one patient order of the train split (salted with the task's name, so they are not the
pre-training subsets of the same records); validation and test sets are fixed prefixes of the
val and test splits. Classification targets are 0/1 with -1 where a label is not annotated;
regression targets are standardised with the mean and standard deviation of the train split,
so that losses are comparable across tasks and the same for probes and from-scratch models.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from ecgscale.data.splits import patient_order
from ecgscale.data.store import records_of
from ecgscale.study.spec import TaskSpec


class TaskError(ValueError):
    """A task cannot be set up from the store; the message is one line naming the task."""


@dataclass
class TaskRows:
    """The global store rows of one task's roles, and its target scaling."""

    task: TaskSpec
    subsets: dict[int, np.ndarray]
    val: np.ndarray
    test: np.ndarray
    center: float = 0.0
    scale: float = 1.0

    @property
    def all_rows(self) -> np.ndarray:
        """Every row the task reads (largest subset, validation, test), sorted."""
        return np.unique(np.concatenate([self.subsets[max(self.subsets)], self.val, self.test]))

    def targets(self, meta: pd.DataFrame, rows: np.ndarray) -> np.ndarray:
        """Targets (n, K) float32 of ``rows``: 0/1/-1, or standardised values."""
        values = _raw_targets(self.task, meta.loc[rows])
        if self.task.kind == "regression":
            return ((values - self.center) / self.scale).astype(np.float32)
        return values.astype(np.float32)


def _raw_targets(task: TaskSpec, frame: pd.DataFrame) -> np.ndarray:
    """(n, K) float targets; NaN (regression) or -1 (classification) where unknown."""
    cols = []
    for name in task.targets:
        col = frame[name]
        if pd.api.types.is_bool_dtype(col):
            col = col.astype("Float64")
        numeric = pd.to_numeric(col, errors="coerce").astype("Float64")
        values = numeric.to_numpy(float, na_value=np.nan)
        if task.kind != "regression":
            values = np.where(np.isnan(values) | (values < 0), -1.0, values)
        cols.append(values)
    return np.stack(cols, axis=1)


def task_rows(task: TaskSpec, meta: pd.DataFrame) -> TaskRows:
    """Select a task's records from the store's metadata, or raise a one-line TaskError."""
    where = f"task {task.name!r}"
    site = records_of(meta, task.source)
    if site.empty:
        raise TaskError(f"{where}: no source or site named {task.source!r} in the store")
    missing = [c for c in task.targets if c not in site.columns]
    if missing:
        raise TaskError(f"{where}: {task.source} records have no column {missing[0]!r}")
    values = _raw_targets(task, site)
    if task.kind == "regression":
        known = np.isfinite(values[:, 0])
    else:
        bad = ~np.isin(values, (-1.0, 0.0, 1.0))
        if bad.any():
            col = task.targets[int(np.nonzero(bad.any(0))[0][0])]
            raise TaskError(
                f"{where}: column {col!r} holds values other than 0/1; is it a regression task?"
            )
        known = (values >= 0).any(axis=1)
    site = site[known]
    by_split = {s: site[site["split"] == s] for s in ("train", "val", "test")}
    for split, part in by_split.items():
        if part.empty:
            raise TaskError(f"{where}: no {task.source} records with a known target in {split}")
    train = patient_order(by_split["train"], f"task:{task.name}")
    if task.d_f[-1] > len(train):
        raise TaskError(
            f"{where}: d_f {task.d_f[-1]} exceeds the {len(train)} train records of "
            f"{task.source} with a known target"
        )
    val = patient_order(by_split["val"], f"task-val:{task.name}")[: task.val_records]
    test = patient_order(by_split["test"], f"task-test:{task.name}")[: task.test_records]
    rows = TaskRows(
        task=task,
        subsets={d: np.sort(train[:d]) for d in task.d_f},
        val=np.sort(val),
        test=np.sort(test),
    )
    if task.kind == "regression":
        pool = _raw_targets(task, meta.loc[train])[:, 0]
        rows.center, rows.scale = float(pool.mean()), float(pool.std() or 1.0)
    else:
        y = rows.targets(meta, rows.subsets[task.d_f[-1]])
        for j, name in enumerate(task.targets):
            known_j = y[:, j] >= 0
            if known_j.any() and len(np.unique(y[known_j, j])) < 2:
                raise TaskError(f"{where}: {name} has one class only in the largest D_F subset")
    return rows
