"""The synthetic CODE-like generator: form, determinism, physiology, labels and sites."""

from __future__ import annotations

import dataclasses
import pickle

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.signal import butter, find_peaks, sosfiltfilt, welch

from ecgscale.data.schema import INGEST_COLUMNS, LABELS, LEADS, META_COLUMNS
from ecgscale.data.synthetic import CONDITIONS, EXTRA_COLUMNS, SITES, SiteProfile, generate

FS = 100.0
TRUE = [f"true_{condition}" for condition in CONDITIONS]
INDEPENDENT = [LEADS.index(lead) for lead in ("I", "II", "V1", "V2", "V3", "V4", "V5", "V6")]


@pytest.fixture(scope="module")
def code_set() -> tuple[np.ndarray, pd.DataFrame]:
    return generate("code", 400, seed=11)


@pytest.fixture(scope="module")
def large_meta() -> dict[str, pd.DataFrame]:
    """Metadata of large sets; a low sampling rate keeps them cheap (metadata ignore fs)."""
    return {
        site: generate(site, n, fs=20.0, n_samples=200, seed=5)[1]
        for site, n in (("code", 8000), ("lowpass_device", 4000))
    }


@pytest.fixture(scope="module")
def site_sets() -> dict[str, np.ndarray]:
    return {site: generate(site, 120, seed=3)[0] for site in SITES}


def qrs_peaks(record: np.ndarray, fs: float = FS) -> np.ndarray:
    """QRS locations from the peaks of the summed squared slope of the independent leads."""
    slope = (np.diff(record[INDEPENDENT], axis=-1) ** 2).sum(axis=0)
    peaks, _ = find_peaks(slope, height=0.3 * np.percentile(slope, 99), distance=int(0.25 * fs))
    return peaks


def qrs_width_ms(record: np.ndarray, fs: float = FS) -> float:
    """Median over beats of the time the QRS energy exceeds 5 % of its peak (an energy width)."""
    before, after = int(0.12 * fs), int(0.14 * fs)
    widths = []
    for p in qrs_peaks(record, fs):
        if before <= p <= record.shape[-1] - after:
            seg = record[INDEPENDENT, p - before : p + after]
            energy = ((seg - np.median(seg, axis=1, keepdims=True)) ** 2).sum(axis=0)
            widths.append((energy > 0.05 * energy.max()).sum() * 1000 / fs)
    return float(np.median(widths))


def assert_limb_identities(x: np.ndarray) -> None:
    lead = {name: x[:, i] for i, name in enumerate(LEADS)}
    i, ii = lead["I"], lead["II"]
    for name, expected in (
        ("III", ii - i),
        ("aVR", -(i + ii) / 2),
        ("aVL", i - ii / 2),
        ("aVF", ii - i / 2),
    ):
        np.testing.assert_allclose(lead[name], expected, rtol=0, atol=1e-6, err_msg=name)


# --- form ---------------------------------------------------------------------------------


def test_shapes_dtypes_and_columns(code_set):
    x, meta = code_set
    assert x.shape == (400, 12, 1000) and x.dtype == np.float32
    assert np.isfinite(x).all()
    columns = [c for c in META_COLUMNS if c not in INGEST_COLUMNS] + list(EXTRA_COLUMNS)
    assert list(meta.columns) == columns
    for column in columns:
        dtype = (META_COLUMNS | EXTRA_COLUMNS)[column]
        assert meta[column].dtype == pd.api.types.pandas_dtype(dtype), column
    assert meta["record_id"].is_unique
    assert meta["record_id"].iloc[7] == "code-s11-0000007"
    assert (meta["source"] == "synthetic").all() and (meta["site"] == "code").all()
    assert (meta["fs_origin"] == FS).all()
    assert meta["age"].between(16, 100).all()
    assert set(np.unique(meta[[*LABELS, "LVH", "MI", *TRUE]].to_numpy())) <= {0, 1}


def test_code_style_zero_padding_and_centre_crop():
    x, _ = generate("code", 3, fs=400.0, n_samples=4096, seed=1)
    assert x.shape == (3, 12, 4096)
    assert not x[..., :48].any() and not x[..., -48:].any()
    assert np.abs(x[..., 48:-48]).mean(axis=-1).min() > 0
    full, _ = generate("ptbxl_like", 2, n_samples=1000, seed=4)
    cropped, _ = generate("ptbxl_like", 2, n_samples=600, seed=4)
    np.testing.assert_array_equal(cropped, full[..., 200:800])


def test_limb_leads_follow_einthoven_and_goldberger(code_set):
    assert_limb_identities(code_set[0])


# --- determinism --------------------------------------------------------------------------


def test_same_arguments_give_identical_output():
    x1, m1 = generate("noisy", 30, seed=7, patient_id_start=5)
    x2, m2 = generate("noisy", 30, seed=7, patient_id_start=5)
    np.testing.assert_array_equal(x1, x2)
    pd.testing.assert_frame_equal(m1, m2)


def test_seed_and_site_change_the_output():
    x1, m1 = generate("code", 30, seed=1)
    x2, m2 = generate("code", 30, seed=2)
    assert not np.array_equal(x1, x2)
    assert not m1["heart_rate"].equals(m2["heart_rate"])
    assert not set(m1["record_id"]) & set(m2["record_id"])
    x3, _ = generate(dataclasses.replace(SITES["code"], name="code2"), 30, seed=1)
    assert not np.array_equal(x1, x3)


def test_metadata_do_not_depend_on_sampling_rate():
    _, low = generate("code", 40, fs=100.0, n_samples=1000, seed=9)
    _, high = generate("code", 40, fs=400.0, n_samples=4096, seed=9)
    pd.testing.assert_frame_equal(low.drop(columns="fs_origin"), high.drop(columns="fs_origin"))


@settings(max_examples=15, deadline=None)
@given(
    seed=st.integers(0, 2**32 - 1),
    n=st.integers(1, 5),
    fs=st.sampled_from([50.0, 100.0, 257.0, 500.0]),
    n_samples=st.integers(1, 3000),
    duration_s=st.floats(0.05, 12.0),
    site=st.sampled_from(sorted(SITES)),
)
def test_any_small_call_is_well_formed(seed, n, fs, n_samples, duration_s, site):
    x, meta = generate(site, n, fs=fs, n_samples=n_samples, seed=seed, duration_s=duration_s)
    assert x.shape == (n, 12, n_samples) and x.dtype == np.float32
    assert np.isfinite(x).all()
    assert len(meta) == n and meta["heart_rate"].between(30, 200).all()
    assert_limb_identities(x)


# --- metadata agree with the signal -------------------------------------------------------


def test_heart_rate_matches_the_r_peaks(code_set):
    x, meta = code_set
    measured = np.array([60 * FS / np.diff(qrs_peaks(r)).mean() for r in x])
    error = np.abs(measured / meta["heart_rate"].to_numpy() - 1)
    af = meta["true_AF"].to_numpy() == 1
    assert error[~af].max() < 0.03
    assert np.median(error[af]) < 0.03


def test_rate_conditions_are_thresholds_of_the_heart_rate(large_meta):
    for meta in large_meta.values():
        hr, sinus = meta["heart_rate"], meta["true_AF"] == 0
        assert (meta["true_SB"] == (sinus & (hr < 60))).all()
        assert (meta["true_ST"] == (sinus & (hr > 100))).all()
        assert hr[meta["true_AF"] == 1].between(50, 170).all()
        assert hr[sinus].between(44, 150).all()


def test_rates_have_density_near_the_thresholds(large_meta):
    meta = large_meta["code"]
    hr, sinus = meta["heart_rate"], meta["true_AF"] == 0
    normal = hr[sinus & hr.between(60, 100)]
    assert ((normal - 60) < 5).mean() > 0.1 and ((100 - normal) < 5).mean() > 0.03
    assert hr[meta["true_SB"] == 1].between(52, 60).mean() > 0.75
    assert hr[meta["true_ST"] == 1].between(100, 112).mean() > 0.55
    # Records of each rhythm class on both sides of each threshold within 1 bpm.
    assert hr[sinus].between(59, 60, inclusive="left").sum() >= 20
    assert hr[sinus].between(60, 61).sum() >= 20
    assert hr[sinus].between(99, 101).sum() >= 20


def test_af_is_irregular_and_sinus_mostly_regular_with_overlap(code_set):
    x, meta = code_set
    cv = np.array([np.std(rr) / np.mean(rr) for rr in (np.diff(qrs_peaks(r)) for r in x)])
    af = meta["true_AF"].to_numpy() == 1
    assert af.sum() >= 5
    assert np.median(cv[af]) > 0.1
    assert np.median(cv[~af]) < 0.04
    # Regularised AF and sinus arrhythmia or ectopy: RR irregularity alone is no giveaway.
    assert cv[af].min() < np.percentile(cv[~af], 99)
    assert (cv[~af] > 0.06).sum() >= 5


def test_bundle_branch_blocks_widen_the_qrs(code_set):
    x, meta = code_set
    bbb = ((meta["true_RBBB"] == 1) | (meta["true_LBBB"] == 1)).to_numpy()
    assert (meta.loc[bbb, "qrs_ms"] >= 120).all() and (meta.loc[~bbb, "qrs_ms"] < 120).all()
    width = np.array([qrs_width_ms(r) for r in x])
    assert bbb.sum() >= 10
    assert width[bbb].mean() > width[~bbb].mean() + 30
    assert np.corrcoef(width, meta["qrs_ms"])[0, 1] > 0.5


def test_intervals_have_density_near_the_thresholds(large_meta):
    meta = large_meta["code"]
    sinus, avb = meta["true_AF"] == 0, meta["true_1dAVb"] == 1
    assert meta.loc[avb, "pr_ms"].between(200, 230).mean() > 0.6
    assert meta.loc[sinus & ~avb, "pr_ms"].between(190, 200).mean() > 0.08
    bbb = (meta["true_RBBB"] == 1) | (meta["true_LBBB"] == 1)
    assert meta.loc[bbb, "qrs_ms"].between(120, 135).mean() > 0.4
    # Incomplete blocks (and wide normal QRS) just under the threshold.
    assert meta.loc[~bbb, "qrs_ms"].between(110, 120).mean() > 0.05
    assert meta.loc[~bbb, "qrs_ms"].max() > 119


def test_incomplete_blocks_show_weak_terminal_forces():
    quiet = dataclasses.replace(
        SITES["code"], name="quiet", noise_mv=0.0, emg_mv=0.0, wander_mv=0.0, hum_mv=0.0
    )
    full = dataclasses.replace(quiet, incomplete_bbb=1.0)
    none = dataclasses.replace(quiet, incomplete_bbb=0.0)
    (x_full, m_full), (x_none, _) = (generate(s, 60, seed=4) for s in (full, none))
    normal = ((m_full["true_RBBB"] == 0) & (m_full["true_LBBB"] == 0)).to_numpy()
    assert (m_full.loc[normal, "qrs_ms"] >= 100).all()
    assert (m_full.loc[normal, "qrs_ms"] < 120).all()
    # Same patients and waves apart from the incomplete block's added late forces.
    changed = np.abs(x_full[normal] - x_none[normal]).max(axis=(1, 2))
    assert (changed > 0.05).mean() > 0.9


def test_lvh_raises_precordial_voltage(code_set):
    x, meta = code_set
    v1, v5, v6 = (LEADS.index(lead) for lead in ("V1", "V5", "V6"))
    sokolow = -x[:, v1].min(axis=-1) + np.maximum(x[:, v5].max(axis=-1), x[:, v6].max(axis=-1))
    lvh = (meta["LVH"] == 1).to_numpy()
    assert lvh.sum() >= 5
    assert np.median(sokolow[lvh]) > 1.5 * np.median(sokolow[~lvh])


def test_conduction_conditions_are_thresholds_of_the_intervals(large_meta):
    for meta in large_meta.values():
        af = meta["true_AF"] == 1
        assert meta.loc[af, "pr_ms"].isna().all() and meta.loc[~af, "pr_ms"].notna().all()
        assert (meta["true_1dAVb"] == (meta["pr_ms"] > 200)).all()
        assert meta.loc[~af, "pr_ms"].between(120, 280).all()
        bbb = (meta["true_RBBB"] == 1) | (meta["true_LBBB"] == 1)
        assert (bbb == (meta["qrs_ms"] >= 120)).all()
        assert meta["qrs_ms"].between(70, 170).all()


# --- labels -------------------------------------------------------------------------------


@pytest.mark.parametrize("site", ["code", "lowpass_device"])
def test_prevalences_match_the_site(large_meta, site):
    meta = large_meta[site]
    for condition in CONDITIONS:
        expected = SITES[site].prevalence[condition]
        fnr, fpr = SITES[site].label_noise[condition]
        true, observed = meta[f"true_{condition}"].mean(), meta[condition].mean()
        assert abs(true - expected) < 0.015, (condition, true, expected)
        annotated = expected * (1 - fnr) + (1 - expected) * fpr
        assert abs(observed - annotated) < 0.015, (condition, observed, annotated)
    labelled = meta[list(LABELS)].sum(axis=1) > 0
    assert labelled.mean() < 0.5


def test_code_site_is_enriched_but_mostly_normal():
    prevalence = SITES["code"].prevalence
    assert all(0.04 <= prevalence[label] <= 0.08 for label in LABELS)


@pytest.mark.parametrize("prefix", ["", "true_"])
def test_mutual_exclusions(large_meta, prefix):
    for meta in large_meta.values():
        m = {c: meta[prefix + c] == 1 for c in CONDITIONS}
        assert not (m["RBBB"] & m["LBBB"]).any()
        assert (m["SB"].astype(int) + m["ST"] + m["AF"] <= 1).all()
        assert not (m["AF"] & m["1dAVb"]).any()


def test_annotation_noise_matches_the_site(large_meta):
    for site, meta in large_meta.items():
        true = meta[TRUE].to_numpy() == 1
        said = meta[list(CONDITIONS)].to_numpy() == 1
        fnr, fpr = np.array([SITES[site].label_noise[c] for c in CONDITIONS]).mean(axis=0)
        # Pooled over conditions: thousands of positives, tens of thousands of negatives.
        assert abs((~said[true]).mean() - fnr) < 0.015, site
        assert abs(said[~true].mean() - fpr) < 0.0015, site
        per_fp = [said[~true[:, j], j].mean() for j in range(len(CONDITIONS))]
        assert max(per_fp) < 3 * fpr + 0.003 and min(per_fp) > 0, site
        assert (said != true).any(axis=1).mean() < 0.1


def test_annotation_noise_is_per_record_and_leaves_the_signal():
    clean = dataclasses.replace(
        SITES["code"], name="clean", label_noise={c: (0.0, 0.0) for c in CONDITIONS}
    )
    sloppy = dataclasses.replace(clean, label_noise={c: (0.3, 0.05) for c in CONDITIONS})
    (x1, m1), (x2, m2) = (generate(s, 300, fs=20.0, n_samples=200, seed=6) for s in (clean, sloppy))
    np.testing.assert_array_equal(x1, x2)
    labels = [*CONDITIONS]
    np.testing.assert_array_equal(m1[labels].to_numpy(), m1[TRUE].to_numpy())
    pd.testing.assert_frame_equal(m1[TRUE], m2[TRUE])
    assert (m1[labels].to_numpy() != m2[labels].to_numpy()).any(axis=1).mean() > 0.2
    # Chronic conditions are true per patient, but each record is annotated on its own.
    assert (m2.groupby("patient_id")["RBBB"].nunique() > 1).any()


def test_risk_grows_with_age_and_rbbb_with_male_sex(large_meta):
    meta = large_meta["code"]
    old = meta["age"] >= meta["age"].median()
    for label in ("1dAVb", "RBBB", "LBBB", "AF"):
        assert meta.loc[old, label].mean() > 1.5 * meta.loc[~old, label].mean(), label
    rbbb, male = meta["true_RBBB"], meta["is_male"]
    assert rbbb[male].mean() > 1.3 * rbbb[~male].mean()


# --- patients -----------------------------------------------------------------------------


def test_patient_ids_are_contiguous_with_several_records_each():
    _, meta = generate("code", 600, fs=20.0, n_samples=200, seed=2, patient_id_start=1000)
    ids = meta["patient_id"]
    assert set(ids) == set(range(1000, 1000 + ids.nunique()))
    assert ids.is_monotonic_increasing
    assert 1.3 < len(meta) / ids.nunique() < 1.7
    assert ids.value_counts().max() >= 3


def test_chronic_conditions_belong_to_the_patient(large_meta):
    meta = large_meta["code"]
    for condition in ("RBBB", "LBBB", "LVH", "MI"):
        column = f"true_{condition}"
        assert (meta.groupby("patient_id")[column].nunique() == 1).all(), condition


def test_records_of_a_patient_look_alike(code_set):
    x, meta = code_set
    # Per-lead signed extreme voltages: a morphology fingerprint (axis, amplitudes, polarity).
    fingerprint = np.concatenate([x.max(axis=-1), x.min(axis=-1)], axis=1)
    pid = meta["patient_id"].to_numpy()
    same, other = [], []
    for i in range(len(x) - 1):
        distance = np.linalg.norm(fingerprint[i] - fingerprint[i + 1])
        (same if pid[i] == pid[i + 1] else other).append(distance)
    assert len(same) >= 30
    assert np.median(same) < 0.6 * np.median(other)


# --- sites --------------------------------------------------------------------------------


def _band_power(x: np.ndarray, low: float, high: float) -> float:
    f, p = welch(x, fs=FS, nperseg=256, axis=-1)
    return float(np.median(p[..., (f >= low) & (f < high)].sum(axis=-1)))


def _qrs_amplitude(x: np.ndarray) -> float:
    sos = butter(2, [5.0, 30.0], btype="bandpass", fs=FS, output="sos")
    return float(np.median(np.percentile(np.abs(sosfiltfilt(sos, x, axis=-1)), 99, axis=-1)))


def test_ood_sites_shift_noise_wander_amplitude(site_sets):
    hf = {s: _band_power(x, 35.0, 50.0) for s, x in site_sets.items()}
    lf = {s: _band_power(x, 0.0, 0.7) for s, x in site_sets.items()}
    amp = {s: _qrs_amplitude(x) for s, x in site_sets.items()}
    assert hf["noisy"] > 10 * hf["code"]
    assert hf["lowpass_device"] < 0.2 * hf["code"]
    assert lf["noisy"] > 10 * lf["code"] and lf["ptbxl_like"] > 3 * lf["code"]
    assert amp["ptbxl_like"] < 0.9 * amp["code"] and amp["lowpass_device"] < 0.7 * amp["code"]
    for site in ("ptbxl_like", "noisy", "lowpass_device"):
        assert SITES[site].prevalence != SITES["code"].prevalence


def test_labels_stay_visible_on_ood_sites():
    x, meta = generate("lowpass_device", 150, seed=8)
    measured = np.array([60 * FS / np.diff(qrs_peaks(r)).mean() for r in x])
    sinus = (meta["true_AF"] == 0).to_numpy()
    assert np.median(np.abs(measured / meta["heart_rate"].to_numpy() - 1)[sinus]) < 0.03
    bbb = ((meta["true_RBBB"] == 1) | (meta["true_LBBB"] == 1)).to_numpy()
    width = np.array([qrs_width_ms(r) for r in x])
    assert width[bbb].mean() > width[~bbb].mean() + 20


def test_custom_site_profile():
    quiet = SiteProfile(name="quiet", noise_mv=0.0, emg_mv=0.0, wander_mv=0.0, hum_mv=0.0)
    _, meta = generate(quiet, 5, seed=1)
    assert (meta["site"] == "quiet").all() and meta["record_id"].iloc[0] == "quiet-s1-0000000"
    assert pickle.loads(pickle.dumps(quiet)) == quiet
    assert hash(quiet) == hash(dataclasses.replace(quiet))
    with pytest.raises(dataclasses.FrozenInstanceError):
        quiet.gain = 2.0  # type: ignore[misc]


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"noise_mv": -1.0}, "noise_mv"),
        ({"wander_hz": (1.0, 0.5)}, "wander_hz"),
        ({"prevalence": {"AF": 0.1}}, "prevalence"),
        ({"prevalence": {c: 0.4 for c in CONDITIONS}}, "prevalence"),
        ({"male_fraction": 1.5}, "male_fraction"),
        ({"label_noise": {"AF": (0.1, 0.0)}}, "label_noise"),
        ({"label_noise": {c: (0.1, -0.01) for c in CONDITIONS}}, "label_noise"),
        ({"label_noise": {c: 0.1 for c in CONDITIONS}}, "label_noise"),
        ({"ectopy": 1.5}, "ectopy"),
        ({"incomplete_bbb": -0.1}, "incomplete_bbb"),
    ],
)
def test_invalid_site_profile_is_rejected(changes, field):
    with pytest.raises(ValueError, match=field) as error:
        dataclasses.replace(SITES["code"], **changes)
    assert "\n" not in str(error.value)


# --- arguments ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        ({"n_records": 0}, "n_records"),
        ({"n_records": 2.5}, "n_records"),
        ({"fs": 0.0}, "fs"),
        ({"fs": float("nan")}, "fs"),
        ({"n_samples": 0}, "n_samples"),
        ({"duration_s": -1.0}, "duration_s"),
        ({"seed": -1}, "seed"),
        ({"patient_id_start": -5}, "patient_id_start"),
        ({"site": "mars"}, "site"),
    ],
)
def test_bad_arguments_raise_naming_the_argument(kwargs, name):
    arguments = {"site": "code", "n_records": 2} | kwargs
    with pytest.raises(ValueError, match=rf"^{name}\b") as error:
        generate(arguments.pop("site"), arguments.pop("n_records"), **arguments)
    assert "\n" not in str(error.value)


def test_unknown_site_lists_the_known_sites():
    with pytest.raises(ValueError, match="known sites: code, ptbxl_like, noisy, lowpass_device"):
        generate("mars", 1)
