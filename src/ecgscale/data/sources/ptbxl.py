"""PTB-XL: WFDB records at 100 and 500 Hz plus ``ptbxl_database.csv`` and ``scp_statements.csv``.

Labels count an SCP code when it appears in a record's ``scp_codes``, **whatever its
likelihood**: rhythm statements (SBRAD, AFIB, STACH) carry likelihood 0 (26 of their 27
occurrences in the sample), so any likelihood threshold would drop nearly all of them.
The six CODE labels are 1 when their code is present (``1AVB→1dAVb, CRBBB→RBBB,
CLBBB→LBBB, SBRAD→SB, AFIB→AF, STACH→ST``), else 0. A superclass column (NORM, MI, STTC,
CD, HYP) is 1 when at least one *diagnostic* statement (``diagnostic == 1`` in
``scp_statements.csv``) of that ``diagnostic_class`` is present, as in the publisher's
example code; it is a per-record flag, so a record with IMI and ASMI counts once for MI.
On ``shared/data/ptbxl-sample`` (ecg_id 1–500) this gives the README's records per code
(1AVB 10, CRBBB 8, CLBBB 8, SBRAD 9, AFIB 13, STACH 5) and NORM 297, MI 73, STTC 96, CD 78,
HYP 40 records; the README's superclass numbers (NORM 297, MI 88, STTC 109, CD 88, HYP 45)
count diagnostic statements, not records, and no per-record rule reaches them.

Ages of 89 and over are coded 300 in PTB-XL and become 90. ``sex`` is 0 for male and 1 for
female; ``patient_id`` (a float in the CSV) becomes an int. The publisher's recommended
split is folds 1–8 train, 9 validation, 10 test.
"""

from __future__ import annotations

import ast
import math
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
    register_source,
)
from ecgscale.data.sources.wfdb_common import batches, read_wfdb_record

SCP_TO_LABEL = {
    "1AVB": "1dAVb",
    "CRBBB": "RBBB",
    "CLBBB": "LBBB",
    "SBRAD": "SB",
    "AFIB": "AF",
    "STACH": "ST",
}
SUPERCLASSES = ("NORM", "MI", "STTC", "CD", "HYP")
AGE_CODED_OLD = 300
"""PTB-XL's code for ages of 89 and over."""
AGE_OLD = 90.0
SITE = "PTB-XL"
DATABASE = "ptbxl_database.csv"
STATEMENTS = "scp_statements.csv"


@register_source
class PtbxlSource(Source):
    """A PTB-XL folder; ``rate`` (100 or 500 Hz) picks ``records100/`` or ``records500/``."""

    kind = "ptbxl"
    description = "PTB-XL (WFDB records100/records500 + ptbxl_database.csv)"
    extra_columns = {
        "strat_fold": "int8",
        **{name: "int8" for name in SUPERCLASSES},
        "ecg_id": "int64",
        "scp_codes": "string",
    }

    def __init__(self, path: Path | str, *, rate: int = 500) -> None:
        if rate not in (100, 500):
            raise ValueError(f"PTB-XL rate must be 100 or 500 Hz, not {rate!r}")
        super().__init__(path, rate=rate)
        self.rate = rate

    def units(self) -> list[Unit]:
        return batches(self._scan[0])

    def scan_rejections(self) -> list[Rejection]:
        return self._scan[1]

    def read(self, unit: Unit) -> Iterator[RawRecord | Rejection]:
        for row in unit.payload:
            yield read_wfdb_record(
                self.path,
                row["file"],
                row["record_id"],
                patient_id=row["patient_id"],
                age=row["age"],
                is_male=row["is_male"],
                labels=row["labels"],
                site=SITE,
                extras=row["extras"],
            )

    def split(self, record: RawRecord) -> str | None:
        fold = record.extras.get("strat_fold")
        return None if fold is None else fold_split(int(fold))

    @cached_property
    def _scan(self) -> tuple[list[dict[str, Any]], list[Rejection]]:
        """Rows to read (one dict per record, sorted by ecg_id) and rows without recordings."""
        table, diagnostic = self._tables()
        column = "filename_hr" if self.rate == 500 else "filename_lr"
        rows, rejections = [], []
        for rec in table.sort_values("ecg_id").to_dict("records"):
            file = f"{rec[column]}.hea"
            record_id = Path(rec[column]).name
            if not (self.path / file).is_file():
                rejections.append(
                    Rejection(record_id, file, "no_recording", f"ecg_id {rec['ecg_id']}: no {file}")
                )
                continue
            try:
                codes = parse_scp_codes(rec["scp_codes"])
            except ValueError as e:
                rejections.append(Rejection(record_id, file, "unreadable", str(e)))
                continue
            rows.append(_row(rec, record_id, file, codes, diagnostic))
        return rows, rejections

    def _tables(self) -> tuple[pd.DataFrame, dict[str, str]]:
        """The database table and diagnostic statement → superclass."""
        for name in (DATABASE, STATEMENTS):
            if not (self.path / name).is_file():
                raise SourceError(f"{self.path}: not a PTB-XL folder ({name} missing)")
        table = pd.read_csv(self.path / DATABASE)
        needed = {"ecg_id", "patient_id", "age", "sex", "scp_codes", "strat_fold"}
        needed |= {"filename_lr", "filename_hr"}
        missing = sorted(needed - set(table.columns))
        if missing:
            raise SourceError(f"{self.path / DATABASE}: columns {missing} missing")
        statements = pd.read_csv(self.path / STATEMENTS, index_col=0)
        diagnostic = statements[statements["diagnostic"] == 1]["diagnostic_class"]
        return table, {code: cls for code, cls in diagnostic.items() if cls in SUPERCLASSES}


def fold_split(fold: int) -> str:
    """The publisher's recommended split of a ``strat_fold``: 1–8 train, 9 val, 10 test."""
    return {9: "val", 10: "test"}.get(fold, "train")


def parse_scp_codes(text: str) -> dict[str, float]:
    """``scp_codes`` (a Python dict literal of code → likelihood) as a dict."""
    try:
        codes = ast.literal_eval(text)
    except (ValueError, SyntaxError) as e:
        raise ValueError(f"scp_codes {text!r} is not a dict literal") from e
    if not isinstance(codes, dict):
        raise ValueError(f"scp_codes {text!r} is not a dict literal")
    return codes


def code_labels(codes: dict[str, float]) -> dict[str, int]:
    """The six CODE labels: 1 when the SCP code is present, at any likelihood."""
    present = {SCP_TO_LABEL[c] for c in codes if c in SCP_TO_LABEL}
    return {label: int(label in present) for label in LABELS}


def superclasses(codes: dict[str, float], diagnostic: dict[str, str]) -> dict[str, int]:
    """1 per superclass with at least one diagnostic statement present, at any likelihood."""
    present = {diagnostic[c] for c in codes if c in diagnostic}
    return {name: int(name in present) for name in SUPERCLASSES}


def ptbxl_age(age: float) -> float:
    """Age in years: PTB-XL's 300 (89 and over) becomes 90; missing stays NaN."""
    if age is None or not math.isfinite(age):
        return math.nan
    return AGE_OLD if age == AGE_CODED_OLD else float(age)


def _row(
    rec: dict[str, Any], record_id: str, file: str, codes: dict[str, float], diagnostic: dict
) -> dict[str, Any]:
    patient, sex = rec["patient_id"], rec["sex"]
    return {
        "record_id": record_id,
        "file": file,
        "patient_id": int(patient) if pd.notna(patient) else None,
        "age": ptbxl_age(rec["age"]),
        "is_male": bool(sex == 0) if pd.notna(sex) else None,
        "labels": code_labels(codes),
        "extras": {
            "strat_fold": int(rec["strat_fold"]),
            **superclasses(codes, diagnostic),
            "ecg_id": int(rec["ecg_id"]),
            "scp_codes": rec["scp_codes"],
        },
    }
