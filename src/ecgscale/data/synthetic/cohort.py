"""The cohort: patients (records per patient, demographics, chronic conditions, intervals and
wave table), records (age, rhythm, rate, ectopy), true conditions and the annotator's labels."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from ecgscale.data.synthetic.conditions import _RHYTHMS, _lbbb, _lvh_strain, _old_mi, _rbbb
from ecgscale.data.synthetic.sites import CONDITIONS, SiteProfile
from ecgscale.data.synthetic.waves import _N_WAVES, _normal_waves

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
