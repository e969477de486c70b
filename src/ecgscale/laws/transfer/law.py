"""The transfer law ``D_T = k·D_F^α·N^β`` (see :mod:`ecgscale.laws.transfer`)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from ecgscale.laws.transfer.curves import Array

MIN_LAW_POINTS = 4
"""Points with exact D_T > 0 that a transfer-law fit needs."""


def _ols(x: Array, y: Array) -> tuple[Array, int]:
    """Least-squares coefficients and the rank of the design."""
    coef, _, rank, _ = np.linalg.lstsq(x, y, rcond=None)
    return coef, int(rank)


def fit_transfer_law(
    df: pd.DataFrame,
    *,
    n_boot: int = 200,
    seed: int = 0,
    ci: float = 0.95,
    size: str = "target_params",
) -> dict[str, Any]:
    """Fit ``D_T = k·D_F^α·N^β`` by least squares in log space (N from column ``size``).

    Uses the rows with finite ``d_t > 0`` that are not censored (column ``censored``, when
    present); needs at least 4 of them and 2 distinct D_F. With a single N only k and α are
    fitted and β is NaN. Intervals are percentiles of ``n_boot`` resamples of the points
    (resamples whose design is rank-deficient are skipped). Raises ValueError with a one-line
    reason when the law cannot be fitted.
    """
    d_f, d_t, n = (df[c].to_numpy(float) for c in ("d_f", "d_t", size))
    ok = np.isfinite(d_t) & (d_t > 0) & np.isfinite(d_f) & (d_f > 0) & np.isfinite(n) & (n > 0)
    if "censored" in df:
        ok &= df["censored"].to_numpy(str) == ""
    notes = []
    if (~ok).any():
        notes.append(
            f"{int((~ok).sum())} of {ok.size} points left out (D_T censored, not finite or <= 0)"
        )
    m = int(ok.sum())
    if m < MIN_LAW_POINTS:
        raise ValueError(f"{m} points with exact, finite D_T > 0; the law needs {MIN_LAW_POINTS}")
    d_f, d_t, n = d_f[ok], d_t[ok], n[ok]
    if np.unique(d_f).size < 2:
        raise ValueError(f"a single D_F ({d_f[0]:g}); the law needs at least 2")
    columns = [np.ones(m), np.log(d_f)]
    with_n = np.unique(n).size > 1
    if with_n:
        columns.append(np.log(n))
    else:
        notes.append(f"a single model size N = {n[0]:g}: beta not fitted")
    x, y = np.column_stack(columns), np.log(d_t)
    coef, rank = _ols(x, y)
    if rank < x.shape[1]:
        raise ValueError("log D_F and log N are collinear; alpha and beta cannot be separated")
    rng = np.random.default_rng(seed)
    samples = []
    for _ in range(n_boot):
        idx = rng.integers(0, m, m)
        c, r = _ols(x[idx], y[idx])
        if r == x.shape[1]:
            samples.append(c)
    q = 50 * (1 - ci)
    if samples:
        lo, hi = np.percentile(np.array(samples), [q, 100 - q], axis=0)
    else:
        lo = hi = np.full(x.shape[1], np.nan)
    if not with_n:
        coef, lo, hi = (np.append(v, np.nan) for v in (coef, lo, hi))
    resid = y - x @ coef[: x.shape[1]]
    return {
        "k": float(np.exp(coef[0])),
        "alpha": float(coef[1]),
        "beta": float(coef[2]),
        "k_lo": float(np.exp(lo[0])),
        "k_hi": float(np.exp(hi[0])),
        "alpha_lo": float(lo[1]),
        "alpha_hi": float(hi[1]),
        "beta_lo": float(lo[2]),
        "beta_hi": float(hi[2]),
        "rmse_log": float(np.sqrt(np.mean(resid**2))),
        "n_points": m,
        "n_boot": len(samples),
        "ci": ci,
        "note": "; ".join(notes),
    }
