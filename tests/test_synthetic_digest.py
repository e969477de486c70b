"""The synthetic generator's output, pinned: a guard for refactors of its modules.

Each case generates a few hundred records (more than one rendering chunk) with fixed seeds and
compares a SHA-256 digest of the metadata (column names, dtypes and values, floats written
exactly) and a fingerprint of the signals with those recorded from the generator before its
split into modules. The generator must not change (the project forbids tuning it), so a
mismatch means a refactor changed what it draws or computes.

The signals go through matrix products, whose BLAS kernels sum in a CPU-dependent order
(OpenBLAS's SkylakeX kernels on an Intel Xeon, Haswell's on an AMD EPYC): measured, 0.9% of the
samples then differ in the last float32 bit (at most 2.4e-7 mV; 3e-9 of the signals' norm).
So the signals are compared by their norm and three random projections (Gaussian weights over
the samples of a record, then over records), each within 1e-6 of the signals' norm: three
hundred times that rounding, and far below any change in what the generator draws (a changed
record moves a projection by about its own norm). Floating-point results may differ more
across numpy/scipy versions, so the test skips where their versions differ from the ones the
references were recorded with; on an upgrade, record them again from an unchanged generator
(``python tests/test_synthetic_digest.py`` prints them).
"""

from __future__ import annotations

import hashlib

import numpy as np
import pandas as pd
import pytest
import scipy

from ecgscale.data.synthetic import SITES, SiteProfile, generate

RECORDED_WITH = {"numpy": "2.4.6", "scipy": "1.17.1"}

QUIET = SiteProfile(
    name="quiet",
    noise_mv=0.0,
    emg_mv=0.0,
    wander_mv=0.0,
    hum_mv=0.0,
    lowpass_hz=150.0,
    highpass_hz=0.3,
)
"""A profile without noise (the generator's no-noise branches), with both filters."""

CASES: dict[str, tuple[str | SiteProfile, dict]] = {
    **{
        f"{site}@100": (site, {"fs": 100.0, "n_samples": 1000, "seed": 7}) for site in sorted(SITES)
    },
    **{
        f"{site}@400": (site, {"fs": 400.0, "n_samples": 4096, "seed": 8, "patient_id_start": 5})
        for site in sorted(SITES)
    },
    "quiet@500": (QUIET, {"fs": 500.0, "n_samples": 3000, "duration_s": 7.5, "seed": 9}),
}
N_RECORDS = 300

RECORDED: dict[str, tuple[str, str, tuple[float, ...]]] = {
    "code@100": (
        "float32(300, 12, 1000)",
        "389e05e28ff614fdf5fb5b90581459094f3c06f4c03bb9177692560671807fa1",
        (373.7011397, 600.4279561, 493.9422872, 560.2482784),
    ),
    "code@400": (
        "float32(300, 12, 4096)",
        "0c3b495e0ec631dc956249fd093fd356e90d8edf52d2d8cc245ecc03b693ea03",
        (801.3098393, 1085.849714, -16.52258115, 2790.417121),
    ),
    "lowpass_device@100": (
        "float32(300, 12, 1000)",
        "a3620206d7bdfa7bbb6abf8c1bd9d2317c74499b3e3a63b54ab79ca550ac5967",
        (281.7336325, -310.1504532, 659.1584219, -61.53779827),
    ),
    "lowpass_device@400": (
        "float32(300, 12, 4096)",
        "6a57a223dced0324a68ef49e8ce1600919ff7b3cd139dc42232f84e0a44c725f",
        (451.692134, 374.8769916, 345.3065436, -122.0931967),
    ),
    "noisy@100": (
        "float32(300, 12, 1000)",
        "6f2c130d2c20ce7fd51a894aaa4ac0762cd4fe636ae116eb900699458837b498",
        (829.3489867, 1242.744951, 684.4143395, 789.4383069),
    ),
    "noisy@400": (
        "float32(300, 12, 4096)",
        "d64d014f67dfcffbb879f5d3c886119ea9b651286751078b1beeab3ec33bc06c",
        (1689.04868, 2662.55914, 175.582979, 113.2279314),
    ),
    "ptbxl_like@100": (
        "float32(300, 12, 1000)",
        "343eb7e3183a73e6d58a49744f85f0874f26e2d27911419c5a0fdb7b7993ccc1",
        (468.9869409, -969.4719554, -188.8009435, 839.5218427),
    ),
    "ptbxl_like@400": (
        "float32(300, 12, 4096)",
        "7bd662c4eeaf8edcc95b81f0b5575e6dc6bcef515beea8e681f678a369950a1f",
        (950.0288188, -364.968045, -58.97551024, 132.4310526),
    ),
    "quiet@500": (
        "float32(300, 12, 3000)",
        "154c7a34702c14d83e0e8709238baebbe62bbd4658022d86bd118287de8b3860",
        (630.7564393, 780.7054599, -286.6273815, -493.9660921),
    ),
}
"""Case name -> (signals' dtype and shape, metadata digest, signals' fingerprint), recorded
from the generator before its split (the fingerprints from the same, unchanged generator)."""


SIGNAL_RTOL = 1e-6
"""Tolerance of the signals' fingerprint, as a share of their norm."""


def meta_digest(meta: pd.DataFrame) -> str:
    """SHA-256 of the metadata frame's column names, dtypes and values."""
    frame = hashlib.sha256()
    for column in meta.columns:
        frame.update(f"{column}:{meta[column].dtype};".encode())
    frame.update(meta.to_csv(index=False, float_format="%.17g").encode())
    return frame.hexdigest()


def fingerprint(signals: np.ndarray) -> tuple[float, float, float, float]:
    """The signals' norm and three random projections of them (see the module's docstring)."""
    x = signals.reshape(len(signals), -1).astype(np.float64)
    rng = np.random.default_rng(0)
    per_sample = rng.standard_normal((x.shape[1], 3))
    per_record = rng.standard_normal((x.shape[0], 3))
    projections = ((x @ per_sample) * per_record).sum(0)
    return float(np.linalg.norm(x)), *(float(p) for p in projections)


def compute(case: str) -> tuple[str, str, tuple[float, ...]]:
    """(signals' dtype and shape, metadata digest, signals' fingerprint) of a case."""
    site, kwargs = CASES[case]
    signals, meta = generate(site, N_RECORDS, **kwargs)
    return f"{signals.dtype}{signals.shape}", meta_digest(meta), fingerprint(signals)


@pytest.mark.parametrize("case", sorted(CASES))
def test_generator_output_unchanged(case: str) -> None:
    installed = {"numpy": np.__version__, "scipy": scipy.__version__}
    if installed != RECORDED_WITH:
        pytest.skip(f"references recorded with {RECORDED_WITH}, running {installed}")
    layout, meta, prints = compute(case)
    expected_layout, expected_meta, expected_prints = RECORDED[case]
    assert layout == expected_layout, f"{case}: signals' dtype or shape changed"
    assert meta == expected_meta, f"{case}: metadata changed"
    tolerance = SIGNAL_RTOL * expected_prints[0]
    assert np.allclose(prints, expected_prints, rtol=0, atol=tolerance), f"{case}: signals changed"


def test_fingerprint_sees_a_change_of_one_record_and_not_rounding() -> None:
    signals, _ = generate("code", 20, fs=100.0, n_samples=500, duration_s=5.0, seed=3)
    reference = np.array(fingerprint(signals))
    tolerance = SIGNAL_RTOL * reference[0]
    rounded = signals.copy()
    rounded[:, :, ::7] = np.nextafter(rounded[:, :, ::7], np.float32(np.inf))  # last-bit changes
    assert np.allclose(fingerprint(rounded), reference, rtol=0, atol=tolerance)
    changed = signals.copy()
    changed[5] *= 1.01  # one record of twenty, 1% louder
    assert not np.allclose(fingerprint(changed), reference, rtol=0, atol=tolerance)


if __name__ == "__main__":
    from threadpoolctl import threadpool_limits

    with threadpool_limits(1):  # as under pytest (tests/conftest.py)
        for name in sorted(CASES):
            print(f"    {name!r}: {compute(name)!r},")
