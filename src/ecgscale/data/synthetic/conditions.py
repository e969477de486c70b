"""What each condition changes in a patient's wave table (LVH strain, right and left bundle
branch block, old MI), and the record rhythms."""

from __future__ import annotations

import numpy as np

from ecgscale.data.synthetic.waves import (
    _LBBB_1,
    _LBBB_2,
    _Q_MI,
    _R_APEX,
    _R_BASE,
    _R_PRIME,
    _SEPTAL_Q,
    _ST_DEV,
    _T_WAVE,
    _TERMINAL_S,
    _direction,
    _set_wave,
    _unit,
)

_RHYTHMS = ("AF", "SB", "ST")  # mutually exclusive record rhythms; none of them = normal sinus


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
