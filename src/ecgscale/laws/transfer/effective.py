"""Censored effective data D_E and transferred data D_T of task results (see
:mod:`ecgscale.laws.transfer`)."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd

from ecgscale.laws.transfer.curves import Curve, CurveKey, curve_key, curve_name


def effective_data(tasks: pd.DataFrame, curves: Mapping[CurveKey, Curve]) -> pd.DataFrame:
    """``tasks`` with effective data added: d_e, d_e_lower, d_e_upper, censored, d_t,
    d_t_lower, d_t_upper, fraction, reason.

    ``d_e`` is the curve's inverse (extrapolated beyond the points: for information only);
    ``d_e_lower``/``d_e_upper`` bound D_E, equal to d_e when it is exact; ``censored`` is
    ``">="`` (D_E ≥ the largest from-scratch D), ``"<="`` (D_E ≤ the smallest) or ``""``.
    The D_T columns are the D_E ones minus D_F (a lower bound below 0 stays as is);
    ``fraction`` is d_e / d_f. ``reason`` says why D_E is NaN.
    """
    out = tasks.reset_index(drop=True).copy()
    d_e, lower, upper = (np.full(len(out), np.nan) for _ in range(3))
    reason = np.full(len(out), "", dtype=object)
    for group, idx in out.groupby(["task", "family", "target_params"]).indices.items():
        key = curve_key(group)
        c = curves.get(key)
        if c is None:
            reason[idx] = f"no {curve_name(key)}"
            continue
        if c.reason:
            reason[idx] = c.reason
            continue
        loss = out["loss"].to_numpy(float)[idx]
        d_e[idx] = c.data_for(loss)
        lower[idx], upper[idx] = c.bounds(loss)
        reason[idx] = np.where(np.isnan(loss), "no loss", "")
    censored = np.where(upper == np.inf, ">=", np.where(lower == 0, "<=", ""))
    d_f = out["d_f"].to_numpy(float)
    with np.errstate(divide="ignore", invalid="ignore"):
        return out.assign(
            d_e=d_e,
            d_e_lower=lower,
            d_e_upper=upper,
            censored=censored,
            d_t=d_e - d_f,
            d_t_lower=lower - d_f,
            d_t_upper=upper - d_f,
            fraction=d_e / d_f,
            reason=reason.astype(str),
        )
