"""Backtests of scaling-law fits: fit without the largest sizes, predict them, score the miss.

A law earns trust by predicting what it was not fitted on. :func:`backtest` leaves out the
points at the ``k`` largest (or smallest) values of one input, fits the rest with bootstrap
intervals, and compares the held-out losses with the point prediction and with a prediction
interval: per point the relative error ``(L̂ − L) / L`` and whether ``L`` lies inside.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.typing import ArrayLike

from ecgscale.laws.efficiency import float_list, percentile_band
from ecgscale.laws.fit import DEFAULT_DELTA, FitError, FitResult, bootstrap, predict_interval
from ecgscale.laws.forms import Array, get_form

HOLD_OUTS = ("largest", "smallest")


def _default_by(input_names: tuple[str, ...]) -> str:
    """``n`` for a joint law, else the form's only input."""
    return "n" if "n" in input_names else input_names[0]


def backtest(
    form: str,
    y: ArrayLike,
    *,
    hold_out: str = "largest",
    by: str | None = None,
    k: int = 1,
    level: float = 0.95,
    n_boot: int = 200,
    seed: int = 0,
    delta: float = DEFAULT_DELTA,
    **inputs: ArrayLike,
) -> dict[str, Any]:
    """Fit ``form`` without the points at the ``k`` largest (``hold_out="smallest"``: smallest)
    distinct values of input ``by``, predict them, and score the predictions.

    ``by`` defaults to ``n`` for the joint law and to ``x`` otherwise (for ``loss_to_loss``,
    whose x is a loss, better models are ``hold_out="smallest"``). The training points are
    fitted with :func:`~ecgscale.laws.fit.bootstrap` (``n_boot``, ``seed``, ``ci=level``).
    Each held-out point gets the point prediction ``L̂``, its relative error ``(L̂ − L)/L``,
    the law's confidence band ``band`` (:func:`~ecgscale.laws.fit.predict_interval`: parameter
    uncertainty only) and a prediction interval ``interval`` that adds the scatter of points
    about the law: percentiles of ``log L̂_s − r_j`` over bootstrap curves s and training
    log-residuals ``r_j`` (scaled by ``sqrt(m / (m − p))`` for m points, p parameters).
    ``inside`` is judged against ``interval``, ``inside_band`` against ``band``.

    Returns a JSON-serialisable dict: ``form``, ``by``, ``hold_out``, ``k``, ``level``,
    ``held_out_values``, ``n_train``, ``n_held_out``, ``points`` (per held-out point: its
    ``inputs``, ``truth``, ``prediction``, ``rel_error``, ``band``, ``interval``, ``inside``,
    ``inside_band``), ``mean_abs_rel_error``, ``mean_rel_error``, ``max_abs_rel_error``,
    ``coverage``, ``coverage_band``, ``residual_sd_log`` and ``fit`` (the training fit).
    """
    f = get_form(form)
    if hold_out not in HOLD_OUTS:
        raise ValueError(f"hold_out must be one of {list(HOLD_OUTS)}, got {hold_out!r}")
    by = _default_by(f.input_names) if by is None else by
    if by not in f.input_names:
        raise ValueError(f"by must be one of the {f.name} inputs {list(f.input_names)}, got {by!r}")
    if set(inputs) != set(f.input_names):
        raise ValueError(f"{f.name} takes inputs {list(f.input_names)}, got {sorted(inputs)}")
    if not 0 < level < 1:
        raise ValueError(f"level must be in (0, 1), got {level}")
    y_arr = np.asarray(y, dtype=float)
    arrays = {name: np.asarray(v, dtype=float) for name, v in inputs.items()}
    for name, arr in {"y": y_arr, **arrays}.items():
        if arr.ndim != 1 or arr.size != y_arr.size:
            raise ValueError(f"{name} must be 1-D with one value per loss, got shape {arr.shape}")
    key = arrays[by]
    if not np.isfinite(key).all():
        raise ValueError(f"{by} must be finite to choose the held-out points")
    distinct = np.unique(key)
    if not 1 <= k < distinct.size:
        raise ValueError(f"k must be in [1, {distinct.size - 1}] ({distinct.size} distinct {by})")
    held_values = distinct[-k:] if hold_out == "largest" else distinct[:k]
    held = np.isin(key, held_values)
    train = {name: arr[~held] for name, arr in arrays.items()}
    test = {name: arr[held] for name, arr in arrays.items()}
    try:
        result = bootstrap(
            f, y_arr[~held], n_boot=n_boot, seed=seed, ci=level, delta=delta, **train
        )
    except FitError as err:
        raise FitError(f"fit on the {int((~held).sum())} training points failed: {err}") from None
    assert result.samples is not None
    truth = y_arr[held]
    pred = result.predict(**test)
    band_lo, band_hi = predict_interval(result, ci=level, **test)
    interval_lo, interval_hi, sd = _prediction_interval(result, y_arr[~held], train, test, level)
    with np.errstate(invalid="ignore", divide="ignore"):
        rel = (pred - truth) / truth
    inside = (truth >= interval_lo) & (truth <= interval_hi)
    inside_band = (truth >= band_lo) & (truth <= band_hi)
    points = [
        {
            "inputs": {name: float(test[name][i]) for name in f.input_names},
            "truth": float(truth[i]),
            "prediction": float(pred[i]),
            "rel_error": float(rel[i]),
            "band": [float(band_lo[i]), float(band_hi[i])],
            "interval": [float(interval_lo[i]), float(interval_hi[i])],
            "inside": bool(inside[i]),
            "inside_band": bool(inside_band[i]),
        }
        for i in range(truth.size)
    ]
    return {
        "form": f.name,
        "by": by,
        "hold_out": hold_out,
        "k": int(k),
        "level": float(level),
        "held_out_values": float_list(held_values),
        "n_train": int((~held).sum()),
        "n_held_out": int(held.sum()),
        "points": points,
        "mean_abs_rel_error": float(np.mean(np.abs(rel))),
        "mean_rel_error": float(np.mean(rel)),
        "max_abs_rel_error": float(np.max(np.abs(rel))),
        "coverage": float(np.mean(inside)),
        "coverage_band": float(np.mean(inside_band)),
        "residual_sd_log": sd,
        "fit": result.to_dict(),
    }


def _prediction_interval(
    result: FitResult,
    y_train: Array,
    train: dict[str, Array],
    test: dict[str, Array],
    level: float,
) -> tuple[Array, Array, float]:
    """Percentiles of ``log L̂_s(test) − r_j``: bootstrap curves s plus training log-residuals
    ``r_j = log L̂(train_j) − log L_j`` scaled by ``sqrt(m / (m − p))``; and the residuals' SD."""
    form = get_form(result.form)
    m, p = y_train.size, form.n_params
    with np.errstate(invalid="ignore", divide="ignore"):
        resid = np.log(result.predict(**train)) - np.log(y_train)
    resid = resid * (np.sqrt(m / (m - p)) if m > p else 1.0)
    assert result.samples is not None
    params = {name: result.samples[:, j, None] for j, name in enumerate(form.param_names)}
    with np.errstate(invalid="ignore", divide="ignore"):
        log_curves = np.log(form.evaluate(params, **{k: v[None, :] for k, v in test.items()}))
    draws = log_curves[:, None, :] - resid[None, :, None]  # (S, m, H)
    lo, hi = percentile_band(draws.reshape(-1, draws.shape[-1]), level)
    sd = float(np.sqrt(np.mean(resid**2)))
    return np.exp(lo), np.exp(hi), sd
