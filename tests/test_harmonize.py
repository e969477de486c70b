"""Harmonisation: lead names, derived leads, units, resampling, length, and every check."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ecgscale.data.harmonize import Target, canonical_lead, fit_length, harmonize, resample
from ecgscale.data.schema import LEADS
from ecgscale.data.sources.base import RawRecord, Rejection

FS = 500.0
CODE_NAMES = ["DI", "DII", "DIII", "AVR", "AVL", "AVF", "V1", "V2", "V3", "V4", "V5", "V6"]


def _ecg(n_leads: int = 12, seconds: float = 10.0, fs: float = FS, seed: int = 0) -> np.ndarray:
    """Smooth random signals in mV (sums of low-frequency sines), distinct per lead."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * fs)) / fs
    f = rng.uniform(0.5, 8, size=(n_leads, 4, 1))
    a = rng.uniform(0.1, 0.5, size=(n_leads, 4, 1))
    return (a * np.sin(2 * np.pi * f * t + rng.uniform(0, 6, size=(n_leads, 4, 1)))).sum(1)


def _rec(signal: np.ndarray, leads=LEADS, fs: float = FS, units: str = "mV") -> RawRecord:
    return RawRecord("r1", signal, fs, list(leads), "r1.hea", units=units)


TARGET = Target(fs=100.0, n_samples=1000)


def test_identity_when_already_canonical():
    x = _ecg(fs=100.0)
    out, flags = harmonize(_rec(x, fs=100.0), TARGET)
    assert flags == "" and out.dtype == np.float32 and out.shape == (12, 1000)
    np.testing.assert_allclose(out, x, rtol=1e-6, atol=1e-6)


@settings(max_examples=30, deadline=None)
@given(st.permutations(list(range(12))), st.booleans())
def test_leads_reordered_by_name_and_synonym(perm, code_names):
    names = CODE_NAMES if code_names else list(LEADS)
    x = _ecg(fs=100.0)
    out, _ = harmonize(_rec(x[perm], [names[i] for i in perm], fs=100.0), TARGET)
    np.testing.assert_allclose(out, x, atol=1e-6)


@pytest.mark.parametrize(
    "name, lead",
    [
        ("DI", "I"),
        ("ii", "II"),
        ("Lead III", "III"),
        ("AVR", "aVR"),
        ("avl", "aVL"),
        ("aVF", "aVF"),
        ("v1", "V1"),
        ("MLII", "II"),
        ("X", None),
        ("V7", None),
    ],
)
def test_canonical_lead(name, lead):
    assert canonical_lead(name) == lead


def test_inverted_avr_and_derived_limb_leads():
    x = _ecg(fs=100.0)
    i, ii = x[0], x[1]
    # a source with I, II, -aVR and the chest leads only
    sig = np.stack([i, ii, (i + ii) / 2, *x[6:]])
    out, _ = harmonize(_rec(sig, ["I", "II", "-aVR", *LEADS[6:]], fs=100.0), TARGET)
    np.testing.assert_allclose(out[1], out[0] + out[2], atol=1e-5)  # Einthoven: II = I + III
    np.testing.assert_allclose(out[3], -(i + ii) / 2, atol=1e-5)
    np.testing.assert_allclose(out[4], i - ii / 2, atol=1e-5)
    np.testing.assert_allclose(out[5], ii - i / 2, atol=1e-5)


@pytest.mark.parametrize("units, scale", [("uV", 1000.0), ("V", 0.001), ("mV", 1.0)])
def test_units_to_millivolts(units, scale):
    x = _ecg(fs=100.0)
    out, _ = harmonize(_rec(x * scale, fs=100.0, units=units), TARGET)
    np.testing.assert_allclose(out, x, rtol=1e-5, atol=1e-5)


def test_resampling_keeps_the_band_and_removes_aliases():
    t = np.arange(5000) / FS
    low = np.sin(2 * np.pi * 5 * t)
    high = np.sin(2 * np.pi * 70 * t)  # above the new Nyquist frequency (50 Hz)
    out_low = resample(low, FS, 100.0)
    out_high = resample(high, FS, 100.0)
    assert out_low.shape == (1000,)
    ref = np.sin(2 * np.pi * 5 * np.arange(1000) / 100.0)
    assert np.abs(out_low[50:-50] - ref[50:-50]).max() < 0.01
    assert np.abs(out_high[50:-50]).max() < 0.01  # naive decimation would alias it to 30 Hz


@pytest.mark.parametrize("fs_from", [257.0, 360.0, 400.0, 500.0, 1000.0])
def test_resampled_duration(fs_from):
    x = np.zeros(int(10 * fs_from))
    assert abs(resample(x, fs_from, 100.0).shape[0] - 1000) <= 1


@settings(max_examples=50, deadline=None)
@given(st.integers(1, 300), st.integers(1, 300), st.sampled_from(["center", "start"]))
def test_fit_length(length, n, align):
    x = np.arange(1, length + 1, dtype=float)
    out = fit_length(x, n, align)
    assert out.shape == (n,)
    kept = out[out != 0]
    assert len(kept) == min(length, n)
    assert np.all(np.diff(kept) == 1)  # a contiguous piece, in order
    if align == "start":
        assert kept[0] == 1 or length <= n and out[0] == 1
    if align == "center" and length > n:
        assert kept[0] == 1 + (length - n) // 2


def _reason(result) -> str:
    assert isinstance(result, Rejection), result
    return result.reason


@pytest.mark.parametrize("fs", [0.0, -500.0, float("nan"), float("inf"), 30.0, 50_000.0, None])
def test_impossible_sampling_rate(fs):
    assert _reason(harmonize(_rec(_ecg(), fs=fs), TARGET)) == "impossible_fs"


def test_checks_name_the_problem():
    x = _ecg()
    nan = x.copy()
    nan[4, 100] = np.nan
    assert _reason(harmonize(_rec(nan), TARGET)) == "nan"
    assert _reason(harmonize(_rec(np.full_like(x, 0.2)), TARGET)) == "flat_lead"
    assert _reason(harmonize(_rec(x * 1000), TARGET)) == "implausible_amplitude"
    assert _reason(harmonize(_rec(x[:, :500]), TARGET)) == "too_short"


def test_flat_and_saturated_leads_flagged_or_rejected():
    x = _ecg()
    x[7] = 0.2
    x[2] = np.clip(x[2], -0.3, 0.3)
    out, flags = harmonize(_rec(x), TARGET)
    assert out.shape == (12, 1000) and flags == "flat_lead:V2;saturated:III"
    strict = Target(fs=100.0, n_samples=1000, reject_flagged=True)
    r = harmonize(_rec(x), strict)
    assert _reason(r) == "flat_lead" and r.detail == "flat lead in V2"
    x[7] = _ecg()[7]
    assert _reason(harmonize(_rec(x), strict)) == "saturated"
    assert harmonize(_rec(_ecg()), TARGET)[1] == ""


def test_lead_problems():
    x = _ecg()
    assert _reason(harmonize(_rec(x[:11], LEADS[:11]), TARGET)) == "wrong_lead_count"
    assert _reason(harmonize(_rec(x, [*LEADS[:11], "X9"]), TARGET)) == "unknown_lead"
    assert _reason(harmonize(_rec(x, [*LEADS[:11], "V5"]), TARGET)) == "header_mismatch"
    assert _reason(harmonize(_rec(x[:10], LEADS), TARGET)) == "header_mismatch"


def test_bandpass_removes_baseline_wander():
    t = np.arange(5000) / FS
    x = _ecg() + 2.0 * np.sin(2 * np.pi * 0.05 * t)  # slow wander of 2 mV
    out, _ = harmonize(_rec(x), Target(fs=100.0, n_samples=1000, bandpass=(0.5, 40.0)))
    base, _ = harmonize(_rec(x), TARGET)
    assert np.abs(out.mean(axis=1)).max() < 0.1 < np.abs(base.mean(axis=1)).max()
