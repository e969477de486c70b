"""The roles a study gives the records of its store, patient-disjoint, and their audit.

Roles: the nested pre-training subsets (the D ladder) and the pre-training validation set;
the probe's labelled set and its validation set; the ID test set; each OOD set; and each
unseen task's D_F subsets, validation and test sets.

The ID site is carved before any pre-training subset is drawn. A ``data.holdout`` share of
its patients (chosen by a hash of the patient id, so the share does not move when sizes
change) is kept out of pre-training: their train-split records hold the probe set and the
unseen tasks on the ID site, their val-split records the probe's validation set. The other
patients' train-split records hold the nested pre-training subsets, their val-split records
the pre-training validation set; the test split is the ID test set. Every carve takes whole
patients: a patient cut at a role's boundary leaves its other records unused.

Allowed to share records: pre-training subsets with each other (they are nested), a task's
D_F subsets with each other (nested), OOD sets with each other, and unseen tasks with each
other and with OOD sets (each task trains its own probe and from-scratch models on its own
D_F records and tests them on its own test set; nothing trained for one is scored on
another). Every other pair of roles is patient-disjoint: :func:`check_roles` raises on any
overlap, :func:`role_table` shows them all.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from ecgscale.data.splits import nested_subsets, patient_order, patient_uniform
from ecgscale.data.store import records_of
from ecgscale.spec import StudySpec, TaskSpec


class RoleError(ValueError):
    """Roles cannot be assigned, or two of them overlap; the message is one line."""


class TaskError(RoleError):
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
    def probed_rows(self) -> np.ndarray:
        """The rows a pre-trained encoder is evaluated on (the largest probed D_F subset,
        validation, test), sorted: the from-scratch ladder's larger subsets are left out."""
        largest = self.subsets[self.task.d_f[-1]]
        return np.unique(np.concatenate([largest, self.val, self.test]))

    def targets(self, meta: pd.DataFrame, rows: np.ndarray) -> np.ndarray:
        """Targets (n, K) float32 of ``rows``: 0/1/-1, or standardised values."""
        values = _raw_targets(self.task, meta.loc[rows])
        if self.task.kind == "regression":
            return ((values - self.center) / self.scale).astype(np.float32)
        return values.astype(np.float32)


@dataclass
class Roles:
    """Global store rows of every role of one study."""

    subsets: dict[int, np.ndarray]
    val: np.ndarray
    probe_train: np.ndarray
    probe_val: np.ndarray
    id_test: np.ndarray
    ood: dict[str, np.ndarray]
    tasks: dict[str, TaskRows] = field(default_factory=dict)

    def eval_sets(self) -> list[tuple[str, bool, np.ndarray]]:
        """The six-label evaluation sets: (name, is OOD, rows), ID test first."""
        return [("id", False, self.id_test)] + [(s, True, r) for s, r in self.ood.items()]

    def named(self) -> list[tuple[str, str, np.ndarray]]:
        """Every role as (name, group, rows); the group decides what may share records."""
        out = [(f"pre-training D={d}", "pretrain", r) for d, r in sorted(self.subsets.items())]
        out += [
            ("pre-training validation", "pretrain-val", self.val),
            ("probe train", "probe", self.probe_train),
            ("probe validation", "probe", self.probe_val),
            ("ID test", "id-test", self.id_test),
        ]
        out += [(f"OOD {name}", "ood", rows) for name, rows in self.ood.items()]
        for name, tr in self.tasks.items():
            out += [(f"task {name} D_F={d}", f"task:{name}:df", r) for d, r in tr.subsets.items()]
            out += [
                (f"task {name} validation", f"task:{name}:val", tr.val),
                (f"task {name} test", f"task:{name}:test", tr.test),
            ]
        return out


def may_share(group_a: str, group_b: str) -> bool:
    """Whether roles of these groups may hold the same records (see the module docstring)."""
    if group_a == group_b:
        return group_a in ("pretrain", "ood") or group_a.endswith(":df")
    kinds = sorted(g.split(":")[0] if g.startswith("task:") else g for g in (group_a, group_b))
    if kinds == ["ood", "task"]:
        return True
    return kinds == ["task", "task"] and group_a.split(":")[1] != group_b.split(":")[1]


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


def _known(task: TaskSpec, frame: pd.DataFrame, where: str) -> pd.DataFrame:
    """The records of ``frame`` whose task target is known (checked for the task's kind)."""
    missing = [c for c in task.targets if c not in frame.columns]
    if missing:
        raise TaskError(f"{where}: {task.source} records have no column {missing[0]!r}")
    values = _raw_targets(task, frame)
    if task.kind == "regression":
        return frame[np.isfinite(values[:, 0])]
    bad = ~np.isin(values, (-1.0, 0.0, 1.0))
    if bad.any():
        col = task.targets[int(np.nonzero(bad.any(0))[0][0])]
        raise TaskError(
            f"{where}: column {col!r} holds values other than 0/1; is it a regression task?"
        )
    return frame[(values >= 0).any(axis=1)]


def _take(part: pd.DataFrame, n: int | None, salt: str) -> tuple[np.ndarray, pd.DataFrame]:
    """The first ``n`` records (all with None) of ``part`` in patient order, and ``part``
    without every patient they touch (a patient cut at the boundary is dropped whole)."""
    order = patient_order(part, salt)
    taken = order if n is None else order[:n]
    patients = part.loc[part["row"].isin(taken), "patient_id"].unique()
    return np.sort(taken), part[~part["patient_id"].isin(patients)]


def _task_rows(
    task: TaskSpec,
    train: pd.DataFrame,
    val: pd.DataFrame,
    test: pd.DataFrame,
    where: str,
    sizes: list[int],
) -> TaskRows:
    """A task's nested D_F subsets of ``train`` (of ``sizes``), its val and test sets, its
    target scaling."""
    pool = patient_order(train, f"task:{task.name}")
    if sizes[-1] > len(pool):
        have = f"the {len(pool)} train records of {task.source} with a known target"
        if task.d_f[-1] > len(pool):
            raise TaskError(f"{where}: d_f {task.d_f[-1]} exceeds {have}")
        raise TaskError(
            f"{where}: the from-scratch ladder's D_F {sizes[-1]} (scratch_d_f "
            f"{task.scratch_ladder}) exceeds {have}; lower d_f or set scratch_d_f"
        )
    rows = TaskRows(
        task=task,
        subsets={d: np.sort(pool[:d]) for d in sizes},
        val=np.sort(patient_order(val, f"task-val:{task.name}")[: task.val_records]),
        test=np.sort(patient_order(test, f"task-test:{task.name}")[: task.test_records]),
    )
    for name, part in (("train", rows.subsets[sizes[-1]]), ("val", rows.val), ("test", rows.test)):
        if not len(part):
            raise TaskError(f"{where}: no {task.source} records with a known target in {name}")
    if task.kind == "regression":
        values = _raw_targets(task, train)[:, 0]
        rows.center, rows.scale = float(values.mean()), float(values.std() or 1.0)
    else:
        y = rows.targets(train, rows.subsets[sizes[-1]])
        for j, name in enumerate(task.targets):
            known = y[:, j] >= 0
            if known.any() and len(np.unique(y[known, j])) < 2:
                raise TaskError(f"{where}: {name} has one class only in the largest D_F subset")
    return rows


def _id_site_task(task: TaskSpec, pool: pd.DataFrame, sizes: list[int]) -> TaskRows:
    """A task on the ID site: test, validation and D_F records carved, in that order and
    patient-disjoint, from the held-out patients' train records left after the probe set."""
    where = f"task {task.name!r}"
    known = _known(task, pool, where)
    need = task.test_records + task.val_records + sizes[-1]
    if len(known) < need:
        raise TaskError(
            f"{where}: needs {need:,} ID-site records with a known target (test "
            f"{task.test_records:,} + validation {task.val_records:,} + D_F {sizes[-1]:,}) "
            f"among the held-out patients, has {len(known):,} after the probe set; raise "
            "data.holdout or lower the task's sizes"
        )
    test, rest = _take(known, task.test_records, f"task-test:{task.name}")
    val, rest = _take(rest, task.val_records, f"task-val:{task.name}")
    frame = lambda rows: known[known["row"].isin(rows)]  # noqa: E731
    return _task_rows(task, rest, frame(val), frame(test), where, sizes)


def task_rows(
    task: TaskSpec,
    meta: pd.DataFrame,
    id_rows: np.ndarray | None = None,
    sizes: list[int] | None = None,
) -> TaskRows:
    """A task on a source other than the ID site (whose rows are ``id_rows``): its D_F subsets
    (``sizes``, default the probe's and the from-scratch ladder's), val and test sets from the
    source's train/val/test splits, or a one-line TaskError."""
    where = f"task {task.name!r}"
    site = records_of(meta, task.source)
    if site.empty:
        raise TaskError(f"{where}: no source or site named {task.source!r} in the store")
    if id_rows is not None and np.isin(site["row"].to_numpy(), id_rows).any():
        raise TaskError(
            f"{where}: source {task.source!r} holds records of the ID site; name the ID site "
            "itself as the task's source, so that its records are kept out of pre-training"
        )
    known = _known(task, site, where)
    by_split = {s: known[known["split"] == s] for s in ("train", "val", "test")}
    sizes = sizes or task.all_d_f
    return _task_rows(task, by_split["train"], by_split["val"], by_split["test"], where, sizes)


def assign_roles(spec: StudySpec, meta: pd.DataFrame) -> Roles:
    """Every role of ``spec`` on the store's metadata ``meta`` (see the module docstring), or
    a one-line RoleError (a TaskError naming the task) when the store cannot hold them."""
    data, ev = spec.data, spec.eval
    site = records_of(meta, data.id_site)
    held = patient_uniform(site["patient_id"].to_numpy(), f"holdout{data.seed}") < data.holdout
    split = site["split"]
    pretrain = site[~held & (split == "train")]
    try:
        subsets = nested_subsets(pretrain, spec.data_sizes, seed=data.seed)
    except ValueError as err:
        raise RoleError(
            f"data_sizes: {err} left for pre-training ({1 - data.holdout:.0%} of the ID site's "
            f"patients; data.holdout={data.holdout:g})"
        ) from None
    probe_train, eval_pool = _take(site[held & (split == "train")], ev.probe_records, "probe")
    probe_val, _ = _take(site[held & (split == "val")], ev.probe_val_records, "probe-val")
    val, _ = _take(site[~held & (split == "val")], spec.train.val_records, "val")
    id_test, _ = _take(site[split == "test"], ev.test_records, "test")
    id_rows = site["row"].to_numpy()
    tasks = {}
    for task in spec.tasks:
        sizes = task.all_d_f if spec.has_scratch(task.name) else task.d_f
        if task.source == data.id_site:
            tasks[task.name] = _id_site_task(task, eval_pool, sizes)
        else:
            tasks[task.name] = task_rows(task, meta, id_rows, sizes)
    return Roles(
        subsets=subsets,
        val=val,
        probe_train=probe_train,
        probe_val=probe_val,
        id_test=id_test,
        ood={s: records_of(meta, s)["row"].to_numpy() for s in data.ood_sites},
        tasks=tasks,
    )


def patients_of(meta: pd.DataFrame, rows: np.ndarray | None = None) -> np.ndarray:
    """The patient of each record (of ``rows``, default all) as a string; patient ids are
    per source, so the key holds both."""
    part = meta if rows is None else meta.loc[rows]
    return (part["source"].astype(str) + "\x00" + part["patient_id"].astype(str)).to_numpy()


def _patient_keys(meta: pd.DataFrame) -> np.ndarray:
    """One integer per record of ``meta`` naming its patient."""
    return pd.factorize(patients_of(meta))[0]


def role_table(roles: Roles, meta: pd.DataFrame) -> pd.DataFrame:
    """The audit of roles: one row per role with its sources, records and patients, its
    overlap (records, patients) with every pre-training subset and the pre-training validation
    set, the roles it may share records with that it does share them with, and the overlaps
    that are not allowed (``conflicts``, empty when the roles are sound)."""
    keys, source = _patient_keys(meta), meta["source"].astype(str).to_numpy()
    position = pd.Series(np.arange(len(meta)), index=meta["row"].to_numpy())
    named = roles.named()
    at = [position[rows].to_numpy() for _, _, rows in named]
    patients = [np.unique(keys[where]) for where in at]
    pretrain = [(i, name) for i, (name, group, _) in enumerate(named) if group.startswith("pre")]
    out = []
    for i, (name, group, rows) in enumerate(named):
        row: dict = {
            "role": name,
            "source": ", ".join(sorted(set(source[at[i]]))),
            "records": len(rows),
            "patients": len(patients[i]),
        }
        for j, other in pretrain:
            label = "pretrain val" if named[j][1] == "pretrain-val" else other.split()[-1]
            itself = j == i or group == named[j][1] == "pretrain"
            row[f"{label} records"] = np.nan if itself else np.intersect1d(rows, named[j][2]).size
            row[f"{label} patients"] = (
                np.nan if itself else np.intersect1d(patients[i], patients[j]).size
            )
        shares: dict[str, None] = {}
        conflicts = []
        for j, (other, other_group, other_rows) in enumerate(named):
            if j == i:
                continue
            n_rec = np.intersect1d(rows, other_rows).size
            n_pat = np.intersect1d(patients[i], patients[j]).size
            if not (n_rec or n_pat):
                continue
            if may_share(group, other_group):
                if n_rec and not (group == other_group and group != "ood"):
                    shares[_role_owner(other, other_group)] = None
            else:
                conflicts.append(f"{other} ({n_rec} records, {n_pat} patients)")
        row["shares records with"] = "; ".join(shares)
        row["conflicts"] = "; ".join(conflicts)
        out.append(row)
    return pd.DataFrame(out)


def _role_owner(name: str, group: str) -> str:
    """What a role belongs to, for the audit's list of sharing: ``task lvh`` for every role of
    that task, else the role itself."""
    return f"task {group.split(':')[1]}" if group.startswith("task:") else name


TEXT_COLUMNS = ("role", "source", "shares records with", "conflicts")
"""Columns of the audit that hold text (empty when nothing is shared or in conflict)."""


def read_role_table(path: str | Path) -> pd.DataFrame:
    """An audit of roles written as CSV (``roles.csv``), its text columns as strings."""
    table = pd.read_csv(path)
    for column in TEXT_COLUMNS:
        table[column] = table[column].astype(object).where(table[column].notna(), "").astype(str)
    return table


def check_roles(roles: Roles, meta: pd.DataFrame) -> pd.DataFrame:
    """:func:`role_table`, or a RoleError naming the first two roles that overlap and are not
    allowed to."""
    table = role_table(roles, meta)
    bad = table[table["conflicts"] != ""]
    if len(bad):
        first = bad.iloc[0]
        raise RoleError(
            f"roles overlap: {first['role']} shares patients with {first['conflicts']}; "
            "`ecgscale results STUDY --table roles` lists every role"
        )
    return table
