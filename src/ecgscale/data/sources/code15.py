"""CODE-15% (Ribeiro et al., zenodo.org/records/4916206): HDF5 parts joined to ``exams.csv``.

Layout of a folder::

    exams.csv               exam_id, age, is_male, nn_predicted_age, 1dAVb, RBBB, LBBB, SB, AF,
                            ST, patient_id, normal_ecg, death, timey, trace_file
    exams_part{k}.hdf5      ``tracings`` (N, 4096, 12) float32 and ``exam_id`` (N,) integers

Facts this reader relies on, and where they are stated:

* 400 Hz; leads in the order DI, DII, DIII, AVR, AVL, AVF, V1-V6 (README of
  github.com/antonior92/automatic-ecg-diagnosis and of antonior92/ecg-age-prediction). The names
  are passed as CODE writes them; harmonisation maps the synonyms.
* Units: those READMEs say "scale 1e-4V: so if the signal is in V it should be multiplied by
  1000", which contradicts itself (issue #10 of automatic-ecg-diagnosis); the maintainer's
  answer is to scale an ECG "as millivolts" (issue #3 there), users measure R waves of about 1
  unit (ecg-age-prediction issue #1), and the PhysioNet Challenge 2025 script that converts
  CODE-15% to WFDB writes the values with units mV, unscaled. They are taken as mV, unscaled.
* 7 s and 10 s recordings are centred in 4096 samples with zeros (the zenodo description;
  some records fill all 4096). Leading and trailing samples where all 12 leads are exactly 0
  are stripped here, so harmonisation sees each recording's own length; an all-zero tracing is
  yielded whole (it is harmonisation's to reject as flat).
* Each part ends with one padding row, exam_id 0 and an all-zero tracing (not in the official
  description; stated in several users' loaders, which drop ``[:-1]``, and consistent with
  "all 20001 records in exams_part0.hdf5"). Rows with exam_id 0 and an all-zero tracing are
  skipped silently.

Joins and rejections: a tracing whose exam_id has no ``exams.csv`` row is ``no_labels``; an
exam_id seen before (in an earlier row or part) is ``duplicate``; an ``exams.csv`` row whose
``trace_file`` names a part present in the folder that lacks its exam_id is ``no_recording``.
Rows naming parts that are absent are not errors: users often download only some of the 18
parts. A part without an ``exam_id`` dataset rejects each row as ``missing_exam_id`` (record id
``exams_part3.hdf5#17``); a part that cannot be opened or lacks a ``(N, T, 12)`` ``tracings``
dataset rejects each exam that ``exams.csv`` places in it as ``unreadable`` (or, if none, the
part itself); a block of rows that fails to read is retried row by row, and only the rows that
fail are ``unreadable``.
"""

from __future__ import annotations

import functools
import re
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
    register_source,
)

CODE_FS = 400.0
CODE_LEADS: tuple[str, ...] = (
    "DI",
    "DII",
    "DIII",
    "AVR",
    "AVL",
    "AVF",
    "V1",
    "V2",
    "V3",
    "V4",
    "V5",
    "V6",
)
"""Lead names and order of CODE, CODE-15% and CODE-test tracings (the last axis)."""

CODE_UNITS = "mV"
"""Physical unit of CODE tracings, unscaled (see the module docstring)."""

READ_ROWS = 128
"""Rows read from a ``tracings`` dataset at once (a contiguous slice)."""

H5_ERRORS = (OSError, KeyError, RuntimeError, ValueError)
"""What h5py raises for files, objects or data it cannot read (and layout checks raise)."""

_PART = re.compile(r"exams_part(\d+)\.hdf5")
_EXAM_COLUMNS = ("exam_id", "age", "is_male", *LABELS, "patient_id", "death", "timey")
_FLAGS = {"true": 1, "false": 0, "1": 1, "0": 0, "1.0": 1, "0.0": 0}


def strip_zero_padding(tracing: np.ndarray) -> np.ndarray:
    """``(n_samples, n_leads)`` without the leading and trailing samples where every lead is
    exactly 0; an all-zero tracing is returned whole."""
    active = np.flatnonzero((tracing != 0).any(axis=1))
    if active.size == 0:
        return tracing
    return tracing[active[0] : active[-1] + 1]


def code_signal(tracing: np.ndarray) -> np.ndarray:
    """A CODE tracing ``(n_samples, 12)`` as a ``(12, n)`` float32 signal, padding stripped."""
    return np.ascontiguousarray(strip_zero_padding(tracing).T, dtype=np.float32)


def tracing_rows(file: h5py.File) -> int:
    """Rows of the file's ``tracings`` dataset; ValueError unless it is ``(N, T, 12)``."""
    tracings = file.get("tracings")
    if not isinstance(tracings, h5py.Dataset):
        raise ValueError("no 'tracings' dataset")
    if tracings.ndim != 3 or tracings.shape[2] != len(CODE_LEADS):
        raise ValueError(f"'tracings' has shape {tracings.shape}, expected (N, T, 12)")
    return tracings.shape[0]


def open_tracings(path: Path) -> tuple[h5py.File, h5py.Dataset]:
    """An open CODE HDF5 file and its ``tracings`` dataset; OSError or ValueError (the file
    closed again) if it cannot be read as CODE's."""
    file = h5py.File(path, "r")
    try:
        tracing_rows(file)
        return file, file["tracings"]
    except BaseException:
        file.close()
        raise


def read_blocks(
    tracings: h5py.Dataset, start: int, stop: int
) -> Iterator[tuple[int, np.ndarray | str]]:
    """Rows ``start..stop`` of ``tracings`` as ``(row, tracing)``, read in contiguous blocks of
    ``READ_ROWS``; a row that cannot be read comes as ``(row, error message)``."""
    for a in range(start, stop, READ_ROWS):
        b = min(a + READ_ROWS, stop)
        try:
            block = tracings[a:b]
        except H5_ERRORS:
            yield from (_read_row(tracings, i) for i in range(a, b))
            continue
        yield from zip(range(a, b), block, strict=True)


def _read_row(tracings: h5py.Dataset, row: int) -> tuple[int, np.ndarray | str]:
    """One row of ``tracings``, or the error that reading it raised."""
    try:
        return row, tracings[row]
    except H5_ERRORS as error:
        return row, f"row {row} of 'tracings' cannot be read: {error}"


@dataclass(frozen=True)
class _Slice:
    """A unit's payload: rows ``start..stop`` of one part, or a reason to reject all of them."""

    part: str
    start: int
    stop: int
    problem: str | None = None
    detail: str = ""
    duplicates: frozenset[int] = frozenset()


@register_source
class Code15Source(Source):
    """CODE-15% (or CODE in the same layout): ``exams_part{k}.hdf5`` joined to ``exams.csv``."""

    kind = "code15"
    description = "CODE-15%: HDF5 parts (400 Hz, 4096 x 12, mV) joined to exams.csv by exam_id"
    extra_columns = {
        "exam_id": "int64",
        "death": "boolean",
        "timey": "float64",
        "trace_file": "string",
    }

    def __init__(self, path: Path | str, *, unit_size: int = 1024) -> None:
        if unit_size < 1:
            raise ValueError(f"unit_size must be >= 1, got {unit_size}")
        super().__init__(path, unit_size=unit_size)
        self.unit_size = unit_size
        self._scanned: tuple[list[Unit], list[Rejection]] | None = None

    def units(self) -> list[Unit]:
        """One unit per ``unit_size`` rows of each part, parts in the order of ``k``."""
        return self._scan()[0]

    def scan_rejections(self) -> list[Rejection]:
        """``no_recording`` rows of ``exams.csv`` and rows beyond the shorter of a part's
        ``exam_id`` and ``tracings`` (``header_mismatch``)."""
        return self._scan()[1]

    def read(self, unit: Unit) -> Iterator[RawRecord | Rejection]:
        """The unit's rows in order; never raises for unreadable data."""
        part: _Slice = unit.payload
        if part.problem == "unreadable":
            yield from self._unreadable_part(part)
        elif part.problem == "missing_exam_id":
            for row in range(part.start, part.stop):
                yield Rejection(f"{part.part}#{row}", part.part, "missing_exam_id", part.detail)
        else:
            yield from self._read_rows(part)

    def _exams(self) -> pd.DataFrame:
        """``exams.csv`` indexed by exam_id (loaded once per process and file version)."""
        csv = self.path / "exams.csv"
        if not csv.is_file():
            raise SourceError(f"{self.path}: not a CODE-15% folder: no exams.csv")
        stat = csv.stat()
        return _load_exams(str(csv.resolve()), stat.st_mtime_ns, stat.st_size)

    def _parts(self) -> list[str]:
        """Names of the ``exams_part{k}.hdf5`` files, by ``k``."""
        if not self.path.is_dir():
            raise SourceError(f"{self.path}: CODE-15% folder not found")
        parts = [p.name for p in self.path.iterdir() if _PART.fullmatch(p.name)]
        if not parts:
            raise SourceError(f"{self.path}: not a CODE-15% folder: no exams_part{{k}}.hdf5 files")
        return sorted(parts, key=lambda name: int(_PART.fullmatch(name).group(1)))

    def _scan(self) -> tuple[list[Unit], list[Rejection]]:
        """Units and scan rejections, computed once from the exam ids and shapes."""
        if self._scanned is None:
            parts = self._parts()
            exams = self._exams()
            units: list[Unit] = []
            rejections: list[Rejection] = []
            seen = np.empty(0, np.int64)
            for name in parts:
                try:
                    ids, n_rows = _part_layout(self.path / name)
                except H5_ERRORS as error:
                    expected = int((exams["trace_file"] == name).sum())
                    payload = _Slice(name, 0, 0, "unreadable", f"{name}: {error}")
                    units.append(Unit(f"{Path(name).stem}-unreadable", max(expected, 1), payload))
                    continue
                if ids is None:
                    detail = f"{name} has no 'exam_id' dataset"
                    units += self._slices(name, n_rows, "missing_exam_id", detail)
                    continue
                rejections += _length_mismatch(name, ids, n_rows)
                rejections += _no_recording(name, ids, exams)
                ids = ids[:n_rows]
                duplicates = _duplicates(ids, seen)
                seen = np.union1d(seen, ids)
                units += self._slices(name, ids.size, ids=ids, duplicates=duplicates)
            self._scanned = units, rejections
        return self._scanned

    def _slices(
        self,
        name: str,
        n_rows: int,
        problem: str | None = None,
        detail: str = "",
        *,
        ids: np.ndarray | None = None,
        duplicates: np.ndarray | None = None,
    ) -> list[Unit]:
        """Units of ``unit_size`` rows over a part's ``n_rows`` rows."""
        units = []
        for start in range(0, n_rows, self.unit_size):
            stop = min(start + self.unit_size, n_rows)
            dups = frozenset() if duplicates is None else _within(duplicates, start, stop)
            n = stop - start if ids is None else int((ids[start:stop] != 0).sum())
            payload = _Slice(name, start, stop, problem, detail, dups)
            units.append(Unit(f"{Path(name).stem}-{start:07d}", n, payload))
        return units

    def _unreadable_part(self, part: _Slice) -> Iterator[Rejection]:
        """An ``unreadable`` rejection per exam that exams.csv places in the part, or one."""
        exams = self._exams()
        expected = exams.index[exams["trace_file"] == part.part]
        if expected.size == 0:
            yield Rejection(part.part, part.part, "unreadable", part.detail)
        for exam_id in expected:
            yield Rejection(str(exam_id), part.part, "unreadable", part.detail)

    def _read_rows(self, part: _Slice) -> Iterator[RawRecord | Rejection]:
        """Records of rows ``part.start..part.stop``, read in contiguous blocks."""
        try:
            file, ids, tracings = _open_slice(self.path / part.part, part.start, part.stop)
        except H5_ERRORS as error:
            detail = f"{part.part}: {error}"
            for row in range(part.start, part.stop):
                yield Rejection(f"{part.part}#{row}", part.part, "unreadable", detail)
            return
        with file:
            joined = _Joined(self._exams(), ids)
            for row, tracing in read_blocks(tracings, part.start, part.stop):
                k = row - part.start
                exam_id = int(ids[k])
                record_id = str(exam_id)
                if isinstance(tracing, str):
                    yield Rejection(record_id, part.part, "unreadable", tracing)
                elif exam_id == 0 and not tracing.any():
                    continue  # the padding row that ends every CODE-15% part
                elif row in part.duplicates:
                    detail = f"exam_id {exam_id} (row {row}) was seen in an earlier row or part"
                    yield Rejection(record_id, part.part, "duplicate", detail)
                elif not joined.found[k]:
                    detail = f"exam_id {exam_id} (row {row}) has no row in exams.csv"
                    yield Rejection(record_id, part.part, "no_labels", detail)
                else:
                    yield joined.record(k, record_id, code_signal(tracing), part.part)


class _Joined:
    """The exams.csv rows of a unit's exam ids, as columns indexed like ``ids``."""

    def __init__(self, exams: pd.DataFrame, ids: np.ndarray) -> None:
        rows = exams.reindex(ids)
        self.found = exams.index.get_indexer(ids) >= 0
        self.columns = {c: rows[c].to_numpy(dtype=object) for c in rows.columns}

    def value(self, column: str, k: int) -> object:
        """The column's value for row ``k``, None when missing."""
        value = self.columns[column][k]
        return None if pd.isna(value) else value

    def record(self, k: int, record_id: str, signal: np.ndarray, part: str) -> RawRecord:
        """The RawRecord of row ``k``."""
        patient, age, male = (self.value(c, k) for c in ("patient_id", "age", "is_male"))
        death, timey = self.value("death", k), self.value("timey", k)
        return RawRecord(
            record_id=record_id,
            signal=signal,
            fs=CODE_FS,
            leads=list(CODE_LEADS),
            file=part,
            units=CODE_UNITS,
            patient_id=None if patient is None else int(patient),
            age=float("nan") if age is None else float(age),
            is_male=None if male in (None, -1) else bool(male),
            labels={label: int(self.columns[label][k]) for label in LABELS},
            extras={
                "exam_id": int(record_id),
                "death": None if death in (None, -1) else bool(death),
                "timey": float("nan") if timey is None else float(timey),
                "trace_file": part,
            },
        )


def _open_slice(path: Path, start: int, stop: int) -> tuple[h5py.File, np.ndarray, h5py.Dataset]:
    """An open part, the exam ids of rows ``start..stop`` and its ``tracings`` dataset."""
    file, tracings = open_tracings(path)
    try:
        return file, np.asarray(file["exam_id"][start:stop], np.int64), tracings
    except BaseException:
        file.close()
        raise


def _part_layout(path: Path) -> tuple[np.ndarray | None, int]:
    """A part's exam ids (None without an ``exam_id`` dataset) and ``tracings`` row count."""
    with h5py.File(path, "r") as file:
        n_rows = tracing_rows(file)
        ids = file.get("exam_id")
        if ids is None:
            return None, n_rows
        if not isinstance(ids, h5py.Dataset) or ids.ndim != 1 or ids.dtype.kind not in "iu":
            raise ValueError(f"'exam_id' is not a 1-D integer dataset: {ids}")
        return np.asarray(ids[:], np.int64), n_rows


def _length_mismatch(name: str, ids: np.ndarray, n_rows: int) -> list[Rejection]:
    """``header_mismatch`` rejections for rows beyond the shorter of exam_id and tracings."""
    detail = f"{name}: 'exam_id' has {ids.size} rows but 'tracings' has {n_rows}"
    extra_ids = [str(exam_id) for exam_id in ids[n_rows:] if exam_id != 0]
    extra_rows = [f"{name}#{row}" for row in range(ids.size, n_rows)]
    return [Rejection(rid, name, "header_mismatch", detail) for rid in extra_ids + extra_rows]


def _no_recording(name: str, ids: np.ndarray, exams: pd.DataFrame) -> list[Rejection]:
    """exams.csv rows whose trace_file is this part but whose exam_id it lacks."""
    listed = exams.index[exams["trace_file"] == name].to_numpy()
    missing = listed[~np.isin(listed, ids)]
    detail = f"exams.csv places this exam in {name}, which has no such exam_id"
    return [Rejection(str(exam_id), "exams.csv", "no_recording", detail) for exam_id in missing]


def _duplicates(ids: np.ndarray, seen: np.ndarray) -> np.ndarray:
    """Rows whose non-zero exam id occurs in an earlier row or in ``seen``."""
    first = np.zeros(ids.size, bool)
    first[np.unique(ids, return_index=True)[1]] = True
    return np.flatnonzero((~first | np.isin(ids, seen)) & (ids != 0))


def _within(rows: np.ndarray, start: int, stop: int) -> frozenset[int]:
    """The rows in ``start..stop``."""
    return frozenset(int(row) for row in rows[(rows >= start) & (rows < stop)])


@functools.lru_cache(maxsize=4)
def _load_exams(path: str, mtime_ns: int, size: int) -> pd.DataFrame:
    """exams.csv's columns that the reader uses, indexed by exam_id; flags as -1/0/1 (-1:
    missing); rows without an integer exam_id dropped, a repeated exam_id's first row kept.
    ``mtime_ns`` and ``size`` key the cache to the file's version."""
    wanted = {*_EXAM_COLUMNS, "trace_file"}
    raw = pd.read_csv(path, usecols=lambda column: column in wanted)
    if "exam_id" not in raw.columns:
        raise SourceError(f"{path}: no exam_id column")
    exam_id = pd.to_numeric(raw["exam_id"], errors="coerce")
    raw = raw[exam_id.notna() & (exam_id % 1 == 0)]
    frame = pd.DataFrame(index=pd.Index(exam_id[raw.index].astype(np.int64), name="exam_id"))
    for column in ("age", "timey", "patient_id"):
        values = raw[column] if column in raw.columns else pd.Series(np.nan, raw.index)
        frame[column] = pd.to_numeric(values, errors="coerce").to_numpy()
    frame["patient_id"] = frame["patient_id"].astype("Int64")
    for column in ("is_male", *LABELS, "death"):
        frame[column] = _flags(raw[column]).to_numpy() if column in raw.columns else -1
    frame["trace_file"] = raw["trace_file"].to_numpy() if "trace_file" in raw.columns else None
    return frame[~frame.index.duplicated()]


def _flags(values: pd.Series) -> pd.Series:
    """True/False (or 1/0) values as int8 1/0, anything else -1."""
    if values.dtype == bool:
        return values.astype(np.int8)
    text = values.astype("string").str.strip().str.lower()
    return text.map(_FLAGS).fillna(-1).astype(np.int8)
