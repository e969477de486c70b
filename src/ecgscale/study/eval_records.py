"""How many records a study's evaluation passes through each encoder, for ``ecgscale study plan``.

A pre-training run computes the pooled features of every record of its roles once
(:class:`~ecgscale.evaluate.probe.FeatureCache`): the probe set and its validation set, the ID
test set, every OOD set and every unseen task's largest D_F subset, validation and test sets
(:func:`~ecgscale.evaluate.roles.assign_roles`), records shared by several roles counted once.
A from-scratch model predicts its task's test set, and its validation set to choose F1
thresholds (classification). With the study's store at hand the counts are exact; without it
they are estimated from the spec: its caps (``eval.*_records``, the tasks' sizes), synthetic
sizes, and the published record counts of the datasets it ingests (before ingest's
rejections), a site of CinC counted within CinC where both are OOD sets and a task's records
within the OOD set of its source.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ecgscale.data.store import Store, StoreError
from ecgscale.data.synthetic import SITES
from ecgscale.evaluate.roles import RoleError, assign_roles
from ecgscale.spec import StudySpec, TaskSpec

PUBLISHED_RECORDS: dict[str, int] = {
    "ptbxl": 21_799,
    "cinc2020": 43_101,
    "cinc2021": 88_253,
    "code15": 345_779,
    "codetest": 827,
}
"""Records of each downloadable dataset, by ingest kind, as published (PTB-XL 1.0.3, the
PhysioNet/CinC 2020 and 2021 training sets, CODE-15%, CODE-test)."""

CINC_SITE_RECORDS: dict[str, int] = {
    "CPSC": 6_877,
    "CPSC-Extra": 3_453,
    "INCART": 74,
    "PTB": 516,
    "PTB-XL": 21_837,
    "Georgia": 10_344,
    "Chapman-Ningbo": 45_152,
}
"""Records of each site of the CinC 2021 training set (2020's: all but Chapman-Ningbo)."""

ROLES = ("probe set", "probe validation", "ID test", "OOD sets", "tasks")
"""The roles a run's evaluation records are counted under, each record under the first."""


@dataclass
class EvalRecords:
    """Records whose features one run computes (by role, each record once) and records one
    from-scratch model predicts (by task); ``exact``: counted in the store, else estimated."""

    roles: dict[str, int]
    scratch: dict[str, int]
    exact: bool
    notes: list[str] = field(default_factory=list)

    @property
    def per_run(self) -> int:
        return sum(self.roles.values())

    def describe(self) -> str:
        """The roles' counts and where they come from, in words."""
        parts = ", ".join(f"{name} {n:,}" for name, n in self.roles.items() if n)
        how = "counted in the store" if self.exact else "estimated from the spec"
        return f"{self.per_run:,} records per run ({parts}; {how})"


def evaluation_records(spec: StudySpec, store_dir: Path | None) -> EvalRecords:
    """The evaluation's records, counted in the store at ``store_dir`` when it holds the
    spec's roles, else estimated from the spec (a note says why)."""
    if store_dir is None:
        return _estimated(spec, "no store")
    try:
        return _counted(spec, Store(store_dir))
    except StoreError:
        return _estimated(spec, f"no store at {store_dir}")
    except RoleError as err:
        return _estimated(spec, f"the store at {store_dir} cannot hold its roles yet ({err})")


def _counted(spec: StudySpec, store: Store) -> EvalRecords:
    roles = assign_roles(spec, store.meta)
    by_role = {
        "probe set": roles.probe_train,
        "probe validation": roles.probe_val,
        "ID test": roles.id_test,
        "OOD sets": _union(roles.ood.values()),
        "tasks": _union(tr.probed_rows for tr in roles.tasks.values()),
    }
    seen, counts = np.empty(0, np.int64), {}
    for name in ROLES:
        new = np.setdiff1d(by_role[name], seen)
        counts[name], seen = len(new), np.union1d(seen, new)
    scratch = {
        name: len(tr.test) + (0 if tr.task.kind == "regression" else len(tr.val))
        for name, tr in roles.tasks.items()
    }
    return EvalRecords(counts, scratch, exact=True)


def _union(row_sets) -> np.ndarray:
    rows = [np.asarray(r, np.int64) for r in row_sets]
    return np.unique(np.concatenate(rows)) if rows else np.empty(0, np.int64)


def _estimated(spec: StudySpec, why: str) -> EvalRecords:
    data, ev = spec.data, spec.eval
    notes = [f"evaluation records estimated from the spec ({why})"]
    id_test = ev.test_records
    if data.source == "synthetic":
        id_test = min(id_test or data.n_records, round(data.n_records * data.test_fraction))
    elif id_test is None:
        id_test = 0
        notes.append(f"ID test: the test split of {data.id_site}, unknown without the store")
    ood = 0
    for name in data.ood_sites:
        size, within = _size_of(spec, name)
        if within in data.ood_sites:
            continue  # its records are those of another OOD set
        if size is None:
            notes.append(f"OOD set {name}: size unknown without the store, not counted")
        ood += size or 0
    tasks = sum(_task_records(task) for task in spec.tasks if not _in_ood(spec, task))
    roles = {
        "probe set": ev.probe_records,
        "probe validation": ev.probe_val_records,
        "ID test": id_test,
        "OOD sets": ood,
        "tasks": tasks,
    }
    scratch = {
        t.name: t.test_records + (0 if t.kind == "regression" else t.val_records)
        for t in spec.tasks
    }
    return EvalRecords(roles, scratch, exact=False, notes=notes)


def _size_of(spec: StudySpec, name: str) -> tuple[int | None, str | None]:
    """(records, the source it is a site of) of an OOD set or task source named ``name``."""
    for src in spec.data.ingest:
        if src.store_name == name:
            return PUBLISHED_RECORDS.get(src.kind), None
    for src in spec.data.ingest:
        cinc = src.kind == "cinc2021" or (src.kind == "cinc2020" and name != "Chapman-Ningbo")
        if cinc and name in CINC_SITE_RECORDS:
            return CINC_SITE_RECORDS[name], src.store_name
    if spec.data.source == "synthetic" and name in SITES:
        return spec.data.n_ood_records, None
    return None, None


def _in_ood(spec: StudySpec, task: TaskSpec) -> bool:
    """Whether a task's records are all in an OOD set (its source, or the source it is in)."""
    ood = spec.data.ood_sites
    return task.source in ood or _size_of(spec, task.source)[1] in ood


def _task_records(task: TaskSpec) -> int:
    """A task's largest probed D_F subset, validation and test sets."""
    return task.d_f[-1] + task.val_records + task.test_records
