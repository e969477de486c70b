"""Pieces shared by the WFDB-based readers: header parsing, checked reads, batching, fields.

Headers are parsed here, tolerantly: only the signal count, sampling rate and sample count of
the record line are used, so the 2020 challenge's ``E00009.mat 12 500 5000 05-May-2020
14:50:55`` (a file name and the date before the time, which ``wfdb`` refuses) parses too.
Records whose signals are one file in format 16 (PTB-XL and most 12-lead sets) are decoded
here with numpy, ``(digital - baseline) / gain`` as ``wfdb`` does; every other record
(other formats, several files, samples per frame, skew, multi-segment) is read by
``wfdb.rdrecord``. The split is for speed: ``wfdb``'s header parser costs ~10 ms a record.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import wfdb

from ecgscale.data.sources.base import RawRecord, Rejection, SourceError, Unit

BATCH = 64
"""Records per unit."""

FS_MIN, FS_MAX = 50.0, 20000.0

UNIT_NAMES = {"mv": "mV", "uv": "uV", "µv": "uV", "μv": "uV", "v": "V"}
"""Voltage units as headers spell them (any case) → the spelling harmonisation expects."""

BYTES_PER_SAMPLE = {
    "8": 1.0,
    "16": 2.0,
    "24": 3.0,
    "32": 4.0,
    "61": 2.0,
    "80": 1.0,
    "160": 2.0,
    "212": 1.5,
    "310": 4 / 3,
    "311": 4 / 3,
}
"""Bytes per sample of the uncompressed WFDB signal formats (for truncation checks)."""

DEFAULT_GAIN = 200.0
"""WFDB's ADC gain (per physical unit) when the field is missing or zero."""
INVALID_16 = -32768
"""The format-16 sample value that marks an invalid sample (read as NaN)."""

_FORMAT = re.compile(r"^(\d+)(?:x(\d+))?(?::(\d+))?(?:\+(\d+))?$")
_GAIN = re.compile(r"^([-+]?[\d.]+(?:[eE][-+]?\d+)?)(?:\((-?\d+)\))?(?:/(\S+))?$")
_SEX_WORDS = {"m": True, "male": True, "man": True, "f": False, "female": False, "woman": False}
_MISSING_WORDS = {"", "nan", "na", "n/a", "none", "unknown", "?"}


class HeaderError(ValueError):
    """A header line that cannot be parsed."""


@dataclass
class SignalSpec:
    """One signal line of a header."""

    file: str
    fmt: str
    gain: float
    baseline: int
    units: str
    name: str
    samples_per_frame: int = 1
    skew: int = 0
    byte_offset: int = 0


@dataclass
class Header:
    """A parsed header: record line, signal lines and ``#key: value`` comments (keys lower case)."""

    record: str
    n_sig: int
    fs: float | None
    n_samples: int | None
    signals: list[SignalSpec]
    comments: dict[str, str] = field(default_factory=dict)


@dataclass
class Signals:
    """A record's samples ``(n_leads, n_samples)`` in physical ``units``, as a reader returns."""

    signal: np.ndarray
    fs: float
    leads: list[str]
    units: str


def parse_header(text: str) -> Header:
    """Parse a WFDB header; tolerant of what follows the sample count on the record line."""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    comments = dict(_comment(line) for line in lines if line.startswith("#"))
    body = [line for line in lines if not line.startswith("#")]
    if not body:
        raise HeaderError("no record line")
    fields = body[0].split()
    try:
        n_sig = int(fields[1])
        fs = float(re.split(r"[/(]", fields[2])[0]) if len(fields) > 2 else None
        n_samples = int(fields[3]) if len(fields) > 3 else None
    except (IndexError, ValueError) as e:
        raise HeaderError(f"record line {body[0]!r}: {e}") from e
    signals = [_signal(line, i) for i, line in enumerate(body[1:])]
    return Header(fields[0], n_sig, fs, n_samples, signals, comments)


def _comment(line: str) -> tuple[str, str]:
    key, _, value = line.lstrip("#").partition(":")
    return key.strip().lower(), value.strip()


def _signal(line: str, index: int) -> SignalSpec:
    fields = line.split(maxsplit=8)
    fmt = _FORMAT.match(fields[1]) if len(fields) > 1 else None
    if not fmt:
        raise HeaderError(f"signal line {line!r}: no valid format")
    gain, baseline, units = DEFAULT_GAIN, None, "mV"
    if len(fields) > 2:
        match = _GAIN.match(fields[2])
        if not match:
            raise HeaderError(f"signal line {line!r}: gain {fields[2]!r}")
        gain = float(match[1]) or DEFAULT_GAIN
        baseline = None if match[2] is None else int(match[2])
        units = match[3] or units
    try:
        adc_zero = int(fields[4]) if len(fields) > 4 else 0
    except ValueError as e:
        raise HeaderError(f"signal line {line!r}: ADC zero {fields[4]!r}") from e
    return SignalSpec(
        file=fields[0],
        fmt=fmt[1],
        gain=gain,
        baseline=adc_zero if baseline is None else baseline,
        units=units,
        name=fields[8] if len(fields) > 8 else f"signal{index}",
        samples_per_frame=int(fmt[2] or 1),
        skew=int(fmt[3] or 0),
        byte_offset=int(fmt[4] or 0),
    )


def header_problem(head: Header) -> tuple[str, str] | None:
    """(reason, detail) when the header contradicts itself or has no usable rate, else None."""
    if head.n_sig < 1:
        return "header_mismatch", f"record line says {head.n_sig} signals"
    if len(head.signals) != head.n_sig:
        detail = f"record line says {head.n_sig} signals, header has {len(head.signals)} lines"
        return "header_mismatch", detail
    if problem := fs_problem(head.fs):
        return "impossible_fs", problem
    if common_units([s.units for s in head.signals]) is None:
        return "header_mismatch", f"signals in different units {[s.units for s in head.signals]}"
    return None


def fs_problem(fs: float | None) -> str | None:
    """Why ``fs`` is not a usable sampling rate, or None when it is."""
    if fs is None or not math.isfinite(fs) or not FS_MIN <= fs <= FS_MAX:
        return f"sampling rate {fs} Hz (expected {FS_MIN:g}..{FS_MAX:g})"
    return None


def common_units(units: Sequence[str | None]) -> str | None:
    """The one unit of all signals (``mV``/``uV``/``V`` normalised; WFDB's default mV), or None."""
    names = {UNIT_NAMES.get((u or "mV").strip().lower(), (u or "mV").strip()) for u in units}
    return names.pop() if len(names) == 1 else None


def read_wfdb(root: Path, rel_header: str) -> Signals | Rejection:
    """Read one WFDB record, turning every failure into a :class:`Rejection`."""
    try:
        return _read(root / rel_header, rel_header)
    except Exception as e:  # a reader yields rejections, never raises
        detail = f"{type(e).__name__}: {e}"
        return Rejection(Path(rel_header).stem, rel_header, "unreadable", detail)


def record_ids(headers: Sequence[str]) -> dict[str, str]:
    """Each header's record id: its file stem, or, where headers in different folders share a
    stem (one recording per patient folder, each ``ecg.hea``), its path below the folder
    without the suffix (``p1/ecg``), so that no two records get one id."""
    stems = Counter(Path(rel).stem for rel in headers)
    return {
        rel: Path(rel).stem if stems[Path(rel).stem] == 1 else Path(rel).with_suffix("").as_posix()
        for rel in headers
    }


def read_wfdb_record(
    root: Path, rel_header: str, record_id: str, **meta: Any
) -> RawRecord | Rejection:
    """One WFDB record as a :class:`RawRecord` that carries ``meta`` (the reader's patient,
    labels, site, extras ...), or the :class:`Rejection` of :func:`read_wfdb`."""
    signals = read_wfdb(root, rel_header)
    if isinstance(signals, Rejection):
        return replace(signals, record_id=record_id)
    return RawRecord(
        record_id=record_id,
        signal=signals.signal,
        fs=signals.fs,
        leads=signals.leads,
        file=rel_header,
        units=signals.units,
        **meta,
    )


def _read(header: Path, rel: str) -> Signals | Rejection:
    record_id = header.stem
    if not header.is_file():
        return Rejection(record_id, rel, "unreadable", "header file missing")
    try:
        head = parse_header(header.read_text(errors="replace"))
    except HeaderError as e:
        return Rejection(record_id, rel, "unreadable", f"header: {e}")
    if "/" in head.record:  # multi-segment record: wfdb reads and checks it
        return _read_with_wfdb(header, rel)
    if problem := header_problem(head) or _file_problem(header.parent, head):
        return Rejection(record_id, rel, *problem)
    if not _plain_16(head):
        return _read_with_wfdb(header, rel)
    return Signals(
        signal=_decode_16(header.parent, head),
        fs=float(head.fs),
        leads=[s.name for s in head.signals],
        units=common_units([s.units for s in head.signals]),
    )


def _plain_16(head: Header) -> bool:
    """All signals in one format-16 file, one sample per frame, no skew, known length."""
    if not head.signals or not head.n_samples:
        return False
    first = head.signals[0]
    return all(
        (s.file, s.fmt, s.samples_per_frame, s.skew, s.byte_offset)
        == (first.file, "16", 1, 0, first.byte_offset)
        for s in head.signals
    )


def _decode_16(folder: Path, head: Header) -> np.ndarray:
    """Physical samples ``(n_sig, n_samples)`` of a plain format-16 record (float32)."""
    first = head.signals[0]
    count = head.n_sig * head.n_samples
    digital = np.fromfile(folder / first.file, dtype="<i2", count=count, offset=first.byte_offset)
    digital = digital.reshape(head.n_samples, head.n_sig).T
    gains = np.array([s.gain for s in head.signals])[:, None]
    baselines = np.array([s.baseline for s in head.signals])[:, None]
    signal = ((digital - baselines) / gains).astype(np.float32)
    signal[digital == INVALID_16] = np.nan
    return signal


def _file_problem(folder: Path, head: Header) -> tuple[str, str] | None:
    """A missing or (for uncompressed formats) too short signal file, as (reason, detail)."""
    for name in dict.fromkeys(s.file for s in head.signals):
        path = folder / name
        if not path.is_file():
            return "unreadable", f"signal file {name} missing"
        specs = [s for s in head.signals if s.file == name]
        if not head.n_samples or specs[0].fmt not in BYTES_PER_SAMPLE:
            continue
        frame = sum(s.samples_per_frame for s in specs)
        need = specs[0].byte_offset + math.ceil(
            head.n_samples * frame * BYTES_PER_SAMPLE[specs[0].fmt]
        )
        size = path.stat().st_size
        if size < need:
            return "truncated", f"{name}: {size} bytes, header implies {need}"
    return None


def _read_with_wfdb(header: Path, rel: str) -> Signals | Rejection:
    record_id = header.stem
    try:
        record = wfdb.rdrecord(str(header.with_suffix("")), physical=True)
    except Exception as e:  # wfdb raises many types
        return Rejection(record_id, rel, "unreadable", f"wfdb: {type(e).__name__}: {e}")
    if problem := fs_problem(record.fs):
        return Rejection(record_id, rel, "impossible_fs", problem)
    signal = np.asarray(record.p_signal, dtype=np.float32).T
    if record.sig_len and signal.shape[1] < record.sig_len:
        detail = f"{signal.shape[1]} samples, header says {record.sig_len}"
        return Rejection(record_id, rel, "truncated", detail)
    units = common_units(record.units)
    if units is None:
        detail = f"signals in different units {sorted(set(record.units))}"
        return Rejection(record_id, rel, "header_mismatch", detail)
    return Signals(signal, float(record.fs), [str(n) for n in record.sig_name], units)


def batches(items: Sequence[Any], size: int = BATCH) -> list[Unit]:
    """Consecutive batches of ``items`` as units keyed ``00000``, ``00001``, ..."""
    starts = range(0, len(items), size)
    return [
        Unit(key=f"{i:05d}", n=len(items[s : s + size]), payload=list(items[s : s + size]))
        for i, s in enumerate(starts)
    ]


def records_root(path: Path) -> Path:
    """The folder that :func:`find_headers`' paths are relative to: ``path``, or the folder of
    the one record ``path`` names by its header (``.../00001_lr.hea``)."""
    return path.parent if _names_a_header(path) else path


def _names_a_header(path: Path) -> bool:
    return path.suffix.lower() == ".hea" and not path.is_dir()


def find_headers(root: Path) -> list[str]:
    """Paths (relative to :func:`records_root`, POSIX, sorted) of every ``*.hea`` below the
    folder ``root``, or the one header ``root`` is."""
    if _names_a_header(root):
        if not root.is_file():
            raise SourceError(f"{root}: WFDB header not found")
        return [root.name]
    if not root.is_dir():
        raise SourceError(f"{root}: folder not found")
    found = sorted(p.relative_to(root).as_posix() for p in root.rglob("*.hea") if p.is_file())
    if not found:
        raise SourceError(f"{root}: no WFDB header (*.hea) found in this folder or below")
    return found


def parse_sex(value: object) -> bool | None:
    """``True`` for male, ``False`` for female from M/F/male/female (any case); None if missing.

    Raises ValueError for anything else (e.g. ``1``/``0``, whose meaning differs by dataset).
    """
    text = "" if value is None else str(value).strip().lower()
    if text in _SEX_WORDS:
        return _SEX_WORDS[text]
    if text in _MISSING_WORDS:
        return None
    raise ValueError(f"sex {value!r} is neither M/F/male/female nor missing")
