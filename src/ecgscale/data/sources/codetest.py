"""CODE-test (Ribeiro et al. 2020, zenodo.org/records/3625006): 827 exams, several annotators.

Layout::

    ecg_tracings.hdf5           ``tracings`` (827, 4096, 12) float32, 400 Hz, no exam ids
    annotations/<annotator>.csv 1dAVb, RBBB, LBBB, SB, AF, ST (0/1); row i <-> tracing i
    attributes.csv              age, sex (M/F); row i <-> tracing i

The annotators are ``gold_standard`` (default), ``cardiologist1``, ``cardiologist2``,
``cardiology_residents``, ``emergency_residents``, ``medical_students`` and ``dnn``; any CSV in
``annotations/`` may be chosen. The tracings file may sit elsewhere (option ``tracings``). The
tracings share CODE-15%'s rate, units (mV), zero padding and lead order (see
:mod:`ecgscale.data.sources.code15`). The dataset's own README lists the limb leads as "DI, DII,
DIII, AVL, AVF, AVR", but the companion code's README gives "DI, DII, DIII, AVR, AVL, AVF" as
the model's input order, and that model is evaluated on these tracings unchanged, so the latter
is used (with the real file, Goldberger's aVR = -(I + II) / 2 settles it). The exams are of
different patients, so each record is its own patient. Every record belongs to the test split.

Rows beyond the labels table are ``no_labels``; label rows beyond the tracings are
``no_recording`` (a scan rejection). A tracings file that cannot be read rejects every label row
as ``unreadable``; attributes rows missing at the end leave age and sex unknown.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np
import pandas as pd

from ecgscale.data.schema import LABELS
from ecgscale.data.sources.base import (
    RawRecord,
    Rejection,
    Source,
    SourceError,
    Unit,
    patient_from_record,
    register_source,
)
from ecgscale.data.sources.code15 import (
    CODE_FS,
    CODE_LEADS,
    CODE_UNITS,
    H5_ERRORS,
    code_signal,
    open_tracings,
    read_blocks,
    tracing_rows,
)


@dataclass(frozen=True)
class _Rows:
    """A unit's payload: tracing rows ``start..stop``, or why none can be read."""

    start: int
    stop: int
    problem: str = ""


@dataclass(frozen=True)
class _Tables:
    """The chosen annotator's labels and the attributes, one row per tracing."""

    labels: pd.DataFrame
    age: np.ndarray
    is_male: np.ndarray


@register_source
class CodeTestSource(Source):
    """CODE-test: ``ecg_tracings.hdf5`` with one annotator's labels and ``attributes.csv``."""

    kind = "codetest"
    description = "CODE-test: 827 exams (400 Hz, 4096 x 12, mV), labels by row, test split"

    def __init__(
        self,
        path: Path | str,
        *,
        annotator: str = "gold_standard",
        tracings: Path | str | None = None,
        unit_size: int = 1024,
    ) -> None:
        if unit_size < 1:
            raise ValueError(f"unit_size must be >= 1, got {unit_size}")
        resolved = None if tracings is None else str(Path(tracings).resolve())
        super().__init__(path, annotator=annotator, tracings=resolved, unit_size=unit_size)
        self.annotator = annotator
        self.unit_size = unit_size
        self.tracings = Path(resolved) if resolved else self.path / "ecg_tracings.hdf5"
        self._tables_cache: _Tables | None = None

    def units(self) -> list[Unit]:
        """One unit per ``unit_size`` tracing rows (a single unit for the real 827)."""
        n_labels = len(self._tables().labels)
        try:
            n_rows = self._n_tracings()
        except H5_ERRORS as error:
            return [Unit("unreadable", n_labels, _Rows(0, n_labels, f"{self.tracings}: {error}"))]
        units = []
        for start in range(0, n_rows, self.unit_size):
            stop = min(start + self.unit_size, n_rows)
            units.append(Unit(f"rows-{start:05d}", stop - start, _Rows(start, stop)))
        return units

    def scan_rejections(self) -> list[Rejection]:
        """Label rows without a tracing (``no_recording``)."""
        n_labels = len(self._tables().labels)
        try:
            n_rows = self._n_tracings()
        except H5_ERRORS:
            return []  # the unreadable unit rejects every label row
        detail = f"{self._labels_file().name} has {n_labels} rows, the tracings {n_rows}"
        return [
            Rejection(_record_id(i), self._labels_file().name, "no_recording", detail)
            for i in range(n_rows, n_labels)
        ]

    def read(self, unit: Unit) -> Iterator[RawRecord | Rejection]:
        """The unit's rows in order; never raises for unreadable data."""
        rows: _Rows = unit.payload
        if rows.problem:
            for i in range(rows.start, rows.stop):
                yield Rejection(_record_id(i), str(self.tracings), "unreadable", rows.problem)
            return
        try:
            file, tracings = open_tracings(self.tracings)
        except H5_ERRORS as error:
            for i in range(rows.start, rows.stop):
                yield Rejection(_record_id(i), str(self.tracings), "unreadable", str(error))
            return
        with file:
            for i, tracing in read_blocks(tracings, rows.start, rows.stop):
                yield self._row(i, tracing)

    def split(self, record: RawRecord) -> str | None:
        """CODE-test is a test set: every record is in the test split."""
        return "test"

    def _row(self, i: int, tracing: np.ndarray | str) -> RawRecord | Rejection:
        """The record of tracing row ``i``, or why it cannot be one."""
        record_id, file = _record_id(i), str(self.tracings)
        if isinstance(tracing, str):
            return Rejection(record_id, file, "unreadable", tracing)
        tables = self._tables()
        if i >= len(tables.labels):
            detail = f"row {i} is beyond the {len(tables.labels)} rows of {self.annotator}.csv"
            return Rejection(record_id, file, "no_labels", detail)
        male = int(tables.is_male[i]) if i < tables.is_male.size else -1
        return RawRecord(
            record_id=record_id,
            signal=code_signal(tracing),
            fs=CODE_FS,
            leads=list(CODE_LEADS),
            file=file,
            units=CODE_UNITS,
            patient_id=patient_from_record(record_id),
            age=float(tables.age[i]) if i < tables.age.size else float("nan"),
            is_male=None if male == -1 else bool(male),
            labels={label: int(tables.labels.at[i, label]) for label in LABELS},
        )

    def _n_tracings(self) -> int:
        """Rows of the tracings file; one of ``H5_ERRORS`` if it cannot be read as CODE's."""
        with h5py.File(self.tracings, "r") as file:
            return tracing_rows(file)

    def _labels_file(self) -> Path:
        return self.path / "annotations" / f"{self.annotator}.csv"

    def _tables(self) -> _Tables:
        """The annotator's labels and the attributes (read once); SourceError if absent."""
        if self._tables_cache is None:
            self._check_files()
            labels = pd.read_csv(self._labels_file())
            for label in LABELS:
                values = labels[label] if label in labels.columns else -1
                labels[label] = pd.to_numeric(values, errors="coerce")
            labels = labels[list(LABELS)].fillna(-1).astype(np.int8)
            attributes = pd.read_csv(self.path / "attributes.csv", dtype=str)
            age = attributes["age"] if "age" in attributes else pd.Series(dtype=str)
            sex = attributes["sex"] if "sex" in attributes else pd.Series(dtype=str)
            male = sex.str.strip().str.upper().map({"M": 1, "F": 0}).fillna(-1)
            self._tables_cache = _Tables(
                labels=labels,
                age=pd.to_numeric(age, errors="coerce").to_numpy(float),
                is_male=male.to_numpy(np.int8),
            )
        return self._tables_cache

    def _check_files(self) -> None:
        """SourceError naming the path and the first file that is missing."""
        if not self.path.is_dir():
            raise SourceError(f"{self.path}: CODE-test folder not found")
        if not self._labels_file().is_file():
            known = sorted(p.stem for p in (self.path / "annotations").glob("*.csv"))
            raise SourceError(
                f"{self.path}: not a CODE-test folder with annotator {self.annotator!r}: "
                f"no annotations/{self.annotator}.csv (annotators here: {known or 'none'})"
            )
        if not (self.path / "attributes.csv").is_file():
            raise SourceError(f"{self.path}: not a CODE-test folder: no attributes.csv")
        if not self.tracings.is_file():
            raise SourceError(
                f"{self.path}: CODE-test tracings not found at {self.tracings} "
                "(download ecg_tracings.hdf5, or give its path as option 'tracings')"
            )


def _record_id(row: int) -> str:
    return f"codetest-{row:03d}"
