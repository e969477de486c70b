"""Turn a source's recording into the canonical record, or say why it cannot be one.

The canonical record is ``(12, n_samples)`` float32 millivolts, leads in ``schema.LEADS``
order, at the store's sampling rate. Steps, in order:

1. sampling rate: finite and within 50..20000 Hz, else ``impossible_fs``;
2. leads by name (case, spaces and the usual synonyms such as ``DI``/``MLI``, ``AVR``,
   ``-aVR`` handled); a missing III, aVR, aVL or aVF is derived from I and II by Einthoven's
   and Goldberger's laws; otherwise ``wrong_lead_count`` / ``unknown_lead``;
3. physical units to mV (``V``, ``mV``, ``uV``/``µV``);
4. checks on the source samples: ``nan``, ``implausible_amplitude`` and every lead flat
   reject the record; single flat or saturated leads are flagged (kept, and named in the
   ``flags`` metadata column) unless ``reject_flagged``;
5. optional zero-phase Butterworth band-pass;
6. resampling with a polyphase FIR filter (Kaiser window, scipy's ``resample_poly``), which
   low-pass filters below the new Nyquist frequency before decimating;
7. crop or zero-pad to ``n_samples`` (centred by default, as CODE pads its tracings).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from fractions import Fraction

import numpy as np
from scipy import signal as sps

from ecgscale.data.schema import LEADS
from ecgscale.data.sources.base import RawRecord, Rejection

_SYNONYMS: dict[str, str] = {
    **{lead.upper(): lead for lead in LEADS},
    "DI": "I",
    "DII": "II",
    "DIII": "III",
    "LEADI": "I",
    "LEADII": "II",
    "LEADIII": "III",
    "MLI": "I",
    "MLII": "II",
    "MLIII": "III",
    "1": "I",
    "2": "II",
    "3": "III",
    "-AVR": "aVR",
}
_UNIT_TO_MV: dict[str, float] = {"mV": 1.0, "V": 1000.0, "uV": 1e-3, "µV": 1e-3, "μV": 1e-3}
_LIMB_DERIVED = {
    "III": lambda s: s["II"] - s["I"],
    "aVR": lambda s: -(s["I"] + s["II"]) / 2,
    "aVL": lambda s: s["I"] - s["II"] / 2,
    "aVF": lambda s: s["II"] - s["I"] / 2,
}


@dataclass(frozen=True)
class Target:
    """The canonical form and the rules for reaching it."""

    fs: float
    n_samples: int
    align: str = "center"
    """where a longer record is cropped and a shorter one padded: "center" or "start"."""
    min_seconds: float = 2.0
    """records shorter than this (after removing source padding) are rejected."""
    bandpass: tuple[float, float] | None = None
    """(low, high) Hz for a 4th-order zero-phase Butterworth band-pass; None = off."""
    flat_ptp_mv: float = 0.01
    """a lead whose peak-to-peak amplitude is below this is flat."""
    reject_flagged: bool = False
    """reject records with a flat or saturated lead instead of flagging them."""
    saturation_s: float = 0.1
    """a lead stuck at its maximum or minimum (in runs of 3+ samples) this long in all is
    saturated."""
    max_abs_mv: float = 30.0
    """a record whose median lead peak-to-peak exceeds this is implausible (units?)."""

    def __post_init__(self) -> None:
        if not (math.isfinite(self.fs) and self.fs > 0):
            raise ValueError(f"sampling rate (--fs) must be positive, got {self.fs:g}")
        if int(self.n_samples) != self.n_samples or self.n_samples < 1:
            raise ValueError(f"samples per record (--n-samples) must be >= 1, got {self.n_samples}")
        if self.align not in ("center", "start"):
            raise ValueError(f"align must be 'center' or 'start', got {self.align!r}")
        if not self.min_seconds >= 0:
            raise ValueError(f"--min-seconds must be >= 0, got {self.min_seconds:g}")
        if self.bandpass is not None:
            low, high = self.bandpass
            if not 0 < low < high < self.fs / 2:
                raise ValueError(
                    f"--bandpass {low:g},{high:g}: needs 0 < LOW < HIGH < {self.fs / 2:g} Hz (half "
                    f"the store's {self.fs:g} Hz)"
                )


def canonical_lead(name: str) -> str | None:
    """The standard lead a source's lead name denotes, or None."""
    key = re.sub(r"[\s_.]", "", name).upper()
    key = key.removeprefix("LEAD") if key.removeprefix("LEAD") in _SYNONYMS else key
    return _SYNONYMS.get(key)


def _reject(rec: RawRecord, reason: str, detail: str) -> Rejection:
    return Rejection(rec.record_id, rec.file, reason, detail)


def _arrange_leads(rec: RawRecord) -> np.ndarray | Rejection:
    signal = np.asarray(rec.signal, dtype=np.float64)
    if signal.ndim != 2 or signal.shape[0] != len(rec.leads):
        return _reject(
            rec,
            "header_mismatch",
            f"{len(rec.leads)} lead names but signal of shape {signal.shape}",
        )
    rows: dict[str, np.ndarray] = {}
    for name, row in zip(rec.leads, signal, strict=True):
        lead = canonical_lead(name)
        if lead is None:
            return _reject(rec, "unknown_lead", f"lead {name!r} is not a standard 12-lead name")
        if lead in rows:
            return _reject(rec, "header_mismatch", f"lead {lead} appears twice")
        rows[lead] = -row if name.strip().startswith("-") else row
    missing = [lead for lead in LEADS if lead not in rows]
    if missing and {"I", "II"} <= rows.keys() and set(missing) <= _LIMB_DERIVED.keys():
        for lead in missing:
            rows[lead] = _LIMB_DERIVED[lead](rows)
        missing = []
    if missing:
        return _reject(
            rec,
            "wrong_lead_count",
            f"{len(rec.leads)} signals; missing {', '.join(missing)}",
        )
    return np.stack([rows[lead] for lead in LEADS])


def _time_stuck(hit: np.ndarray, min_run: int = 3) -> np.ndarray:
    """Per row of boolean ``hit``, the samples in runs of at least ``min_run`` True values."""
    windows = np.ones(hit.shape[:-1] + (hit.shape[-1] - min_run + 1,), dtype=bool)
    for k in range(min_run):
        windows &= hit[..., k : hit.shape[-1] - min_run + 1 + k]
    covered = np.zeros_like(hit)
    for k in range(min_run):
        covered[..., k : k + windows.shape[-1]] |= windows
    return covered.sum(axis=-1)


def _hard_problem(x: np.ndarray, target: Target) -> tuple[str, str] | None:
    """A problem that makes the record unusable."""
    if not np.isfinite(x).all():
        bad = np.flatnonzero(~np.isfinite(x).all(axis=1))
        return "nan", f"non-finite samples in {', '.join(LEADS[i] for i in bad)}"
    ptp = np.ptp(x, axis=1)
    if (ptp < target.flat_ptp_mv).all():
        return "flat_lead", f"all 12 leads flat (peak-to-peak below {target.flat_ptp_mv} mV)"
    if np.median(ptp) > target.max_abs_mv:
        return "implausible_amplitude", f"median peak-to-peak {np.median(ptp):.3g} mV"
    return None


def _lead_flags(x: np.ndarray, fs: float, target: Target) -> dict[str, str]:
    """Leads that are flat or saturated: ``{"flat_lead": "V1,V2", "saturated": "III"}``."""
    flat = np.ptp(x, axis=1) < target.flat_ptp_mv
    limit = max(5, round(target.saturation_s * fs))
    at_max = _time_stuck(x == x.max(axis=1, keepdims=True))
    at_min = _time_stuck(x == x.min(axis=1, keepdims=True))
    saturated = [LEADS[i] for i in np.flatnonzero((np.maximum(at_max, at_min) >= limit) & ~flat)]
    flags = {
        "flat_lead": ",".join(LEADS[i] for i in np.flatnonzero(flat)),
        "saturated": ",".join(saturated),
    }
    return {k: v for k, v in flags.items() if v}


def resample(x: np.ndarray, fs_from: float, fs_to: float) -> np.ndarray:
    """Resample along the last axis with an anti-aliasing polyphase FIR filter."""
    if fs_from == fs_to:
        return x
    ratio = Fraction(fs_to / fs_from).limit_denominator(1000)
    return sps.resample_poly(x, ratio.numerator, ratio.denominator, axis=-1, padtype="line")


def fit_length(x: np.ndarray, n: int, align: str) -> np.ndarray:
    """Crop or zero-pad the last axis to ``n`` samples, centred or from the start."""
    length = x.shape[-1]
    if length >= n:
        start = (length - n) // 2 if align == "center" else 0
        return x[..., start : start + n]
    out = np.zeros(x.shape[:-1] + (n,), dtype=x.dtype)
    start = (n - length) // 2 if align == "center" else 0
    out[..., start : start + length] = x
    return out


def harmonize(rec: RawRecord, target: Target) -> tuple[np.ndarray, str] | Rejection:
    """The canonical ``(12, n_samples)`` float32 mV array of ``rec`` and its lead flags, or why
    there is none.

    Flags name flat and saturated leads (``"flat_lead:V1,V2;saturated:III"``, empty when
    none): such records are kept unless ``target.reject_flagged``; a record with every lead
    flat is always rejected.
    """
    fs = float(rec.fs) if rec.fs is not None else math.nan
    if not (math.isfinite(fs) and 50 <= fs <= 20_000):
        return _reject(rec, "impossible_fs", f"sampling rate {rec.fs!r} Hz")
    if rec.units not in _UNIT_TO_MV:
        return _reject(rec, "header_mismatch", f"unknown physical unit {rec.units!r}")
    x = _arrange_leads(rec)
    if isinstance(x, Rejection):
        return x
    if x.shape[1] < target.min_seconds * fs:
        seconds = x.shape[1] / fs
        return _reject(rec, "too_short", f"{seconds:.2f} s, shorter than {target.min_seconds} s")
    x = x * _UNIT_TO_MV[rec.units]
    problem = _hard_problem(x, target)
    if problem:
        return _reject(rec, *problem)
    flags = _lead_flags(x, fs, target)
    if flags and target.reject_flagged:
        reason, leads = next(iter(flags.items()))
        return _reject(rec, reason, f"{reason.replace('_', ' ')} in {leads.replace(',', ', ')}")
    if target.bandpass is not None:
        sos = sps.butter(4, target.bandpass, btype="bandpass", fs=fs, output="sos")
        x = sps.sosfiltfilt(sos, x, axis=-1)
    x = resample(x, fs, target.fs)
    flag_text = ";".join(f"{reason}:{leads}" for reason, leads in flags.items())
    return fit_length(x, target.n_samples, target.align).astype(np.float32), flag_text
