"""The synthetic generator's output, pinned bit for bit: a guard for refactors of its modules.

Each case generates a few hundred records (more than one rendering chunk) with fixed seeds and
compares SHA-256 digests of the signals' bytes and of the metadata (column names, dtypes and
values, floats written exactly) with digests recorded from the generator before its split into
modules. The generator must not change (the project forbids tuning it), so a mismatch means a
refactor changed what it draws or computes.

Floating-point results may differ in the last bit across numpy/scipy versions or CPUs (SIMD
code paths of sin/exp), so the test skips where the numpy or scipy version differs from the
one the digests were recorded with; on an upgrade, record them again from an unchanged
generator (``python tests/test_synthetic_digest.py`` prints them).
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

DIGESTS: dict[str, tuple[str, str]] = {
    "code@100": (
        "65bd48386a2ed2485d457dcabaad0bb51bdbbe98b8f5a71eda21f3e877aaf203",
        "389e05e28ff614fdf5fb5b90581459094f3c06f4c03bb9177692560671807fa1",
    ),
    "code@400": (
        "6ebac734c2e6b34a3166a64058a143e82c91689692f9071e72447adcabdb0260",
        "0c3b495e0ec631dc956249fd093fd356e90d8edf52d2d8cc245ecc03b693ea03",
    ),
    "lowpass_device@100": (
        "b24c9a4d90cbc30690c863ad30358365cbd8f98e0c2dded68b1894f51182ae4c",
        "a3620206d7bdfa7bbb6abf8c1bd9d2317c74499b3e3a63b54ab79ca550ac5967",
    ),
    "lowpass_device@400": (
        "b7786dd81120d8eac6718069b1dd2f23dacdfafe538d6e31c3b74661a260ab97",
        "6a57a223dced0324a68ef49e8ce1600919ff7b3cd139dc42232f84e0a44c725f",
    ),
    "noisy@100": (
        "a1c8b73426ace4ce4b47ac834807f1f8ac6ebac3af5a9ff4a865898b1bf407c8",
        "6f2c130d2c20ce7fd51a894aaa4ac0762cd4fe636ae116eb900699458837b498",
    ),
    "noisy@400": (
        "171b009d4c1312f0d607b87a18b7b66d3dc33e7b15ba4fd74b07b97418b0b05f",
        "d64d014f67dfcffbb879f5d3c886119ea9b651286751078b1beeab3ec33bc06c",
    ),
    "ptbxl_like@100": (
        "ee8054e768b4839b6dfa50705ca960c0e25f91f4c29db876f9791b0d2ed6ef78",
        "343eb7e3183a73e6d58a49744f85f0874f26e2d27911419c5a0fdb7b7993ccc1",
    ),
    "ptbxl_like@400": (
        "28fd65a39dd2be2ce460e63ca6e74f763e98e5f141b35038c903f1085393719c",
        "7bd662c4eeaf8edcc95b81f0b5575e6dc6bcef515beea8e681f678a369950a1f",
    ),
    "quiet@500": (
        "e75b501441a5661aac870e8a820a4fc1dd9606e43860e1eda031582de46904e0",
        "154c7a34702c14d83e0e8709238baebbe62bbd4658022d86bd118287de8b3860",
    ),
}
"""Case name -> (signals digest, metadata digest), recorded from the generator before its split."""


def digests(signals: np.ndarray, meta: pd.DataFrame) -> tuple[str, str]:
    """SHA-256 of the signals' dtype, shape and bytes, and of the metadata frame."""
    sig = hashlib.sha256(f"{signals.dtype}{signals.shape}".encode())
    sig.update(np.ascontiguousarray(signals).tobytes())
    frame = hashlib.sha256()
    for column in meta.columns:
        frame.update(f"{column}:{meta[column].dtype};".encode())
    frame.update(meta.to_csv(index=False, float_format="%.17g").encode())
    return sig.hexdigest(), frame.hexdigest()


def compute(case: str) -> tuple[str, str]:
    site, kwargs = CASES[case]
    return digests(*generate(site, N_RECORDS, **kwargs))


@pytest.mark.parametrize("case", sorted(CASES))
def test_generator_output_unchanged(case: str) -> None:
    installed = {"numpy": np.__version__, "scipy": scipy.__version__}
    if installed != RECORDED_WITH:
        pytest.skip(f"digests recorded with {RECORDED_WITH}, running {installed}")
    signals_digest, meta_digest = compute(case)
    expected_signals, expected_meta = DIGESTS[case]
    assert meta_digest == expected_meta, f"{case}: metadata changed"
    assert signals_digest == expected_signals, f"{case}: signals changed"


if __name__ == "__main__":
    from threadpoolctl import threadpool_limits

    with threadpool_limits(1):  # as under pytest (tests/conftest.py)
        for name in sorted(CASES):
            print(f"    {name!r}: {compute(name)!r},")
