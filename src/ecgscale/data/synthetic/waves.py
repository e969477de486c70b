"""The dipole model's waves: the wave table's layout, heart-vector directions and the normal
waves (P, septal q, R, terminal s, T) of each patient."""

from __future__ import annotations

import numpy as np

# Waves of the dipole model, in the order of the wave table's K axis.
_P_RA, _P_LA, _SEPTAL_Q, _R_APEX, _R_BASE, _TERMINAL_S = range(6)
_R_PRIME, _LBBB_1, _LBBB_2, _Q_MI, _T_WAVE, _ST_DEV = range(6, 12)
_N_WAVES = 12


def _direction(theta_deg: np.ndarray, psi_deg: np.ndarray) -> np.ndarray:
    """Unit vectors (..., 3) at frontal angle theta (0 = left, 90 = inferior), elevation psi."""
    theta, psi = np.deg2rad(theta_deg), np.deg2rad(psi_deg)
    return np.stack(
        [np.cos(psi) * np.cos(theta), np.cos(psi) * np.sin(theta), np.sin(psi)], axis=-1
    )


def _unit(v: np.ndarray) -> np.ndarray:
    """Normalise vectors along the last axis."""
    return v / np.linalg.norm(v, axis=-1, keepdims=True)


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
