"""Any WFDB folder (``*.hea`` below it, signals in any format ``wfdb`` reads) plus a labels table.

The optional labels table is a CSV with one row per record, matched on ``id_column`` against
the record id (the header's file stem, e.g. ``00001_lr``; where headers in different folders
share a stem, the path below the folder without it, ``p1/ecg``). A column named exactly like a
canonical label (``1dAVb``, ``RBBB``, ``LBBB``, ``SB``, ``AF``, ``ST``) annotates it;
``label_map`` names the column of any other (``{"AF": "afib"}``, which wins over a column
``AF``); labels neither name is -1 (not annotated). A table that annotates no label warns, and
one that gives nothing at all (no label, patient, age or sex column) is an error. Label cells
read 1/0, true/false, yes/no (any case); an empty cell is -1.

Sex (``sex_column``): with ``male_value``, a cell equal to it (compared as text, any case) is
male, any other non-empty cell female. Without it only M/F/male/female are understood; a
numeric coding must be declared with ``male_value``, because datasets disagree (PTB-XL's 0 is
male, CODE's ``is_male`` 1 is male). Patient ids (``patient_column``) that are integers are
kept, others are hashed to a stable integer; without the column each record is its own patient.

With a table, a recording without a row is rejected as ``no_labels`` and a row without a
recording as ``no_recording`` (both found while scanning, see :meth:`scan_rejections`).
Without a table every label is -1.
"""

from __future__ import annotations

import math
import re
import warnings
from collections.abc import Iterator
from functools import cached_property
from pathlib import Path
from typing import Any

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
from ecgscale.data.sources.wfdb_common import (
    batches,
    find_headers,
    parse_sex,
    read_wfdb_record,
    record_ids,
    records_root,
)

_TRUE = {"1", "1.0", "true", "t", "yes", "y"}
_FALSE = {"0", "0.0", "false", "f", "no", "n"}
_INTEGER = re.compile(r"^-?\d+(\.0*)?$")


@register_source
class WfdbFolderSource(Source):
    """A folder of WFDB records, optionally labelled by a CSV table."""

    kind = "wfdb"
    description = "Any WFDB folder (recursive *.hea) plus an optional labels CSV"

    def __init__(
        self,
        path: Path | str,
        *,
        labels: Path | str | None = None,
        id_column: str = "record",
        label_map: dict[str, str] | None = None,
        patient_column: str | None = None,
        age_column: str | None = None,
        sex_column: str | None = None,
        male_value: str | int | None = None,
    ) -> None:
        unknown = sorted(set(label_map or {}) - set(LABELS))
        if unknown:
            raise ValueError(f"label_map keys {unknown} are not labels {list(LABELS)}")
        columns = (label_map, patient_column, age_column, sex_column, male_value)
        if labels is None and any(c is not None for c in columns):
            raise ValueError("label_map and the *_column options need a labels table (labels=...)")
        super().__init__(
            path,
            labels=None if labels is None else str(Path(labels).resolve()),
            id_column=id_column,
            label_map=None if label_map is None else dict(label_map),
            patient_column=patient_column,
            age_column=age_column,
            sex_column=sex_column,
            male_value=male_value,
        )
        self.labels = None if labels is None else Path(labels)
        self.id_column = id_column
        self.label_map = dict(label_map or {})
        self.patient_column = patient_column
        self.age_column = age_column
        self.sex_column = sex_column
        self.male_value = male_value

    def units(self) -> list[Unit]:
        return batches(self._scan[0])

    def scan_rejections(self) -> list[Rejection]:
        return self._scan[1]

    def read(self, unit: Unit) -> Iterator[RawRecord | Rejection]:
        for rel, record_id, meta in unit.payload:
            yield read_wfdb_record(records_root(self.path), rel, record_id, **meta)

    @cached_property
    def _scan(self) -> tuple[list[tuple[str, str, dict[str, Any]]], list[Rejection]]:
        """(header path, record id, metadata) per record to read, and records/rows that do not
        pair up."""
        ids = record_ids(find_headers(self.path))
        if self.labels is None:
            unlabelled = {"labels": {label: -1 for label in LABELS}}
            return [(rel, record_id, unlabelled) for rel, record_id in ids.items()], []
        table = self._table()
        rows, rejections = [], []
        for rel, record_id in ids.items():
            if record_id in table:
                rows.append((rel, record_id, table[record_id]))
            else:
                detail = f"no row with {self.id_column} = {record_id!r} in {self.labels}"
                rejections.append(Rejection(record_id, rel, "no_labels", detail))
        for record_id in sorted(set(table) - set(ids.values())):
            detail = f"no {record_id}.hea below {self.path}"
            rejections.append(Rejection(record_id, str(self.labels), "no_recording", detail))
        return rows, rejections

    def _table(self) -> dict[str, dict[str, Any]]:
        """Record id → RawRecord metadata (patient, age, sex, labels) from the labels table."""
        if not self.labels.is_file():
            raise SourceError(f"{self.labels}: labels table not found")
        table = pd.read_csv(self.labels, dtype=str)
        columns = list(table.columns)
        label_map = {label: label for label in LABELS if label in columns} | self.label_map
        wanted = [self.id_column, *label_map.values()]
        wanted += [c for c in (self.patient_column, self.age_column, self.sex_column) if c]
        missing = [c for c in dict.fromkeys(wanted) if c not in columns]
        if missing:
            raise SourceError(f"{self.labels}: columns {missing} missing")
        if not label_map:
            self._no_label(columns)
        ids = table[self.id_column].str.strip()
        if ids.isna().any() or ids.duplicated().any():
            bad = ids[ids.isna() | ids.duplicated()].iloc[0]
            raise SourceError(f"{self.labels}: {self.id_column} {bad!r} empty or repeated")
        out = {}
        for record_id, (_, row) in zip(ids, table.iterrows(), strict=True):
            try:
                out[record_id] = self._meta(row, label_map)
            except ValueError as e:
                raise SourceError(f"{self.labels}: row {record_id!r}: {e}") from e
        return out

    def _no_label(self, columns: list[str]) -> None:
        """A table that annotates no label: a warning, or a SourceError if it gives nothing at
        all (no patient, age or sex column either)."""
        names = ", ".join(LABELS)
        listed = f"columns: {', '.join(columns)}"
        if not any((self.patient_column, self.age_column, self.sex_column)):
            raise SourceError(
                f"{self.labels}: maps nothing: no column is named like a label ({names}) and no "
                f"label_map or patient/age/sex column is given ({listed})"
            )
        warnings.warn(
            f"{self.labels}: no column is named like a label ({names}) and no label_map is "
            f"given: every label is n/a ({listed})",
            stacklevel=3,
        )

    def _meta(self, row: pd.Series, label_map: dict[str, str]) -> dict[str, Any]:
        labels = {label: -1 for label in LABELS}
        labels.update({label: parse_flag(row[col]) for label, col in label_map.items()})
        meta: dict[str, Any] = {"labels": labels}
        if self.patient_column:
            meta["patient_id"] = parse_patient(row[self.patient_column])
        if self.age_column:
            meta["age"] = parse_number(row[self.age_column])
        if self.sex_column:
            meta["is_male"] = self._sex(row[self.sex_column])
        return meta

    def _sex(self, value: Any) -> bool | None:
        if self.male_value is None:
            try:
                return parse_sex(value)
            except ValueError as e:
                raise ValueError(f"{e}; give male_value for a coded sex column") from e
        if _missing(value):
            return None
        return _text(value) == _text(self.male_value)


def _missing(value: Any) -> bool:
    return (
        value is None or (isinstance(value, float) and math.isnan(value)) or not str(value).strip()
    )


def _text(value: Any) -> str:
    """A cell or option as comparable text: stripped, lower case, ``1.0`` → ``1``."""
    text = str(value).strip().lower()
    return text.split(".")[0] if _INTEGER.match(text) else text


def parse_flag(value: Any) -> int:
    """A label cell: 1 (1/true/yes), 0 (0/false/no) or -1 (empty)."""
    if _missing(value):
        return -1
    text = str(value).strip().lower()
    if text in _TRUE:
        return 1
    if text in _FALSE:
        return 0
    raise ValueError(f"label value {value!r} is not 1/0, true/false, yes/no or empty")


def parse_patient(value: Any) -> int | None:
    """A patient id: integers kept, other text hashed to a stable integer, empty → None."""
    if _missing(value):
        return None
    text = str(value).strip()
    return int(_text(text)) if _INTEGER.match(text) else patient_from_record(text)


def parse_number(value: Any) -> float:
    """A numeric cell (e.g. age) as float; empty → NaN."""
    if _missing(value):
        return math.nan
    try:
        return float(value)
    except ValueError as e:
        raise ValueError(f"{value!r} is not a number") from e
