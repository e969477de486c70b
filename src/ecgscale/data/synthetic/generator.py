"""``generate``: patients, then per chunk the heart and the acquisition, then labels and the
metadata frame."""

from __future__ import annotations

import math
import zlib

import numpy as np
import pandas as pd

from ecgscale.data.schema import INGEST_COLUMNS, LABELS, META_COLUMNS
from ecgscale.data.synthetic.beats import _derive_leads, _render_cardiac
from ecgscale.data.synthetic.cohort import (
    _annotate,
    _draw_patients,
    _draw_records,
    _true_conditions,
)
from ecgscale.data.synthetic.conditions import _RHYTHMS
from ecgscale.data.synthetic.noise import _filter, _fit_length, _noise
from ecgscale.data.synthetic.sites import CONDITIONS, SITES, SiteProfile

EXTRA_COLUMNS: dict[str, str] = {
    "heart_rate": "float64",
    "pr_ms": "float64",
    "qrs_ms": "float64",
    "LVH": "int8",
    "MI": "int8",
    **{f"true_{condition}": "int8" for condition in CONDITIONS},
}
"""Metadata columns added to ``schema.META_COLUMNS``, with their pandas dtypes: the measured
intervals, the annotated unseen-task labels and every condition's truth before annotation noise."""

_CHUNK = 256  # records rendered at once


def generate(
    site: str | SiteProfile,
    n_records: int,
    *,
    fs: float = 100.0,
    n_samples: int = 1000,
    duration_s: float = 10.0,
    seed: int = 0,
    patient_id_start: int = 0,
) -> tuple[np.ndarray, pd.DataFrame]:
    """Generate ``n_records`` synthetic 12-lead ECGs of ``site`` and their metadata.

    Returns float32 signals ``(n_records, 12, n_samples)`` in mV, leads in ``schema.LEADS``
    order: each record is ``duration_s`` long at ``fs`` Hz, centre-cropped or zero-padded
    (CODE-style) to ``n_samples``. The metadata frame has one row per record in the same order,
    with every ``schema.META_COLUMNS`` column and ``EXTRA_COLUMNS``: ``heart_rate`` (mean rate of
    the beats within the ``duration_s`` record, bpm), ``pr_ms`` (NaN without P waves),
    ``qrs_ms``, the annotated ``LVH`` and ``MI``, and ``true_<condition>`` for each of
    ``CONDITIONS``. The label columns (``schema.LABELS``, ``LVH``, ``MI``) hold the annotation,
    which carries the site's ``label_noise``; the ``true_`` columns hold the thresholds of the
    true quantities that the signal shows (e.g. ``true_SB``: sinus and ``heart_rate`` < 60).
    Patient ids run contiguously from ``patient_id_start``; record ids are
    ``f"{site}-s{seed}-{i:07d}"``.

    The output is a deterministic function of the arguments; sites draw independent streams,
    and the metadata and the noise-free ECG do not depend on ``fs`` or ``n_samples``.
    """
    profile = _resolve_site(site)
    _check_arguments(n_records, fs, n_samples, duration_s, seed, patient_id_start)
    key = zlib.crc32(profile.name.encode())  # sites draw independent streams
    rng = np.random.default_rng([seed, key, 0])
    patients = _draw_patients(rng, profile, n_records)
    pidx = np.repeat(np.arange(patients["age"].size), patients["counts"])
    records = _draw_records(rng, profile, patients, pidx)
    signals = np.empty((n_records, 12, n_samples), np.float32)
    heart_rate = np.empty(n_records)
    # Per chunk: stream 1 draws the heart (fs-independent), stream 2 the acquisition noise.
    for c, start in enumerate(range(0, n_records, _CHUNK)):
        rows = slice(start, min(start + _CHUNK, n_records))
        cardiac, heart_rate[rows] = _render_cardiac(
            np.random.default_rng([seed, key, 1, c]),
            patients,
            pidx[rows],
            {k: v[rows] for k, v in records.items()},
            profile.gain,
            fs,
            duration_s,
        )
        noisy = cardiac + _noise(np.random.default_rng([seed, key, 2, c]), profile, cardiac, fs)
        _derive_leads(_fit_length(_filter(noisy, profile, fs), n_samples), signals[rows])
    truth = _true_conditions(patients, pidx, records, heart_rate)
    labels = _annotate(np.random.default_rng([seed, key, 3]), profile.label_noise, truth)
    meta = _metadata(
        profile.name,
        seed,
        patient_id_start,
        fs,
        duration_s,
        patients,
        pidx,
        records,
        heart_rate,
        truth,
        labels,
    )
    return signals, meta


def _resolve_site(site: str | SiteProfile) -> SiteProfile:
    """Look up a site by name, or pass a SiteProfile through."""
    if isinstance(site, SiteProfile):
        return site
    if site not in SITES:
        raise ValueError(f"site: unknown site {site!r}; known sites: {', '.join(SITES)}")
    return SITES[site]


def _check_arguments(
    n_records: int, fs: float, n_samples: int, duration_s: float, seed: int, start: int
) -> None:
    """Raise ValueError naming the first invalid argument of ``generate``."""

    def is_int(value: object, minimum: int) -> bool:
        integer = isinstance(value, int | np.integer) and not isinstance(value, bool)
        return integer and value >= minimum

    def is_positive(value: object) -> bool:
        return isinstance(value, int | float | np.number) and math.isfinite(value) and value > 0

    checks = [
        ("n_records", n_records, is_int(n_records, 1), "an integer >= 1"),
        ("fs", fs, is_positive(fs), "a finite number > 0"),
        ("n_samples", n_samples, is_int(n_samples, 1), "an integer >= 1"),
        ("duration_s", duration_s, is_positive(duration_s), "a finite number > 0"),
        ("seed", seed, is_int(seed, 0), "an integer >= 0"),
        ("patient_id_start", start, is_int(start, 0), "an integer >= 0"),
    ]
    for name, value, ok, need in checks:
        if not ok:
            raise ValueError(f"{name} must be {need}, got {value!r}")
    if round(duration_s * fs) < 1:
        raise ValueError(f"duration_s * fs must give at least one sample, got {duration_s * fs!r}")


def _metadata(
    site: str,
    seed: int,
    start: int,
    fs: float,
    duration_s: float,
    pat: dict[str, np.ndarray],
    pidx: np.ndarray,
    rec: dict[str, np.ndarray],
    heart_rate: np.ndarray,
    truth: dict[str, np.ndarray],
    labels: dict[str, np.ndarray],
) -> pd.DataFrame:
    """The metadata frame: ``META_COLUMNS`` (but those ingest assigns) then
    ``EXTRA_COLUMNS``, one row per record."""
    n = pidx.size
    af = rec["rhythm"] == _RHYTHMS.index("AF")
    frame = pd.DataFrame(
        {
            "record_id": [f"{site}-s{seed}-{i:07d}" for i in range(n)],
            "patient_id": start + pidx,
            "source": "synthetic",
            "site": site,
            "fs_origin": float(fs),
            "duration_s": float(duration_s),
            "age": rec["age"],
            "is_male": pat["male"][pidx],
            **{label: labels[label] for label in LABELS},
            "heart_rate": heart_rate,
            "pr_ms": np.where(af, np.nan, 1000.0 * pat["pr"][pidx]),
            "qrs_ms": 1000.0 * pat["qrs"][pidx],
            "LVH": labels["LVH"],
            "MI": labels["MI"],
            **{f"true_{c}": truth[c] for c in CONDITIONS},
        }
    )
    return frame.astype(
        {c: t for c, t in (META_COLUMNS | EXTRA_COLUMNS).items() if c not in INGEST_COLUMNS}
    )
