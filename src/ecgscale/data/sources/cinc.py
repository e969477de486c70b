"""PhysioNet/CinC Challenge 2020 and 2021: WFDB headers with MATLAB ``.mat`` signals (``val``).

Headers are parsed by :func:`~ecgscale.data.sources.wfdb_common.parse_header`, not by
``wfdb``, which refuses the 2020-era record lines that name the ``.mat`` file and put the
date before the time (``E00009.mat 12 500 5000 05-May-2020 14:50:55``; the 2021 release
keeps them for Georgia). Signals are ``val`` of the ``.mat`` file (``scipy.io.loadmat``),
scaled by each signal line's ADC gain and baseline: ``(val - baseline) / gain``.

Known gain errors: the 2020 release gives Georgia (``E``) records 4880/mV and PTB-XL
(``HR``) records 200/mV; the 2021 release gives both 1000/mV, with stored values of the same
range. Read at the 2020 gains, Georgia lead II spans ~0.1–0.6 mV and PTB-XL ~5–8 mV peak to
peak; at 1000/mV both are in the usual 0.5–3 mV (and PTB-XL's own files use 1000/mV). With
``fix_2020_gains`` (the default) exactly those two gains of those two sites are read as
1000/mV; every other gain is taken from the header.

Labels: the six CODE labels from the ``#Dx:`` SNOMED CT codes. Every challenge record lists
all its diagnoses, so a label whose codes are absent is 0; a header without ``#Dx`` codes
is unannotated (-1). ``#Age:`` (``NaN`` when unknown) and ``#Sex:`` (Male/Female/M/F) give
age and sex; the site is the challenge's source database, from the record-id prefix.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterator
from functools import cached_property
from pathlib import Path

import numpy as np
import scipy.io

from ecgscale.data.schema import LABELS
from ecgscale.data.sources.base import RawRecord, Rejection, Source, Unit, register_source
from ecgscale.data.sources.wfdb_common import (
    Header,
    HeaderError,
    batches,
    common_units,
    find_headers,
    header_problem,
    parse_header,
    parse_sex,
    records_root,
)

SNOMED_TO_LABEL = {
    "270492004": "1dAVb",
    "59118001": "RBBB",
    "713427006": "RBBB",
    "164909002": "LBBB",
    "733534002": "LBBB",
    "426177001": "SB",
    "164889003": "AF",
    "427084000": "ST",
}
SITES = {
    "A": "CPSC",
    "Q": "CPSC-Extra",
    "I": "INCART",
    "S": "PTB",
    "HR": "PTB-XL",
    "E": "Georgia",
    "JS": "Chapman-Ningbo",
}
"""Record-id prefix → source database of the challenge."""
GAINS_2020 = {"Georgia": 4880.0, "PTB-XL": 200.0}
"""ADC gains (per mV) that the 2020 release wrote in error; the 2021 release has 1000."""
GAIN_FIXED = 1000.0
VAL_BYTES = 2
"""Bytes per sample of the challenge's ``val`` (int16)."""


def parse_age(text: str | None) -> float:
    """``#Age:`` in years; NaN for ``NaN``, ``Unknown``, empty or negative values."""
    try:
        age = float(text)
    except (TypeError, ValueError):
        return math.nan
    return age if math.isfinite(age) and age >= 0 else math.nan


def parse_header_sex(text: str | None) -> bool | None:
    """``#Sex:`` as is_male; None when missing or not Male/Female/M/F."""
    try:
        return parse_sex(text)
    except ValueError:
        return None


def parse_dx(text: str | None) -> list[str]:
    """The SNOMED CT codes of a ``#Dx:`` value (comma-separated; spaces tolerated)."""
    return [code for code in re.split(r"[,;\s]+", text or "") if code]


def dx_labels(codes: list[str]) -> dict[str, int]:
    """The six CODE labels from SNOMED CT codes: 1 if listed, else 0; all -1 without codes."""
    if not codes:
        return {label: -1 for label in LABELS}
    present = {SNOMED_TO_LABEL[c] for c in codes if c in SNOMED_TO_LABEL}
    return {label: int(label in present) for label in LABELS}


def site_of(record_id: str) -> str | None:
    """The challenge's source database from the record-id prefix (the prefix if unknown)."""
    prefix = re.match(r"[A-Za-z]*", record_id).group()
    return SITES.get(prefix, prefix or None)


@register_source
class CincSource(Source):
    """A PhysioNet/CinC Challenge 2021 folder, searched recursively for ``*.hea`` + ``.mat``."""

    kind = "cinc2021"
    description = "PhysioNet/CinC Challenge 2021 (WFDB .hea + MATLAB .mat, #Dx SNOMED CT)"
    extra_columns = {"dx": "string"}

    def __init__(self, path: Path | str, *, fix_2020_gains: bool = True) -> None:
        super().__init__(path, fix_2020_gains=fix_2020_gains)
        self.fix_2020_gains = fix_2020_gains

    def units(self) -> list[Unit]:
        return batches(self._headers)

    def read(self, unit: Unit) -> Iterator[RawRecord | Rejection]:
        for rel in unit.payload:
            try:
                yield self._read_one(rel)
            except Exception as e:  # a reader yields rejections, never raises
                yield Rejection(Path(rel).stem, rel, "unreadable", f"{type(e).__name__}: {e}")

    @cached_property
    def _headers(self) -> list[str]:
        return find_headers(self.path)

    def _read_one(self, rel: str) -> RawRecord | Rejection:
        record_id = Path(rel).stem
        site = site_of(record_id)

        def reject(reason: str, detail: str) -> Rejection:
            return Rejection(record_id, rel, reason, detail)

        try:
            head = parse_header((records_root(self.path) / rel).read_text(errors="replace"))
        except (OSError, HeaderError) as e:
            return reject("unreadable", f"header: {e}")
        if problem := header_problem(head):
            return reject(*problem)
        val = self._val((records_root(self.path) / rel).parent, head)
        if isinstance(val, tuple):
            return reject(*val)
        gains = np.array([self._gain(s.gain, site) for s in head.signals])[:, None]
        baselines = np.array([s.baseline for s in head.signals])[:, None]
        dx = parse_dx(head.comments.get("dx"))
        return RawRecord(
            record_id=record_id,
            signal=((val - baselines) / gains).astype(np.float32),
            fs=float(head.fs),
            leads=[s.name for s in head.signals],
            file=rel,
            units=common_units([s.units for s in head.signals]),
            age=parse_age(head.comments.get("age")),
            is_male=parse_header_sex(head.comments.get("sex")),
            labels=dx_labels(dx),
            site=site,
            extras={"dx": ",".join(dx)},
        )

    def _val(self, folder: Path, head: Header) -> np.ndarray | tuple[str, str]:
        """``val`` of the record's ``.mat`` file ``(n_sig, n_samples)``, or (reason, detail)."""
        files = {s.file for s in head.signals}
        if len(files) != 1:
            return "header_mismatch", f"signals in files {sorted(files)}"
        name = files.pop()
        path = folder / name
        if not name.endswith(".mat") or not path.is_file():
            return "unreadable", f"signal file {name} missing or not .mat"
        try:
            val = scipy.io.loadmat(path, variable_names=["val"])["val"]
        except Exception as e:  # scipy raises many types on damaged files
            size = head.n_sig * (head.n_samples or 0) * VAL_BYTES
            reason = "truncated" if path.stat().st_size < size else "unreadable"
            return reason, f"{name}: {type(e).__name__}: {e}"
        if val.ndim != 2 or val.shape[0] != head.n_sig:
            return "header_mismatch", f"val is {val.shape}, header has {head.n_sig} signals"
        n = head.n_samples or val.shape[1]
        if val.shape[1] != n:
            reason = "truncated" if val.shape[1] < n else "header_mismatch"
            return reason, f"val has {val.shape[1]} samples, header says {n}"
        return val.astype(np.float64)

    def _gain(self, gain: float, site: str | None) -> float:
        if self.fix_2020_gains and GAINS_2020.get(site) == gain:
            return GAIN_FIXED
        return gain


@register_source
class Cinc2020Source(CincSource):
    """A PhysioNet/CinC Challenge 2020 folder (same layout as 2021; Georgia header quirk)."""

    kind = "cinc2020"
    description = "PhysioNet/CinC Challenge 2020 (WFDB .hea + MATLAB .mat, #Dx SNOMED CT)"
