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
    "fs_origin": "float64",
    "age": "float64",
    "is_male": "bool",
    **{label: "int8" for label in LABELS},
}
"""Required metadata columns and their pandas dtypes; sources may add more (unseen-task targets)."""
