"""Synthetic CODE-like 12-lead ECGs from a cardiac-dipole model, with sites for distribution shift.

The project's embedded default dataset. Each beat is the projection of a moving heart vector
(a vectorcardiogram): every wave (a two-part P, septal q, R, terminal s, T, and the components
that conditions add, such as the RBBB terminal R', the notched LBBB R, pathological Q waves or
ST deviation) is a Gaussian bump in time that carries a 3-D direction, with axes x = patient's
left, y = inferior, z = anterior. The dipole is projected on the lead vectors of I, II and
V1-V6 (V-lead positions jittered per record, like electrode placement); III, aVR, aVL and aVF
are then derived from I and II with the Einthoven and Goldberger identities, so these hold to
float32 rounding. Noise is added per electrode (RA, LA, LL, C1-C6) before the leads are formed.

What the labels change, as in real ECGs. Every label is the clinical threshold applied to a
continuous quantity that is drawn with real density on both sides of it, so that borderline
records exist and morphology alone does not give the label away:

* ``1dAVb``: PR interval > 200 ms (and not AF). PR is 200-280 ms in AV block, mostly 200-230;
  otherwise 120-200 ms with a tail up to 199 ms.
* ``RBBB`` / ``LBBB``: QRS >= 120 ms with the block's morphology (120-165 / 120-170 ms, mostly
  near 120-135). RBBB: slurred terminal rightward-anterior force (rsR' in V1-V2, wide S in I and
  V6, secondary T inversion in V1-V3). LBBB: no septal q, broad notched R in I, aVL, V5-V6,
  deep QS in V1, discordant ST-T. A fraction ``SiteProfile.incomplete_bbb`` of the other
  patients has an incomplete block: the same terminal forces, weaker in proportion to the
  conduction delay, with QRS 100-120 ms (mostly close to 120). Normal QRS is 74-116 ms.
* ``SB`` / ``ST``: sinus rhythm with a mean rate (``heart_rate``, measured over the beats of the
  record) below 60 / above 100 bpm. Rates are drawn per record within the rhythm class but
  concentrated toward the threshold (SB 45-60, mostly 52-60; ST 100-145, mostly 100-112; normal
  sinus 60-100 from the patient's resting rate, with clear mass within 5 bpm of each edge); the
  label then follows the measured rate, so records near 60 or 100 bpm may cross over.
* ``AF``: no P waves, 4-9 Hz fibrillatory waves of amplitude from tiny (0.008 mV) to coarse
  (0.08 mV), irregular RR (lognormal, coefficient of variation 0.06-0.30: some AF is almost
  regular) at 60-150 bpm; AF excludes SB, ST and 1dAVb. Sinus records are not all regular
  either: respiratory sinus arrhythmia is marked in some patients (RR CV up to ~0.08), and a
  fraction ``SiteProfile.ectopy`` of sinus records has premature atrial beats (early beat, then
  a less than compensatory pause).
* Two extra conditions for unseen-task evaluation: ``LVH`` (QRS voltage x1.8-2.5, tall R in
  V5-V6 and deep S in V1-V2, lateral ST depression and T inversion) and ``MI`` (an old inferior
  or anterior infarct: pathological Q waves and T inversion in II/III/aVF or V1-V4).

The label columns are the annotator's, not the truth: after the physiology is drawn, each
condition's label is flipped with the site's ``label_noise`` (a false-negative rate among true
positives and a false-positive rate among true negatives, per condition); a false positive that
would break a mutual exclusion below is dropped. The signal follows the true condition, kept in
the ``true_<condition>`` columns.

RBBB and LBBB are mutually exclusive, and so are the rhythms AF, SB and ST. Conduction disease
and AF grow more frequent with age, RBBB and MI with male sex; the risk factors are rescaled so
that the expected prevalence over a generated set equals the site's configured prevalence.
Conduction disease, LVH, MI and morphology (axis, amplitudes, T-wave shape, intervals) belong to
the patient, so records of one patient resemble each other; rhythm is drawn per record, and so
is annotation noise. ``prevalence`` sets the true conditions; the labels' observed prevalence is
``p * (1 - fnr) + (1 - p) * fpr``, within 0.7 percentage points of ``p`` for the built-in sites.

The in-distribution site ``"code"`` uses CODE-like but enriched prevalences (4-8 % per label,
against ~1.5-2.6 % in CODE) so that small demo sets hold enough positives; the OOD sites shift
noise, baseline wander, amplitude, filtering, population, prevalence, ectopy and annotation
noise (each OOD site's annotators are less reliable than CODE's).
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from numpy.lib.stride_tricks import sliding_window_view
from scipy.signal import butter, sosfiltfilt

from ecgscale.data.schema import INGEST_COLUMNS, LABELS, META_COLUMNS

CONDITIONS: tuple[str, ...] = (*LABELS, "LVH", "MI")
"""Every condition the generator draws: CODE's six labels plus two unseen-task targets."""

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


def _uniform_noise(fnr: float, fpr: float) -> dict[str, tuple[float, float]]:
    """The same (false-negative rate, false-positive rate) for every condition."""
    return {condition: (fnr, fpr) for condition in CONDITIONS}


@dataclass(frozen=True)
class SiteProfile:
    """A recording site: device, acquisition conditions and population.

    Attributes:
        name: site name, stored in the ``site`` metadata column.
        noise_mv: standard deviation of white noise per electrode (mV).
        emg_mv: scale of bursty high-frequency muscle (EMG) noise per electrode (mV); its
            standard deviation averages about this, rising about 2x within bursts.
        wander_mv: RMS of baseline wander per electrode (mV).
        wander_hz: (low, high) frequency range of the wander's sinusoids (Hz).
        gain: multiplies the cardiac signal (device calibration and body habitus).
        lowpass_hz: zero-phase 4th-order Butterworth low-pass cutoff, or None; applied only
            when below fs/2.
        highpass_hz: zero-phase 2nd-order Butterworth high-pass cutoff, or None; applied only
            when below fs/2.
        hum_mv: powerline interference amplitude per lead (mV); added only when ``hum_hz`` is
            below fs/2.
        hum_hz: powerline frequency (50 or 60 Hz).
        prevalence: expected fraction of records with each of ``CONDITIONS`` (a dict copy;
            treat it as read-only).
        age_mean: mean patient age (years) of a normal distribution clipped to ``age_range``.
        age_sd: standard deviation of patient age (years).
        age_range: (youngest, oldest) patient age (years).
        male_fraction: fraction of male patients.
        records_per_patient: mean records per patient (geometric distribution, at least 1).
        label_noise: annotation noise per condition of ``CONDITIONS``: (false-negative rate,
            false-positive rate), the chance that a true positive is labelled 0 and that a true
            negative is labelled 1 (a dict copy; treat it as read-only).
        ectopy: fraction of sinus records with premature atrial beats (1-15 % of their beats).
        incomplete_bbb: fraction of patients without a bundle branch block that have an
            incomplete one (QRS 100-120 ms with weak block morphology; 2/3 right, 1/3 left).
    """

    name: str
    noise_mv: float = 0.008
    emg_mv: float = 0.004
    wander_mv: float = 0.04
    wander_hz: tuple[float, float] = (0.05, 0.3)
    gain: float = 1.0
    lowpass_hz: float | None = None
    highpass_hz: float | None = None
    hum_mv: float = 0.005
    hum_hz: float = 60.0
    prevalence: Mapping[str, float] = field(
        default_factory=lambda: {
            "1dAVb": 0.06,
            "RBBB": 0.07,
            "LBBB": 0.05,
            "SB": 0.06,
            "AF": 0.05,
            "ST": 0.06,
            "LVH": 0.05,
            "MI": 0.05,
        },
        hash=False,
    )
    age_mean: float = 52.0
    age_sd: float = 18.0
    age_range: tuple[float, float] = (16.0, 100.0)
    male_fraction: float = 0.40
    records_per_patient: float = 1.5
    label_noise: Mapping[str, tuple[float, float]] = field(
        default_factory=lambda: _uniform_noise(0.05, 0.003), hash=False
    )
    ectopy: float = 0.06
    incomplete_bbb: float = 0.08

    def __post_init__(self) -> None:
        _check_site(self)
        object.__setattr__(self, "prevalence", dict(self.prevalence))
        noise = {k: (float(v[0]), float(v[1])) for k, v in self.label_noise.items()}
        object.__setattr__(self, "label_noise", noise)


def _check_site(site: SiteProfile) -> None:
    """Raise ValueError naming the first invalid field of ``site``."""
    prev, noise = dict(site.prevalence), dict(site.label_noise)

    def is_rate_pair(value: object) -> bool:
        try:
            fnr, fpr = (float(v) for v in value)  # type: ignore[union-attr]
        except (TypeError, ValueError):
            return False
        return 0 <= fnr < 1 and 0 <= fpr < 1 and fnr + fpr < 1

    problems = {
        "noise_mv": site.noise_mv < 0,
        "emg_mv": site.emg_mv < 0,
        "wander_mv": site.wander_mv < 0,
        "wander_hz": not 0 < site.wander_hz[0] <= site.wander_hz[1],
        "gain": site.gain <= 0,
        "lowpass_hz": site.lowpass_hz is not None and site.lowpass_hz <= 0,
        "highpass_hz": site.highpass_hz is not None and site.highpass_hz <= 0,
        "hum_mv": site.hum_mv < 0,
        "hum_hz": site.hum_hz <= 0,
        "prevalence": set(prev) != set(CONDITIONS)
        or not all(0 <= p < 1 for p in prev.values())
        or prev["RBBB"] + prev["LBBB"] >= 1
        or prev["AF"] + prev["SB"] + prev["ST"] >= 1,
        "age_sd": site.age_sd <= 0,
        "age_range": not site.age_range[0] < site.age_range[1],
        "male_fraction": not 0 <= site.male_fraction <= 1,
        "records_per_patient": site.records_per_patient < 1,
        "label_noise": set(noise) != set(CONDITIONS)
        or not all(is_rate_pair(v) for v in noise.values()),
        "ectopy": not 0 <= site.ectopy <= 1,
        "incomplete_bbb": not 0 <= site.incomplete_bbb <= 1,
    }
    bad = [name for name, wrong in problems.items() if wrong]
    if bad:
        keyed = bad[0] in ("prevalence", "label_noise")
        keys = f" (keys must be {', '.join(CONDITIONS)})" if keyed else ""
        raise ValueError(f"SiteProfile {site.name!r}: invalid {bad[0]}{keys}")


SITES: dict[str, SiteProfile] = {
    "code": SiteProfile(name="code"),
    "ptbxl_like": SiteProfile(
        name="ptbxl_like",
        noise_mv=0.02,
        emg_mv=0.01,
        wander_mv=0.15,
        wander_hz=(0.05, 0.5),
        gain=0.8,
        lowpass_hz=40.0,
        hum_mv=0.02,
        hum_hz=50.0,
        prevalence={
            "1dAVb": 0.05,
            "RBBB": 0.04,
            "LBBB": 0.04,
            "SB": 0.04,
            "AF": 0.10,
            "ST": 0.04,
            "LVH": 0.10,
            "MI": 0.15,
        },
        age_mean=62.0,
        age_sd=17.0,
        male_fraction=0.52,
        records_per_patient=1.1,
        label_noise=_uniform_noise(0.08, 0.006),
        ectopy=0.08,
    ),
    "noisy": SiteProfile(
        name="noisy",
        noise_mv=0.03,
        emg_mv=0.04,
        wander_mv=0.3,
        wander_hz=(0.1, 1.0),
        gain=1.15,
        hum_mv=0.03,
        hum_hz=50.0,
        prevalence={
            "1dAVb": 0.04,
            "RBBB": 0.03,
            "LBBB": 0.02,
            "SB": 0.10,
            "AF": 0.10,
            "ST": 0.12,
            "LVH": 0.03,
            "MI": 0.03,
        },
        age_mean=58.0,
        age_sd=16.0,
        male_fraction=0.5,
        records_per_patient=1.3,
        label_noise=_uniform_noise(0.10, 0.008),
        ectopy=0.12,
    ),
    "lowpass_device": SiteProfile(
        name="lowpass_device",
        noise_mv=0.015,
        emg_mv=0.0,
        wander_mv=0.2,
        wander_hz=(0.05, 0.4),
        gain=0.7,
        lowpass_hz=20.0,
        highpass_hz=0.5,
        hum_mv=0.02,
        hum_hz=60.0,
        prevalence={
            "1dAVb": 0.10,
            "RBBB": 0.10,
            "LBBB": 0.08,
            "SB": 0.05,
            "AF": 0.08,
            "ST": 0.03,
            "LVH": 0.08,
            "MI": 0.10,
        },
        age_mean=68.0,
        age_sd=12.0,
        age_range=(30.0, 100.0),
        male_fraction=0.6,
        records_per_patient=2.0,
        label_noise=_uniform_noise(0.07, 0.005),
        ectopy=0.10,
        incomplete_bbb=0.12,
    ),
}
"""Built-in sites: ``code`` is in-distribution (clean, CODE-like); the others are OOD.

``code`` labels miss 5 % of true conditions and add 0.3 % false positives; the OOD sites'
annotators are noisier (false-negative rates 7-10 %, false-positive rates 0.5-0.8 %).

* ``ptbxl_like``: older European population with more AF, LVH and MI; moderate noise and
  wander, 50 Hz hum, 40 Hz low-pass, 0.8 gain, mostly one record per patient.
* ``noisy``: ambulatory-like; strong muscle noise and motion wander (0.1-1 Hz, 0.3 mV),
  1.15 gain, more rate disorders (SB, ST, AF) and ectopy, few conduction or structural
  findings.
* ``lowpass_device``: old device in a cardiology clinic; 0.5-20 Hz band-pass (rounded QRS,
  distorted ST), 0.7 gain, older and more male patients with much conduction disease
  (complete and incomplete).
"""

# Waves of the dipole model, in the order of the wave table's K axis.
_P_RA, _P_LA, _SEPTAL_Q, _R_APEX, _R_BASE, _TERMINAL_S = range(6)
_R_PRIME, _LBBB_1, _LBBB_2, _Q_MI, _T_WAVE, _ST_DEV = range(6, 12)
_N_WAVES = 12

# Lead vectors of I and II (frontal plane, x left, y inferior) and of V1-V6 (horizontal-plane
# angle from the left towards anterior, length, inferior component).
_LIMB_VECTORS = np.array([[1.0, 0.0, 0.0], [0.5, math.sqrt(3) / 2, 0.0]])
_V_ANGLE_DEG = np.array([115.0, 95.0, 75.0, 50.0, 25.0, 0.0])
_V_LENGTH = np.array([1.2, 1.5, 1.5, 1.4, 1.25, 1.1])
_V_INFERIOR = np.array([-0.1, 0.0, 0.1, 0.25, 0.3, 0.35])

# Leads I, II, V1-V6 from electrodes RA, LA, LL, C1-C6 (V leads against Wilson's terminal).
_ELECTRODE_MIX = np.zeros((8, 9), np.float32)
_ELECTRODE_MIX[0, :3] = [-1.0, 1.0, 0.0]
_ELECTRODE_MIX[1, :3] = [-1.0, 0.0, 1.0]
_ELECTRODE_MIX[2:, :3] = -1.0 / 3.0
_ELECTRODE_MIX[2:, 3:] = np.eye(6)

# Risk factors: (log-risk per age standard deviation, relative risk of males).
_RISK = {
    "1dAVb": (0.8, 1.2),
    "RBBB": (0.7, 2.0),
    "LBBB": (0.8, 1.0),
    "SB": (0.1, 1.3),
    "AF": (0.9, 1.3),
    "ST": (-0.2, 0.8),
    "LVH": (0.5, 1.3),
    "MI": (0.8, 1.8),
}
_RHYTHMS = ("AF", "SB", "ST")  # mutually exclusive record rhythms; none of them = normal sinus

_PRE_S, _POST_S = 0.45, 0.80  # beat template window around the QRS onset (s)
_LEAD_IN_S = 0.8  # beats start this long before the record so no partial beat is missing
_MIN_RR_S = 0.28  # shortest RR interval (s), reached only in fast AF
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


# --- patients and labels ------------------------------------------------------------------


def _draw_patients(
    rng: np.random.Generator, profile: SiteProfile, n_records: int
) -> dict[str, np.ndarray]:
    """Per-patient record counts, demographics, chronic conditions, intervals and wave table."""
    counts = _records_per_patient(rng, profile.records_per_patient, n_records)
    n = counts.size
    age = np.clip(rng.normal(profile.age_mean, profile.age_sd, n), *profile.age_range)
    male = rng.random(n) < profile.male_fraction
    pat = {"counts": counts, "age": age, "male": male}
    pat |= _chronic_conditions(rng, profile, age, male)
    pat |= _intervals(rng, pat)
    pat |= _wave_table(rng, pat)
    return pat


def _records_per_patient(rng: np.random.Generator, mean: float, n_records: int) -> np.ndarray:
    """Geometric record counts per patient that add up to ``n_records``."""
    counts = rng.geometric(1.0 / mean, n_records)
    ends = np.cumsum(counts)
    n_patients = int(np.searchsorted(ends, n_records)) + 1
    counts = counts[:n_patients]
    counts[-1] -= ends[n_patients - 1] - n_records
    return counts


def _risk(profile: SiteProfile, condition: str, age: np.ndarray, male: np.ndarray) -> np.ndarray:
    """Per-subject probability of ``condition``, averaging to the site's prevalence."""
    age_beta, male_rr = _RISK[condition]
    weight = np.exp(age_beta * (age - profile.age_mean) / profile.age_sd)
    weight *= np.where(male, male_rr, 1.0)
    return np.clip(profile.prevalence[condition] * weight / weight.mean(), 0.0, 0.9)


def _chronic_conditions(
    rng: np.random.Generator, profile: SiteProfile, age: np.ndarray, male: np.ndarray
) -> dict[str, np.ndarray]:
    """Patient-level RBBB/LBBB or an incomplete block (exclusive), AV block, LVH and MI."""
    n = age.size
    p_rbbb, p_lbbb = (_risk(profile, c, age, male) for c in ("RBBB", "LBBB"))
    u = rng.random(n)
    incomplete = (u >= p_rbbb + p_lbbb) & (rng.random(n) < profile.incomplete_bbb)
    right = rng.random(n) < 2.0 / 3.0
    # 1dAVb is hidden in AF records (no PR), so the patient-level risk compensates for it.
    p_avb = _risk(profile, "1dAVb", age, male) / (1.0 - _risk(profile, "AF", age, male))
    return {
        "RBBB": u < p_rbbb,
        "LBBB": (u >= p_rbbb) & (u < p_rbbb + p_lbbb),
        "iRBBB": incomplete & right,
        "iLBBB": incomplete & ~right,
        "AVB": rng.random(n) < p_avb,
        "LVH": rng.random(n) < _risk(profile, "LVH", age, male),
        "MI": rng.random(n) < _risk(profile, "MI", age, male),
        "MI_inferior": rng.random(n) < 0.5,
    }


def _intervals(rng: np.random.Generator, pat: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Patient-level PR, QRS, QTc (s), resting rate and respiratory sinus arrhythmia.

    Each interval is drawn within its class (AV block or not, complete, incomplete or no bundle
    branch block) but concentrated toward the class threshold, so the thresholds have density
    on both sides: PR 200-280 ms (mostly < 230) against 120-200 ms, QRS 120-170 ms (mostly
    < 135) against 100-120 ms (incomplete) and 74-116 ms (normal, which alone keeps the whole
    QRS of an incomplete block's patient).
    """
    n = pat["age"].size
    qrs_normal = 0.074 + 0.040 * rng.beta(2.0, 2.2, n) + pat["LVH"] * rng.uniform(0.003, 0.008, n)
    qrs_incomplete = 0.1199 - 0.0199 * rng.beta(1.2, 2.0, n)
    incomplete = pat["iRBBB"] | pat["iLBBB"]
    qrs = np.select(
        [pat["RBBB"], pat["LBBB"], incomplete],
        [
            0.120 + 0.045 * rng.beta(1.2, 2.4, n),
            0.120 + 0.050 * rng.beta(1.4, 2.4, n),
            qrs_incomplete,
        ],
        np.minimum(qrs_normal, 0.116),
    )
    # The undelayed part of the QRS; an incomplete block's late forces end at ``qrs``.
    qrs_normal = np.minimum(qrs_normal, np.where(incomplete, qrs - 0.008, 0.116))
    pr = np.where(
        pat["AVB"], 0.2005 + 0.0795 * rng.beta(1.1, 3.0, n), 0.120 + 0.0795 * rng.beta(1.7, 1.4, n)
    )
    young = np.clip((60.0 - pat["age"]) / 40.0, 0.0, 1.0)
    marked = rng.random(n) < 0.2  # marked respiratory sinus arrhythmia: RR CV up to ~0.08
    return {
        "qrs_normal": qrs_normal,
        "qrs": qrs,
        "pr": pr,
        "qtc": rng.normal(0.405, 0.018, n) + (qrs - qrs_normal),
        "rest_rate": rng.normal(75.0, 12.0, n),
        "sinus_arrhythmia": rng.uniform(0.01, 0.03, n)
        + 0.03 * young
        + marked * rng.uniform(0.02, 0.06, n),
        "resp_hz": rng.uniform(0.15, 0.35, n),
    }


def _fold(x: np.ndarray, low: float, high: float) -> np.ndarray:
    """Reflect values into [low, high] at its edges (keeping density near them), then clip."""
    x = np.where(x < low, 2 * low - x, x)
    x = np.where(x > high, 2 * high - x, x)
    return np.clip(x, low, high)


def _draw_records(
    rng: np.random.Generator, profile: SiteProfile, pat: dict[str, np.ndarray], pidx: np.ndarray
) -> dict[str, np.ndarray]:
    """Per-record age, exclusive rhythm class (AF, SB, ST or normal sinus), nominal mean rate,
    AF RR spread and whether a sinus record has premature beats.

    Sinus rates are concentrated toward the class thresholds: SB 45-60 bpm (mostly > 52), ST
    100-145 (mostly < 112), normal sinus the patient's resting rate plus record-to-record
    variation folded into 60-100. The labels then follow the rate measured on the rendered beats.
    """
    n = pidx.size
    first = np.cumsum(pat["counts"]) - pat["counts"]
    visit = np.arange(n) - np.repeat(first, pat["counts"])
    age = np.minimum(
        np.round(pat["age"][pidx] + visit * rng.uniform(0.2, 3.0, n)), profile.age_range[1]
    )
    male = pat["male"][pidx]
    cum = np.cumsum([_risk(profile, r, age, male) for r in _RHYTHMS], axis=0)
    rhythm = (rng.random(n) >= cum).sum(axis=0)  # index into _RHYTHMS; 3 = normal sinus
    sinus_rate = _fold(pat["rest_rate"][pidx] + rng.normal(0.0, 5.0, n), 60.0, 100.0)
    rate = np.choose(
        rhythm,
        [
            60.0 + 90.0 * rng.beta(2.0, 2.5, n),
            60.0 - 15.0 * rng.beta(1.1, 2.8, n),
            100.0 + 45.0 * rng.beta(1.1, 3.5, n),
            sinus_rate,
        ],
    )
    af = rhythm == _RHYTHMS.index("AF")
    return {
        "age": age,
        "rhythm": rhythm,
        "rate": rate,
        "af_cv": 0.06 + 0.24 * rng.beta(1.3, 1.1, n),
        "ectopic": ~af & (rng.random(n) < profile.ectopy),
    }


_EXCLUSIVE = (("RBBB", "LBBB"), ("AF", "SB", "ST"), ("AF", "1dAVb"))
"""Groups of conditions of which a record has (and is labelled with) at most one."""


def _true_conditions(
    pat: dict[str, np.ndarray], pidx: np.ndarray, rec: dict[str, np.ndarray], heart_rate: np.ndarray
) -> dict[str, np.ndarray]:
    """Each record's true conditions: the clinical thresholds of the rendered quantities."""
    af = rec["rhythm"] == _RHYTHMS.index("AF")
    qrs = pat["qrs"][pidx]
    return {
        "1dAVb": (pat["pr"][pidx] > 0.200) & ~af,
        "RBBB": (pat["RBBB"] | pat["iRBBB"])[pidx] & (qrs >= 0.120),
        "LBBB": (pat["LBBB"] | pat["iLBBB"])[pidx] & (qrs >= 0.120),
        "SB": ~af & (heart_rate < 60.0),
        "AF": af,
        "ST": ~af & (heart_rate > 100.0),
        "LVH": pat["LVH"][pidx],
        "MI": pat["MI"][pidx],
    }


def _annotate(
    rng: np.random.Generator,
    noise: Mapping[str, tuple[float, float]],
    truth: dict[str, np.ndarray],
) -> dict[str, np.ndarray]:
    """The annotator's labels: each truth flipped with its (false-negative, false-positive) rate.

    A false positive that breaks a mutual exclusion is dropped in favour of the true (reported)
    condition, or, between two false positives, of the first in ``_EXCLUSIVE`` order.
    """
    u = rng.random((len(CONDITIONS), truth["AF"].size))
    labels = {
        c: np.where(truth[c], u[i] >= noise[c][0], u[i] < noise[c][1])
        for i, c in enumerate(CONDITIONS)
    }
    for group in _EXCLUSIVE:
        said = np.stack([labels[c] for c in group], axis=1)
        kept_true = said & np.stack([truth[c] for c in group], axis=1)
        first = said & (np.cumsum(said, axis=1) == 1)
        kept = np.where(kept_true.any(axis=1, keepdims=True), kept_true, first)
        labels |= {c: kept[:, j] for j, c in enumerate(group)}
    return labels


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


# --- the dipole model ---------------------------------------------------------------------


def _direction(theta_deg: np.ndarray, psi_deg: np.ndarray) -> np.ndarray:
    """Unit vectors (..., 3) at frontal angle theta (0 = left, 90 = inferior), elevation psi."""
    theta, psi = np.deg2rad(theta_deg), np.deg2rad(psi_deg)
    return np.stack(
        [np.cos(psi) * np.cos(theta), np.cos(psi) * np.sin(theta), np.sin(psi)], axis=-1
    )


def _unit(v: np.ndarray) -> np.ndarray:
    """Normalise vectors along the last axis."""
    return v / np.linalg.norm(v, axis=-1, keepdims=True)


def _wave_table(rng: np.random.Generator, pat: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Per-patient waves: vector ``vec`` (n, K, 3) in mV, ``centre`` after QRS onset and
    left/right widths ``sig_l``/``sig_r`` (n, K) in s. T and ST centres are set per record."""
    n = pat["age"].size
    table = {
        "vec": np.zeros((n, _N_WAVES, 3)),
        "centre": np.zeros((n, _N_WAVES)),
        "sig_l": np.full((n, _N_WAVES), 0.01),
        "sig_r": np.full((n, _N_WAVES), 0.01),
    }
    axis = np.clip(rng.normal(55.0, 25.0, n), -30.0, 100.0) - 10.0 * pat["LVH"]
    amp_r = rng.lognormal(0.0, 0.25, n) * np.where(pat["male"], 1.1, 0.92)
    amp_r *= np.exp(-0.005 * (pat["age"] - 50.0)) * np.where(
        pat["LVH"], rng.uniform(1.8, 2.5, n), 1.0
    )
    _normal_waves(rng, table, pat, axis, amp_r)
    _lvh_strain(rng, table, pat["LVH"])
    _rbbb(rng, table, pat["RBBB"] | pat["iRBBB"], pat["qrs"])
    _lbbb(rng, table, pat["LBBB"] | pat["iLBBB"], pat["qrs"], axis, amp_r)
    _old_mi(rng, table, pat["MI"], pat["MI_inferior"], pat["qrs_normal"])
    return table


def _set_wave(
    table: dict[str, np.ndarray],
    k: int,
    mask: np.ndarray | slice,
    vec: np.ndarray,
    centre: np.ndarray,
    sig_l: np.ndarray,
    sig_r: np.ndarray | None = None,
) -> None:
    """Write wave ``k`` of the patients in ``mask`` (arrays over all patients)."""
    table["vec"][mask, k] = vec[mask]
    table["centre"][mask, k] = centre[mask]
    table["sig_l"][mask, k] = sig_l[mask]
    table["sig_r"][mask, k] = (sig_l if sig_r is None else sig_r)[mask]


def _normal_waves(
    rng: np.random.Generator,
    table: dict[str, np.ndarray],
    pat: dict[str, np.ndarray],
    axis: np.ndarray,
    amp_r: np.ndarray,
) -> None:
    """Atrial (right then left) P, septal q, apical then basal R, terminal s, asymmetric T."""
    n, qn, pr = axis.size, pat["qrs_normal"], pat["pr"]
    all_ = slice(None)

    def wave(amp: np.ndarray, theta: np.ndarray, psi: np.ndarray) -> np.ndarray:
        return amp[:, None] * _direction(theta, psi)

    p_ra = wave(rng.uniform(0.08, 0.15, n), rng.normal(75, 10, n), rng.normal(30, 10, n))
    _set_wave(table, _P_RA, all_, p_ra, 0.035 - pr, rng.uniform(0.013, 0.017, n))
    p_la = wave(rng.uniform(0.06, 0.12, n), rng.normal(40, 10, n), rng.normal(-30, 10, n))
    _set_wave(table, _P_LA, all_, p_la, 0.065 - pr, rng.uniform(0.014, 0.018, n))
    q = wave(rng.uniform(0.08, 0.2, n), rng.normal(170, 15, n), rng.normal(45, 10, n))
    _set_wave(table, _SEPTAL_Q, all_, q, 0.16 * qn, 0.07 * qn)
    apex = wave(amp_r, axis, rng.normal(0.0, 8.0, n) - 5.0 * pat["LVH"])
    _set_wave(table, _R_APEX, all_, apex, 0.40 * qn, 0.11 * qn)
    amp_base = amp_r * rng.uniform(0.6, 1.0, n) * np.where(pat["LVH"], 1.25, 1.0)
    base = wave(amp_base, rng.normal(0.0, 20.0, n), rng.normal(-55.0, 8.0, n))
    _set_wave(table, _R_BASE, all_, base, 0.55 * qn, 0.11 * qn)
    s = wave(rng.uniform(0.12, 0.35, n), rng.normal(-120, 20, n), rng.normal(-30, 10, n))
    _set_wave(table, _TERMINAL_S, all_, s, 0.75 * qn, 0.09 * qn)
    t_amp = rng.uniform(0.22, 0.42, n) * np.sqrt(np.minimum(amp_r, 2.0))
    t_axis = 0.5 * axis + 20.0 + rng.normal(0.0, 10.0, n)
    t_right = rng.uniform(0.035, 0.05, n)
    t_vec = wave(t_amp, t_axis, rng.normal(15.0, 10.0, n))
    _set_wave(table, _T_WAVE, all_, t_vec, np.zeros(n), t_right * rng.uniform(1.3, 1.9, n), t_right)


def _lvh_strain(rng: np.random.Generator, table: dict[str, np.ndarray], lvh: np.ndarray) -> None:
    """LVH strain: ST depression and T inversion opposite the (already enlarged) R vectors."""
    n = lvh.size
    r_dir = _unit(table["vec"][:, _R_APEX] + table["vec"][:, _R_BASE])
    t_vec = table["vec"][:, _T_WAVE]
    mix = rng.uniform(0.6, 1.0, n)[:, None]
    strained = (1 - mix) * t_vec - mix * np.linalg.norm(t_vec, axis=-1, keepdims=True) * r_dir
    table["vec"][lvh, _T_WAVE] = strained[lvh]
    table["vec"][lvh, _ST_DEV] = -(rng.uniform(0.06, 0.12, n)[:, None] * r_dir)[lvh]


def _rbbb(
    rng: np.random.Generator, table: dict[str, np.ndarray], rbbb: np.ndarray, qrs: np.ndarray
) -> None:
    """RBBB: late slurred rightward-anterior R' (rsR' in V1, wide S in I, V6); T down in V1-V3.

    The terminal forces grow with the conduction delay: weak in an incomplete block (QRS
    100-120 ms), about 2/3 of full strength at 120 ms and full from 135 ms.
    """
    n = rbbb.size
    severity = np.clip((qrs - 0.095) / 0.040, 0.15, 1.0)
    direction = _direction(rng.normal(175.0, 12.0, n), rng.normal(40.0, 10.0, n))
    vec = (rng.uniform(0.55, 0.95, n) * severity)[:, None] * direction
    sigma = rng.uniform(0.14, 0.17, n) * qrs
    _set_wave(table, _R_PRIME, rbbb, vec, qrs - 2.1 * sigma, sigma)
    table["vec"][rbbb, _TERMINAL_S] *= (1.0 - 0.7 * severity[rbbb])[:, None]
    table["vec"][rbbb, _T_WAVE] -= 0.3 * vec[rbbb]


def _lbbb(
    rng: np.random.Generator,
    table: dict[str, np.ndarray],
    lbbb: np.ndarray,
    qrs: np.ndarray,
    axis: np.ndarray,
    amp_r: np.ndarray,
) -> None:
    """LBBB: no septal q, broad notched leftward-posterior R in two bumps, discordant ST-T.

    The block's waves replace the normal q, R, s and T in proportion to the conduction delay:
    about 1/5 in an incomplete block at 100 ms, 2/3 at 120 ms and wholly from 135 ms.
    """
    n = lbbb.size
    severity = np.clip((qrs - 0.090) / 0.045, 0.2, 1.0)
    amp = amp_r * rng.uniform(1.3, 1.8, n) * severity
    axis_l = axis - 20.0
    d1 = _direction(axis_l + rng.normal(0, 8, n), rng.normal(-20, 8, n))
    d2 = _direction(axis_l - 10.0 + rng.normal(0, 8, n), rng.normal(-45, 8, n))
    _set_wave(table, _LBBB_1, lbbb, 0.75 * amp[:, None] * d1, 0.30 * qrs, 0.11 * qrs)
    _set_wave(table, _LBBB_2, lbbb, amp[:, None] * d2, 0.66 * qrs, 0.13 * qrs)
    keep = (1.0 - severity)[:, None]
    table["vec"][lbbb, _SEPTAL_Q : _TERMINAL_S + 1] *= keep[lbbb, :, None]  # q, R, s
    discordant = -(rng.uniform(0.3, 0.55, n)[:, None] * _unit(d1 + d2))
    t_vec = keep * table["vec"][:, _T_WAVE] + (1.0 - keep) * discordant
    table["vec"][lbbb, _T_WAVE] = t_vec[lbbb]
    table["vec"][lbbb, _ST_DEV] = -((1.0 - keep) * rng.uniform(0.08, 0.15, n)[:, None] * d2)[lbbb]


def _old_mi(
    rng: np.random.Generator,
    table: dict[str, np.ndarray],
    mi: np.ndarray,
    inferior: np.ndarray,
    qrs_normal: np.ndarray,
) -> None:
    """Old MI: initial forces away from the scar (pathological Q) and T inversion there."""
    n = mi.size
    away = np.where(inferior[:, None], [0.0, -1.0, 0.0], _unit(np.array([0.2, 0.0, -1.0])))
    vec = rng.uniform(0.3, 0.6, n)[:, None] * away
    _set_wave(table, _Q_MI, mi, vec, 0.14 * qrs_normal, rng.uniform(0.012, 0.016, n))
    vec_all, t_amp = table["vec"], rng.uniform(0.1, 0.2, n)
    inf, ant = mi & inferior, mi & ~inferior
    vec_all[inf, _R_APEX, 1] *= 0.4
    vec_all[inf, _T_WAVE, 1] = -np.abs(vec_all[inf, _T_WAVE, 1]) - t_amp[inf]
    vec_all[ant, _SEPTAL_Q] = 0.0
    vec_all[ant, _R_APEX] *= 0.6
    vec_all[ant, _T_WAVE, 2] = -np.abs(vec_all[ant, _T_WAVE, 2]) - t_amp[ant]
    vec_all[ant, _T_WAVE, 0] *= 0.5


# --- rendering ----------------------------------------------------------------------------


def _render_cardiac(
    rng: np.random.Generator,
    pat: dict[str, np.ndarray],
    pidx: np.ndarray,
    rec: dict[str, np.ndarray],
    gain: float,
    fs: float,
    duration_s: float,
) -> tuple[np.ndarray, np.ndarray]:
    """Noise-free leads I, II, V1-V6 (m, 8, T) of a chunk, and each record's heart rate."""
    m, n_rec = pidx.size, round(duration_s * fs)
    onsets = _beat_onsets(rng, pat, pidx, rec, duration_s)
    heart_rate = _heart_rate(onsets, rec["rate"], duration_s)
    beat_gain = 1.0 + 0.05 * np.sin(
        2 * np.pi * pat["resp_hz"][pidx, None] * onsets + rng.uniform(0, 2 * np.pi, (m, 1))
    )
    leads = _lead_matrix(rng, m) * (gain * rng.lognormal(0.0, 0.06, m))[:, None, None]
    af = rec["rhythm"] == _RHYTHMS.index("AF")
    waves = _record_waves(pat, pidx, af, 60.0 / rec["rate"])
    n_pre = math.ceil(_PRE_S * fs)
    grid = (np.arange(n_pre + math.ceil(_POST_S * fs)) - n_pre) / fs
    template = (leads @ waves["vec"].transpose(0, 2, 1) @ _bumps(grid, waves)).astype(np.float32)
    signal = _place_beats(template, onsets * fs, beat_gain.astype(np.float32), n_pre, n_rec)
    if af.any():
        t = np.arange(n_rec) / fs
        signal[af] += (leads[af] @ _fibrillation(rng, int(af.sum()), t)).astype(np.float32)
    return signal, heart_rate


def _beat_onsets(
    rng: np.random.Generator,
    pat: dict[str, np.ndarray],
    pidx: np.ndarray,
    rec: dict[str, np.ndarray],
    duration_s: float,
) -> np.ndarray:
    """QRS onset times (m, B) in s: sinus rhythm with respiratory arrhythmia, or AF.

    In ectopic sinus records 1-15 % of beats (never two in a row) are premature atrial beats:
    coupled at 55-80 % of the RR interval (at least 0.35 s), followed by a pause that makes up
    30-90 % of the prematurity.
    """
    m = pidx.size
    n_beats = math.ceil((duration_s + _PRE_S + _LEAD_IN_S + 1.5) / _MIN_RR_S) + 1
    rr0 = (60.0 / rec["rate"])[:, None]
    z = rng.standard_normal((m, n_beats))
    sa = pat["sinus_arrhythmia"][pidx] * np.where(rec["rhythm"] == _RHYTHMS.index("ST"), 0.3, 1.0)
    phase = 2 * np.pi * pat["resp_hz"][pidx, None] * rr0 * np.arange(n_beats)
    phase += rng.uniform(0, 2 * np.pi, (m, 1))
    sinus = rr0 * (1.0 + sa[:, None] * np.sin(phase) + 0.01 * z)
    premature = rng.random((m, n_beats)) < rng.uniform(0.01, 0.15, (m, 1))
    premature &= rec["ectopic"][:, None]
    premature[:, 1:] &= ~premature[:, :-1]
    premature[:, 0] = False
    coupling = np.maximum(rng.uniform(0.55, 0.80, (m, n_beats)), 0.35 / rr0)
    pause = 1.0 + (1.0 - coupling) * rng.uniform(0.3, 0.9, (m, n_beats))
    sinus *= np.where(premature, coupling, 1.0)
    sinus[:, 1:] *= np.where(premature[:, :-1], pause[:, :-1], 1.0)
    sigma = np.sqrt(np.log1p(rec["af_cv"] ** 2))[:, None]
    fibrillating = np.maximum(rr0 * np.exp(sigma * z - sigma**2 / 2), _MIN_RR_S)
    rr = np.where((rec["rhythm"] == _RHYTHMS.index("AF"))[:, None], fibrillating, sinus)
    first = -_LEAD_IN_S - rng.random(m) * rr[:, 0]
    return first[:, None] + np.cumsum(rr, axis=1) - rr[:, :1]


def _heart_rate(onsets: np.ndarray, rate: np.ndarray, duration_s: float) -> np.ndarray:
    """Mean rate (bpm) over RR intervals within the record; the nominal rate if there are none."""
    inside = (onsets >= 0) & (onsets < duration_s)
    pairs = inside[:, 1:] & inside[:, :-1]
    count = pairs.sum(axis=1)
    total = (np.diff(onsets, axis=1) * pairs).sum(axis=1)
    return np.where(count > 0, 60.0 * count / np.where(count > 0, total, 1.0), rate)


def _lead_matrix(rng: np.random.Generator, m: int) -> np.ndarray:
    """Lead vectors (m, 8, 3) of I, II, V1-V6 with per-record chest-electrode jitter."""
    angle = np.deg2rad(_V_ANGLE_DEG + rng.normal(0.0, 6.0, (m, 6)))
    length = _V_LENGTH * rng.lognormal(0.0, 0.08, (m, 6))
    chest = (
        np.stack([np.cos(angle), np.broadcast_to(_V_INFERIOR, (m, 6)), np.sin(angle)], axis=-1)
        * length[..., None]
    )
    return np.concatenate([np.broadcast_to(_LIMB_VECTORS, (m, 2, 3)), chest], axis=1)


def _record_waves(
    pat: dict[str, np.ndarray], pidx: np.ndarray, af: np.ndarray, rr: np.ndarray
) -> dict[str, np.ndarray]:
    """The patients' wave tables for a chunk, with rate-dependent T/ST timing and AF's lost P."""
    waves = {k: pat[k][pidx] for k in ("vec", "centre", "sig_l", "sig_r")}
    qrs = pat["qrs"][pidx]
    qt = np.maximum(pat["qtc"][pidx] * np.cbrt(rr), qrs + 0.16)  # Fridericia
    waves["centre"][:, _T_WAVE] = qt - 2.2 * waves["sig_r"][:, _T_WAVE]
    waves["centre"][:, _ST_DEV] = qrs + 0.3 * (qt - qrs)
    waves["sig_l"][:, _ST_DEV] = waves["sig_r"][:, _ST_DEV] = 0.2 * (qt - qrs)
    waves["vec"][af, _P_RA] = waves["vec"][af, _P_LA] = 0.0
    return waves


def _bumps(grid: np.ndarray, waves: dict[str, np.ndarray]) -> np.ndarray:
    """Split-Gaussian time courses (m, K, W) of every wave on the template grid (s)."""
    dt = grid - waves["centre"][..., None]
    sigma = np.where(dt < 0, waves["sig_l"][..., None], waves["sig_r"][..., None])
    return np.exp(-0.5 * (dt / sigma) ** 2)


def _place_beats(
    template: np.ndarray, onsets: np.ndarray, beat_gain: np.ndarray, n_pre: int, n_rec: int
) -> np.ndarray:
    """Add each record's beat template (m, 8, W) at its beat onsets (samples) into (m, 8, n_rec)."""
    m, _, width = template.shape
    buffer = np.zeros((m, 8, n_rec + 2 * width), np.float32)
    windows = sliding_window_view(buffer, width, axis=-1, writeable=True)
    # Beats wholly outside the record are clipped into the discarded margins.
    starts = np.clip(np.rint(onsets).astype(np.int64) - n_pre + width, 0, n_rec + width)
    rows = np.arange(m)
    n_used = int((starts < n_rec + width).sum(axis=1).max())
    for b in range(n_used):
        windows[rows, :, starts[:, b]] += template * beat_gain[:, b, None, None]
    return buffer[:, :, width : width + n_rec]


def _fibrillation(rng: np.random.Generator, m: int, t: np.ndarray) -> np.ndarray:
    """Atrial fibrillatory waves (m, 3, T): two frequency-modulated 4-9 Hz atrial dipoles.

    Their amplitude is log-uniform per record between fine (0.008 mV) and coarse (0.08 mV).
    """
    size = (m, 2, 1)
    phase = 2 * np.pi * rng.uniform(4.0, 9.0, size) * t + rng.uniform(0, 2 * np.pi, size)
    wobble = 2 * np.pi * rng.uniform(0.1, 0.5, size) * t + rng.uniform(0, 2 * np.pi, size)
    phase += rng.uniform(0.5, 2.0, size) * np.sin(wobble)
    amplitude = np.exp(rng.uniform(math.log(0.008), math.log(0.08), (m, 1, 1)))
    waves = amplitude * rng.uniform(0.6, 1.0, size) * np.sin(phase)
    directions = np.stack(
        [
            _direction(rng.normal(80, 20, m), rng.normal(45, 15, m)),
            _direction(rng.uniform(0, 360, m), rng.normal(0, 30, m)),
        ],
        axis=2,
    )
    return directions @ waves


# --- acquisition: noise, filtering, length ------------------------------------------------


def _noise(
    rng: np.random.Generator, profile: SiteProfile, like: np.ndarray, fs: float
) -> np.ndarray:
    """Electrode noise (white, muscle, wander) mixed into leads I, II, V1-V6, plus hum."""
    m, _, n = like.shape
    t = (np.arange(n) / fs).astype(np.float32)
    if profile.noise_mv > 0 or profile.emg_mv > 0:
        electrodes = _white_and_muscle(rng, profile, m, t)
    else:
        electrodes = np.zeros((m, 9, n), np.float32)
    if profile.wander_mv > 0:
        electrodes += _wander(rng, profile, m, t)
    leads = _ELECTRODE_MIX @ electrodes
    if profile.hum_mv > 0 and profile.hum_hz < fs / 2:
        amp = profile.hum_mv * rng.uniform(-1.5, 1.5, (m, 8, 1)).astype(np.float32)
        phase = rng.uniform(0, 2 * np.pi, (m, 1, 1)).astype(np.float32)
        leads += amp * np.sin(np.float32(2 * np.pi * profile.hum_hz) * t + phase)
    return leads


def _white_and_muscle(
    rng: np.random.Generator, profile: SiteProfile, m: int, t: np.ndarray
) -> np.ndarray:
    """White plus bursty muscle noise (m, 9, T) from one Gaussian draw w per sample.

    The muscle part is the draw's first difference (high-frequency) under a slow random burst
    envelope b, so each electrode's noise is a time-varying moving average of white noise:
    ``noise_mv * w[t] + b[t] * (w[t] - w[t-1])``.
    """
    white = rng.standard_normal((m, 9, t.size + 1), dtype=np.float32)
    if profile.emg_mv == 0:
        return white[..., 1:] * np.float32(profile.noise_mv)
    rate = rng.uniform(0.1, 0.5, (m, 1, 1)).astype(np.float32)
    phase = rng.uniform(0, 2 * np.pi, (m, 1, 1)).astype(np.float32)
    burst = np.exp(1.5 * np.sin(np.float32(2 * np.pi) * rate * t + phase)) / np.float32(2.2)
    scale = (profile.emg_mv / math.sqrt(2)) * rng.uniform(0.3, 1.5, (m, 9, 1))
    noise = burst * scale.astype(np.float32)  # b, then built up in place to save memory
    previous = white[..., :-1] * noise
    noise += np.float32(profile.noise_mv)
    noise *= white[..., 1:]
    noise -= previous
    return noise


def _wander(
    rng: np.random.Generator, profile: SiteProfile, m: int, t: np.ndarray, k: int = 3
) -> np.ndarray:
    """Baseline wander (m, 9, T): per-record slow sinusoids mixed with per-electrode weights."""
    freq = rng.uniform(*profile.wander_hz, (m, k, 1)).astype(np.float32)
    arg = np.float32(2 * np.pi) * freq * t + rng.uniform(0, 2 * np.pi, (m, k, 1)).astype(np.float32)
    basis = np.concatenate([np.sin(arg), np.cos(arg)], axis=1)
    weights = rng.normal(0.0, profile.wander_mv / math.sqrt(k), (m, 9, 2 * k)).astype(np.float32)
    return weights @ basis


def _filter(x: np.ndarray, profile: SiteProfile, fs: float) -> np.ndarray:
    """The site's zero-phase Butterworth low-pass and high-pass, where below fs/2."""
    stages = [
        butter(order, cutoff, btype=kind, fs=fs, output="sos")
        for kind, cutoff, order in (
            ("lowpass", profile.lowpass_hz, 4),
            ("highpass", profile.highpass_hz, 2),
        )
        if cutoff is not None and cutoff < fs / 2
    ]
    if not stages:
        return x
    sos = np.concatenate(stages)
    padlen = min(3 * (2 * len(sos) + 1), x.shape[-1] - 1)
    return sosfiltfilt(sos, x, axis=-1, padlen=padlen).astype(np.float32)


def _fit_length(x: np.ndarray, n_samples: int) -> np.ndarray:
    """Centre-crop or zero-pad the time axis to ``n_samples``."""
    n = x.shape[-1]
    if n >= n_samples:
        start = (n - n_samples) // 2
        return x[..., start : start + n_samples]
    out = np.zeros((*x.shape[:-1], n_samples), x.dtype)
    start = (n_samples - n) // 2
    out[..., start : start + n] = x
    return out


def _derive_leads(x: np.ndarray, out: np.ndarray) -> None:
    """Write the 12 leads into ``out`` from I, II, V1-V6 (Einthoven and Goldberger)."""
    lead_i, lead_ii = x[:, 0], x[:, 1]
    out[:, 0] = lead_i
    out[:, 1] = lead_ii
    out[:, 2] = lead_ii - lead_i
    out[:, 3] = -(lead_i + lead_ii) / 2
    out[:, 4] = lead_i - lead_ii / 2
    out[:, 5] = lead_ii - lead_i / 2
    out[:, 6:] = x[:, 2:]
