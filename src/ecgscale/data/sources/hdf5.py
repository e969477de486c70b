"""Any HDF5 file of 12-lead tracings: one signals dataset, one row per record.

Options:

* ``dataset``: the signals dataset (default ``tracings``, CODE's name), ``(n, T, leads)`` or
  ``(n, leads, T)``; the layout is told by which axis has as many entries as ``leads`` (an
  error when both or neither do);
* ``fs``: the sampling rate in Hz; needed unless the dataset or the file has an ``fs`` or
  ``sampling_rate`` attribute;
* ``ids``: a 1-D dataset of record ids (e.g. ``exam_id``), one per row; without it the record
  of row ``k`` is ``<file stem>#<k>``;
* ``leads``: the lead names along the lead axis (default :data:`~ecgscale.data.schema.LEADS`);
  harmonisation reorders them and derives III, aVR, aVL and aVF from I and II when missing;
* ``gain``: the factor to millivolts (default 1.0: the values are mV; 0.001 for µV).

The file is read ``READ_ROWS`` rows at a time, one unit per ``unit_size`` rows, never whole. It
has no labels (all -1) and no patients (each record is its own patient); rows are kept as they
are (no padding is stripped).
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np

from ecgscale.data.schema import LABELS, LEADS
from ecgscale.data.sources.base import (
    RawRecord,
    Rejection,
    Source,
    SourceError,
    Unit,
    register_source,
)
from ecgscale.data.sources.code15 import H5_ERRORS, read_blocks

FS_ATTRIBUTES = ("fs", "sampling_rate")
"""Attributes of the dataset, then of the file, that give the sampling rate."""


@dataclass(frozen=True)
class _Rows:
    """A unit's payload: rows ``start..stop`` of the signals dataset and how to read them."""

    start: int
    stop: int
    fs: float
    leads_first: bool
    """True for ``(n, leads, T)``, False for ``(n, T, leads)``."""


@register_source
class Hdf5Source(Source):
    """One HDF5 file: a signals dataset ``(n, T, leads)`` or ``(n, leads, T)``, optional ids."""

    kind = "hdf5"
    description = "Any HDF5 file: signals (n, T, 12) or (n, 12, T), -o fs=HZ, optional ids"

    def __init__(
        self,
        path: Path | str,
        *,
        dataset: str = "tracings",
        fs: float | None = None,
        ids: str | None = None,
        leads: list[str] | None = None,
        gain: float = 1.0,
        unit_size: int = 1024,
    ) -> None:
        if unit_size < 1:
            raise ValueError(f"unit_size must be >= 1, got {unit_size}")
        if isinstance(leads, str):  # -o leads=I,II,... as well as -o leads=[I,II,...]
            leads = leads.split(",")
        leads = list(LEADS) if leads is None else [str(lead).strip() for lead in leads]
        fs, gain = None if fs is None else float(fs), float(gain)
        if not (math.isfinite(gain) and gain > 0):
            raise ValueError(f"gain must be a positive factor to millivolts, got {gain:g}")
        super().__init__(
            path, dataset=dataset, fs=fs, ids=ids, leads=leads, gain=gain, unit_size=unit_size
        )
        self.dataset = dataset
        self.fs = fs
        self.ids = ids
        self.leads = leads
        self.gain = gain
        self.unit_size = unit_size

    def units(self) -> list[Unit]:
        """One unit per ``unit_size`` rows; SourceError if the file's layout cannot be read."""
        if not self.path.is_file():
            raise SourceError(f"{self.path}: file not found")
        try:
            file = h5py.File(self.path, "r")
        except H5_ERRORS as error:
            raise SourceError(f"{self.path}: cannot be read as HDF5: {error}") from error
        with file:
            signals = self._signals(file)
            fs = self._rate(file, signals)
            leads_first = self._leads_first(signals)
            n_rows = len(signals)
            if self.ids is not None:
                self._check_ids(file, n_rows)
        units = []
        for start in range(0, n_rows, self.unit_size):
            stop = min(n_rows, start + self.unit_size)
            units.append(
                Unit(f"rows-{start:09d}", stop - start, _Rows(start, stop, fs, leads_first))
            )
        return units

    def read(self, unit: Unit) -> Iterator[RawRecord | Rejection]:
        """The unit's rows in order; a row (or a file) that cannot be read is ``unreadable``."""
        rows: _Rows = unit.payload
        try:
            file = h5py.File(self.path, "r")
        except H5_ERRORS as error:
            yield from self._unreadable(rows, str(error))
            return
        with file:
            try:
                ids, signals = self._ids(file, rows), file[self.dataset]
            except H5_ERRORS as error:
                yield from self._unreadable(rows, str(error))
                return
            for row, tracing in read_blocks(signals, rows.start, rows.stop):
                record_id = ids[row - rows.start]
                if isinstance(tracing, str):
                    yield Rejection(record_id, self.path.name, "unreadable", tracing)
                else:
                    yield self._record(record_id, tracing, rows)

    def _record(self, record_id: str, tracing: np.ndarray, rows: _Rows) -> RawRecord:
        signal = tracing if rows.leads_first else tracing.T
        return RawRecord(
            record_id=record_id,
            signal=np.ascontiguousarray(signal, dtype=np.float32) * np.float32(self.gain),
            fs=rows.fs,
            leads=list(self.leads),
            file=self.path.name,
            labels={label: -1 for label in LABELS},
        )

    def _signals(self, file: h5py.File) -> h5py.Dataset:
        """The signals dataset; SourceError unless it is 3-D."""
        signals = file.get(self.dataset)
        if not isinstance(signals, h5py.Dataset):
            found = ", ".join(sorted(file)) or "nothing"
            raise SourceError(f"{self.path}: no dataset {self.dataset!r} (has: {found})")
        if signals.ndim != 3:
            raise SourceError(
                f"{self.path}: {self.dataset!r} has shape {signals.shape}, expected "
                f"(n, T, {len(self.leads)}) or (n, {len(self.leads)}, T)"
            )
        return signals

    def _leads_first(self, signals: h5py.Dataset) -> bool:
        """Whether the lead axis comes before time; SourceError if that cannot be told."""
        n = len(self.leads)
        first, last = signals.shape[1] == n, signals.shape[2] == n
        if first == last:
            problem = "both axes have" if first else "no axis has"
            raise SourceError(
                f"{self.path}: {self.dataset!r} has shape {signals.shape}: {problem} {n} "
                "entries, so the lead axis cannot be told (give -o leads=[...] with the names)"
            )
        return first

    def _rate(self, file: h5py.File, signals: h5py.Dataset) -> float:
        """The ``fs`` option, else an ``fs``/``sampling_rate`` attribute; SourceError if none."""
        if self.fs is not None:
            return self.fs
        for attrs in (signals.attrs, file.attrs):
            for name in FS_ATTRIBUTES:
                if name in attrs:
                    return float(np.asarray(attrs[name]).reshape(-1)[0])
        raise SourceError(
            f"{self.path}: sampling rate unknown (no fs or sampling_rate attribute); give -o fs=HZ"
        )

    def _check_ids(self, file: h5py.File, n_rows: int) -> None:
        """SourceError unless the ids dataset is 1-D with one id per signals row."""
        ids = file.get(self.ids)
        if not isinstance(ids, h5py.Dataset) or ids.ndim != 1 or len(ids) != n_rows:
            shape = ids.shape if isinstance(ids, h5py.Dataset) else "absent"
            raise SourceError(
                f"{self.path}: ids dataset {self.ids!r} must be 1-D with {n_rows} rows "
                f"(one per row of {self.dataset!r}); it is {shape}"
            )

    def _ids(self, file: h5py.File, rows: _Rows) -> list[str]:
        """The record ids of the unit's rows."""
        if self.ids is None:
            return [self._default_id(row) for row in range(rows.start, rows.stop)]
        ids = file[self.ids]
        if h5py.check_string_dtype(ids.dtype) is not None:
            ids = ids.asstr()
        return [str(value) for value in ids[rows.start : rows.stop].tolist()]

    def _default_id(self, row: int) -> str:
        return f"{self.path.stem}#{row}"

    def _unreadable(self, rows: _Rows, detail: str) -> Iterator[Rejection]:
        """Every row of the unit as ``unreadable`` (the file or its ids failed to read)."""
        for row in range(rows.start, rows.stop):
            yield Rejection(self._default_id(row), self.path.name, "unreadable", detail)
