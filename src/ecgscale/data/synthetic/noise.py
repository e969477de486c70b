"""Acquisition: electrode noise (white, muscle, baseline wander), powerline hum, the site's
filters and the crop or padding to the stored length."""

from __future__ import annotations

import math

import numpy as np
from scipy.signal import butter, sosfiltfilt

from ecgscale.data.synthetic.sites import SiteProfile

# Leads I, II, V1-V6 from electrodes RA, LA, LL, C1-C6 (V leads against Wilson's terminal).
_ELECTRODE_MIX = np.zeros((8, 9), np.float32)
_ELECTRODE_MIX[0, :3] = [-1.0, 1.0, 0.0]
_ELECTRODE_MIX[1, :3] = [-1.0, 0.0, 1.0]
_ELECTRODE_MIX[2:, :3] = -1.0 / 3.0
_ELECTRODE_MIX[2:, 3:] = np.eye(6)


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
