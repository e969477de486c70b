"""Recording sites: the SiteProfile of a device, its acquisition and population; the built-in
SITES; and CONDITIONS, the conditions the generator draws."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from ecgscale.data.schema import LABELS

CONDITIONS: tuple[str, ...] = (*LABELS, "LVH", "MI")
"""Every condition the generator draws: CODE's six labels plus two unseen-task targets."""


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
