"""What every source reader yields, and the registry of readers.

A *source* is one dataset on disk in its publisher's format (a CODE-15% folder, a PTB-XL
folder, a challenge folder, ...). A reader splits it into *units* — independent pieces of
work, e.g. a chunk of an HDF5 part or a batch of WFDB records — and reads one unit at a time
into :class:`RawRecord` objects in the source's own sampling rate, length, lead order and
units. :mod:`ecgscale.data.harmonize` turns those into the canonical form. A record that
cannot be read is yielded as a :class:`Rejection` with a reason from :data:`REASONS`, never
raised: ingest puts it in the store's quarantine table and goes on.
"""

from __future__ import annotations

import hashlib
import inspect
import math
from abc import ABC, abstractmethod
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from ecgscale import __version__
from ecgscale.data.schema import LABELS

REASONS: dict[str, str] = {
    "unreadable": "the file cannot be read or parsed",
    "truncated": "the signal file holds fewer samples than its header says",
    "header_mismatch": "the header contradicts itself or the signal file (e.g. signal count)",
    "impossible_fs": "sampling rate missing, not finite or outside 50..20000 Hz",
    "wrong_lead_count": "the 12 standard leads cannot be formed from the signals present",
    "unknown_lead": "a lead name that is not one of the 12 standard leads or a synonym",
    "nan": "NaN or infinite samples",
    "flat_lead": "a lead with no signal (peak-to-peak below the flat threshold)",
    "saturated": "a lead stuck at its extreme value (amplifier saturation or clipping)",
    "implausible_amplitude": "amplitudes far outside the physiological range (wrong units?)",
    "too_short": "shorter than the shortest duration the store accepts",
    "no_labels": "a recording without a row in the labels table",
    "no_recording": "a labels row without a recording",
    "missing_exam_id": "an HDF5 part without exam ids, so its tracings cannot be joined",
    "duplicate": "a record id seen before in this source",
}
"""Reasons a record is quarantined (the ``reason`` column of the quarantine table)."""


@dataclass
class RawRecord:
    """One recording as a source holds it, before harmonisation.

    ``signal`` is ``(n_leads, n_samples)`` in physical units ``units`` (``"mV"``, ``"uV"``
    or ``"V"``) with the gains of the source's header already applied; ``leads`` names its
    rows as the source does. ``labels`` maps each of :data:`~ecgscale.data.schema.LABELS` to
    1 (present), 0 (absent) or -1 (the source does not annotate it). ``patient_id`` is
    ``None`` when the source has no patient ids (one patient per record is assumed).
    ``extras`` holds source-specific metadata columns (e.g. ``strat_fold``, ``death``,
    PTB-XL superclasses), each declared with its dtype in the reader's ``extra_columns``.
    """

    record_id: str
    signal: np.ndarray
    fs: float
    leads: list[str]
    file: str
    units: str = "mV"
    patient_id: int | None = None
    age: float = math.nan
    is_male: bool | None = None
    labels: dict[str, int] = field(default_factory=dict)
    site: str | None = None
    extras: dict[str, Any] = field(default_factory=dict)


@dataclass
class Rejection:
    """A record that cannot enter the store, with a reason from :data:`REASONS`."""

    record_id: str
    file: str
    reason: str
    detail: str

    def __post_init__(self) -> None:
        if self.reason not in REASONS:
            raise ValueError(f"unknown rejection reason {self.reason!r}")


@dataclass(frozen=True)
class Unit:
    """An independent piece of a source: ingest processes, commits and resumes by unit.

    ``key`` is unique within the source, stable across scans and safe as a file name;
    ``n`` is the number of records the unit is expected to yield (for progress);
    ``payload`` is whatever the reader needs to read it (must pickle).
    """

    key: str
    n: int
    payload: Any = None


class Source(ABC):
    """A dataset in its publisher's format. Subclasses register under ``kind``."""

    kind: ClassVar[str]
    description: ClassVar[str] = ""
    extra_columns: ClassVar[dict[str, str]] = {}
    """Source-specific metadata columns and their pandas dtypes."""

    def __init__(self, path: Path | str, **options: Any) -> None:
        self.path = Path(path)
        self.options = options

    @abstractmethod
    def units(self) -> list[Unit]:
        """Scan the source (names and tables, not signals) into an ordered list of units.

        Problems found while scanning that concern single records (a labels row without a
        recording, ...) are returned by :meth:`scan_rejections`, not raised. A source that
        cannot be read at all (missing folder, no recognisable files) raises
        :class:`SourceError` naming the path and what is missing.
        """

    @abstractmethod
    def read(self, unit: Unit) -> Iterator[RawRecord | Rejection]:
        """Read one unit: a RawRecord or a Rejection per record, in a deterministic order."""

    def scan_rejections(self) -> list[Rejection]:
        """Records found unusable while scanning (after :meth:`units`); default none."""
        return []

    def split(self, record: RawRecord) -> str | None:
        """The record's split when the publisher fixes one (e.g. PTB-XL folds), else None."""
        return None

    def made_by(self) -> dict[str, str]:
        """Which code made this source's records in the store (``made_by.json`` beside them)."""
        return {"ecgscale": __version__}

    def settings(self) -> dict[str, Any]:
        """What identifies this ingest: kind, path and options (stored in ``store.json``)."""
        return {"kind": self.kind, "path": str(self.path.resolve()), "options": self.options}


class SourceError(ValueError):
    """A source folder that cannot be read at all."""


_REGISTRY: dict[str, type[Source]] = {}
"""Readers by kind. The built-in readers are registered by the time this module is imported:
importing it imports its package first, whose ``__init__`` imports every reader."""


def register_source(cls: type[Source]) -> type[Source]:
    """Class decorator: make a reader available under ``cls.kind``."""
    _REGISTRY[cls.kind] = cls
    return cls


def create_source(kind: str, path: Path | str, **options: Any) -> Source:
    """An instance of the reader registered as ``kind``; a SourceError naming the reader and
    the option for an option it does not take, one it needs and lacks, or a bad value."""
    if kind not in _REGISTRY:
        raise SourceError(f"unknown source kind {kind!r} (known: {', '.join(list_sources())})")
    names, needed = source_options(kind)
    if names is not None:
        takes = f"its options: {', '.join(names)}" if names else "it takes none"
        if unknown := sorted(set(options) - set(names)):
            raise SourceError(f"{kind} reader: unknown option(s) {', '.join(unknown)} ({takes})")
        if missing := [name for name in needed if name not in options]:
            raise SourceError(f"{kind} reader: needs option(s) {', '.join(missing)} ({takes})")
    try:
        return _REGISTRY[kind](path, **options)
    except (TypeError, ValueError) as error:
        given = ", ".join(f"{k}={v!r}" for k, v in options.items()) or "none"
        raise SourceError(f"{kind} reader (options: {given}): {error}") from error


def source_options(kind: str) -> tuple[list[str] | None, list[str]]:
    """The options (``-o KEY=VALUE``) the reader ``kind`` takes, None when it takes any, and
    those it needs."""
    params = list(inspect.signature(_REGISTRY[kind].__init__).parameters.values())[2:]
    if any(p.kind is p.VAR_KEYWORD for p in params):
        return None, []
    named = [p for p in params if p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD)]
    return [p.name for p in named], [p.name for p in named if p.default is p.empty]


def list_sources() -> list[str]:
    """Registered source kinds."""
    return sorted(_REGISTRY)


def describe_sources() -> dict[str, str]:
    """Each registered source kind and its one-line description."""
    return {kind: _REGISTRY[kind].description for kind in list_sources()}


def empty_labels() -> dict[str, int]:
    """All six labels absent (0): the start for sources that list the conditions present."""
    return {label: 0 for label in LABELS}


def patient_from_record(record_id: str) -> int:
    """A stable non-negative 63-bit patient id for sources without patient ids."""
    return int.from_bytes(hashlib.sha256(record_id.encode()).digest()[:8], "little") >> 1
