"""Rendering the heart: beat timing (sinus, ectopy, AF), lead vectors, beat templates placed
at their onsets, fibrillatory waves, and the 12 leads derived from I, II and V1-V6."""

from __future__ import annotations

import math

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from ecgscale.data.synthetic.conditions import _RHYTHMS
from ecgscale.data.synthetic.waves import _P_LA, _P_RA, _ST_DEV, _T_WAVE, _direction

# Lead vectors of I and II (frontal plane, x left, y inferior) and of V1-V6 (horizontal-plane
# angle from the left towards anterior, length, inferior component).
_LIMB_VECTORS = np.array([[1.0, 0.0, 0.0], [0.5, math.sqrt(3) / 2, 0.0]])
_V_ANGLE_DEG = np.array([115.0, 95.0, 75.0, 50.0, 25.0, 0.0])
_V_LENGTH = np.array([1.2, 1.5, 1.5, 1.4, 1.25, 1.1])
_V_INFERIOR = np.array([-0.1, 0.0, 0.1, 0.25, 0.3, 0.35])

_PRE_S, _POST_S = 0.45, 0.80  # beat template window around the QRS onset (s)
_LEAD_IN_S = 0.8  # beats start this long before the record so no partial beat is missing
_MIN_RR_S = 0.28  # shortest RR interval (s), reached only in fast AF


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
