"""The canonical record form shared by every stage: lead order, label space, metadata columns."""

from __future__ import annotations

LEADS: tuple[str, ...] = (
    "I",
    "II",
    "III",
    "aVR",
    "aVL",
    "aVF",
    "V1",
    "V2",
    "V3",
    "V4",
    "V5",
    "V6",
)
"""Lead order of every canonical record (rows of the ``(12, T)`` array)."""

LABELS: tuple[str, ...] = ("1dAVb", "RBBB", "LBBB", "SB", "AF", "ST")
"""CODE's six pre-training labels, in column order."""

META_COLUMNS: dict[str, str] = {
    "record_id": "string",
    "patient_id": "int64",
    "source": "string",
    "site": "string",
    "split": "string",
    "fs_origin": "float64",
    "duration_s": "float64",
    "flags": "string",
    "age": "float64",
    "is_male": "boolean",
    **{label: "int8" for label in LABELS},
}
"""Metadata columns of every stored record and their pandas dtypes; sources add more (e.g.
unseen-task targets). ``split`` is train/val/test; ``duration_s`` the length at the source;
``flags`` the leads found flat or saturated (``"flat_lead:V1;saturated:III"``, empty if none);
``age`` may be NaN and ``is_male`` missing; a label is 1, 0, or -1 where the source does not
annotate it."""

INGEST_COLUMNS: tuple[str, ...] = ("split", "flags")
"""Columns of ``META_COLUMNS`` that ingest fills in, not the source."""
