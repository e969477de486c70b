"""Efficiency ratios between fitted scaling curves, over the loss range actually observed.

Inverting a power law ``L(x) = E + A·x^−α`` gives the size that reaches a loss,
``x(L) = (A / (L − E))^{1/α}`` (inf at or below E). Two curves A and B fitted to the same
kind of size compare as ``r(L) = x_B(L) / x_A(L)``: with x the model size N this is
*parameter efficiency*, with x the data size D *data efficiency* (the same maths). The ratio is
evaluated only on the losses both curves were actually observed at, and summarised by its
minimum, maximum and geometric mean there, each with a percentile interval from the two fits'
bootstrap samples. Transfer efficiency (effective data D_E of SSL against SL, Hernandez et al.
2021) needs the from-scratch curves and lives in :mod:`ecgscale.laws.transfer`. The verdicts
are :mod:`ecgscale.laws.verdicts`' (a ratio of two curves also by its interval at each loss,
:func:`ecgscale.laws.verdicts.curve_ratio_verdict`).
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from typing import Any

import numpy as np
from numpy.typing import ArrayLike

from ecgscale.laws.fit import FitResult
from ecgscale.laws.forms import Array

PAIRING = "index"
"""How bootstrap samples of the two fits are paired: sample i of A with sample i of B (the
first min(S_A, S_B) of each). The two bootstraps resample independent data sets, so index
pairs are independent draws of the pair of curves."""
SUMMARIES = ("min", "max", "geomean")
RANGE_RTOL = 1e-9
"""Relative slack when checking that given losses lie inside the observed overlap."""


def percentile_band(values: ArrayLike, level: float, axis: int = 0) -> tuple[Array, Array]:
    """Percentile interval ``(lo, hi)`` at ``level`` along ``axis``, NaN draws left out.

    Between two finite neighbouring draws the percentile is interpolated linearly (numpy's
    default); when a neighbour is infinite (a curve that never reaches the loss) the outer
    neighbour is taken, so inf survives instead of turning into NaN. All-NaN slices give NaN.
    """
    v = np.asarray(values, dtype=float)
    q_lo, q_hi = (1 - level) / 2, (1 + level) / 2
    with warnings.catch_warnings(), np.errstate(invalid="ignore", over="ignore"):
        warnings.simplefilter("ignore", RuntimeWarning)
        lin_lo, lin_hi = np.nanquantile(v, [q_lo, q_hi], axis=axis)
        low = np.nanquantile(v, q_lo, axis=axis, method="lower")
        high = np.nanquantile(v, q_hi, axis=axis, method="higher")
    lo = np.where(np.isfinite(lin_lo), lin_lo, low)
    hi = np.where(np.isfinite(lin_hi), lin_hi, high)
    return lo, hi


def float_list(values: ArrayLike) -> list[float]:
    """A flat list of Python floats (NaN and inf kept)."""
    return [float(v) for v in np.ravel(np.asarray(values, dtype=float))]


def _log_size(e: ArrayLike, a: ArrayLike, alpha: ArrayLike, loss: ArrayLike) -> Array:
    """``log x(L) = (log A − log(L − E)) / α``, broadcast; +inf at or below E, NaN when the
    curve does not decrease (A ≤ 0 or α ≤ 0) or the loss is NaN."""
    e, a, alpha, loss = (np.asarray(v, dtype=float) for v in (e, a, alpha, loss))
    with np.errstate(divide="ignore", invalid="ignore"):
        value = (np.log(a) - np.log(loss - e)) / alpha
    value = np.where(loss <= e, np.inf, value)
    return np.where((a > 0) & (alpha > 0) & ~np.isnan(loss), value, np.nan)


def _power_params(fit: FitResult | Mapping[str, float], name: str) -> dict[str, float]:
    """``E, A, alpha`` of a power-law fit (or a mapping of them), or a one-line ValueError."""
    if isinstance(fit, FitResult):
        if fit.form != "power":
            raise ValueError(f"{name} must be a power-law fit, got a {fit.form!r} fit")
        params: Mapping[str, float] = fit.params
    elif isinstance(fit, Mapping):
        params = fit
    else:
        raise ValueError(f"{name} must be a FitResult or a mapping of E, A, alpha")
    missing = [p for p in ("E", "A", "alpha") if p not in params]
    if missing:
        raise ValueError(f"{name} is missing power-law parameters {missing}")
    return {p: float(params[p]) for p in ("E", "A", "alpha")}


def size_for_loss(fit: FitResult | Mapping[str, float], loss: ArrayLike) -> Array:
    """Inverse of a power law: ``x(L) = (A / (L − E))^{1/α}``, inf at or below E.

    ``fit`` is a power-law :class:`FitResult` (or a mapping with E, A, alpha). Returns an array
    shaped like ``loss``; NaN for a NaN loss or a curve that does not decrease (α ≤ 0, A ≤ 0).
    """
    p = _power_params(fit, "fit")
    with np.errstate(over="ignore"):
        return np.exp(_log_size(p["E"], p["A"], p["alpha"], loss))


def _observed(values: ArrayLike, name: str) -> Array:
    """A non-empty 1-D array of finite positive losses, or a one-line ValueError."""
    arr = np.asarray(values, dtype=float)
    if arr.ndim != 1 or arr.size == 0:
        raise ValueError(f"{name} must be a non-empty 1-D array of losses, got shape {arr.shape}")
    if not (np.isfinite(arr).all() and (arr > 0).all()):
        raise ValueError(f"{name} must hold finite losses > 0")
    return arr


def _loss_grid(
    y_a: ArrayLike | None, y_b: ArrayLike | None, losses: ArrayLike | None, n_grid: int
) -> tuple[Array, tuple[float, float], str]:
    """The losses to compare at, the loss range and where that range came from."""
    if (y_a is None) != (y_b is None):
        raise ValueError("give both y_a and y_b (the losses each fit was made on), or neither")
    if y_a is None and losses is None:
        raise ValueError("give y_a and y_b (the losses each fit was made on) or losses")
    grid = None if losses is None else _observed(losses, "losses")
    if y_a is None:
        assert grid is not None
        return grid, (float(grid.min()), float(grid.max())), "losses"
    assert y_b is not None
    obs_a, obs_b = _observed(y_a, "y_a"), _observed(y_b, "y_b")
    lo, hi = max(obs_a.min(), obs_b.min()), min(obs_a.max(), obs_b.max())
    if not lo < hi:
        raise ValueError(
            f"observed loss ranges do not overlap: A [{obs_a.min():.6g}, {obs_a.max():.6g}],"
            f" B [{obs_b.min():.6g}, {obs_b.max():.6g}]"
        )
    if grid is None:
        if n_grid < 2:
            raise ValueError(f"n_grid must be >= 2, got {n_grid}")
        grid = np.geomspace(lo, hi, n_grid)
    elif (grid < lo * (1 - RANGE_RTOL)).any() or (grid > hi * (1 + RANGE_RTOL)).any():
        raise ValueError(f"losses must lie in the observed overlap [{lo:.6g}, {hi:.6g}]")
    return grid, (float(lo), float(hi)), "observed"


def _summaries(log_ratio: Array) -> dict[str, Array]:
    """Min, max and geometric mean of ``exp(log_ratio)`` over the last axis (NaN left out)."""
    with warnings.catch_warnings(), np.errstate(invalid="ignore", over="ignore"):
        warnings.simplefilter("ignore", RuntimeWarning)
        return {
            "min": np.exp(np.nanmin(log_ratio, axis=-1)),
            "max": np.exp(np.nanmax(log_ratio, axis=-1)),
            "geomean": np.exp(np.nanmean(log_ratio, axis=-1)),
        }


def efficiency_ratio(
    fit_a: FitResult,
    fit_b: FitResult,
    *,
    y_a: ArrayLike | None = None,
    y_b: ArrayLike | None = None,
    losses: ArrayLike | None = None,
    n_grid: int = 50,
    level: float = 0.95,
    quantity: str = "x",
) -> dict[str, Any]:
    """Size ratio ``r(L) = x_B(L) / x_A(L)`` of two power-law fits at equal loss, with intervals.

    ``x(L) = (A / (L − E))^{1/α}``. A :class:`FitResult` does not keep its observations, so the
    loss range comes from ``y_a`` and ``y_b``, the losses each fit was made on: the ratio is
    evaluated on ``n_grid`` log-spaced losses over the intersection of their ranges, or at
    ``losses`` (which must then lie in it; without ``y_a``/``y_b`` they are used as given).
    Intervals are percentiles at ``level`` of the ratio under index-paired bootstrap samples
    (:data:`PAIRING`); they are ``None`` unless both fits carry samples (see ``bootstrap``).
    A ratio > 1 means B needs more ``quantity`` than A to reach the same loss.

    Returns a JSON-serialisable dict: ``quantity``, ``definition``, ``loss_range``,
    ``range_source`` ("observed" or "losses"), ``losses``, ``ratio``, ``ratio_lo``,
    ``ratio_hi`` (lists over the losses), for each of ``min``, ``max``, ``geomean`` the value,
    ``<name>_lo``, ``<name>_hi`` and (min, max) ``<name>_loss`` where it is reached, and
    ``level``, ``n_samples``, ``pairing``, ``params_a``, ``params_b``.
    """
    pa, pb = _power_params(fit_a, "fit_a"), _power_params(fit_b, "fit_b")
    if not 0 < level < 1:
        raise ValueError(f"level must be in (0, 1), got {level}")
    grid, loss_range, source = _loss_grid(y_a, y_b, losses, n_grid)

    def log_ratio(a: Mapping[str, ArrayLike], b: Mapping[str, ArrayLike]) -> Array:
        with np.errstate(invalid="ignore"):
            return _log_size(b["E"], b["A"], b["alpha"], grid) - _log_size(
                a["E"], a["A"], a["alpha"], grid
            )

    point = log_ratio(pa, pb)  # (G,)
    summary = _summaries(point)
    with np.errstate(over="ignore"):
        ratio = np.exp(point)
    out: dict[str, Any] = {
        "quantity": quantity,
        "definition": f"{quantity}_B(L) / {quantity}_A(L), {quantity}(L) = (A / (L - E))^(1/alpha)",
        "loss_range": list(loss_range),
        "range_source": source,
        "losses": float_list(grid),
        "ratio": float_list(ratio),
        "level": float(level),
        "pairing": PAIRING,
        "params_a": pa,
        "params_b": pb,
    }
    sa, sb = (f.samples if isinstance(f, FitResult) else None for f in (fit_a, fit_b))
    n_samples = 0 if sa is None or sb is None else min(len(sa), len(sb))
    out["n_samples"] = n_samples
    bands: dict[str, tuple[Array, Array]] = {}
    if n_samples:
        assert sa is not None and sb is not None
        names = ("E", "A", "alpha")
        draw_a = {p: sa[:n_samples, j, None] for j, p in enumerate(names)}
        draw_b = {p: sb[:n_samples, j, None] for j, p in enumerate(names)}
        draws = log_ratio(draw_a, draw_b)  # (S, G)
        with np.errstate(over="ignore"):
            bands["ratio"] = percentile_band(np.exp(draws), level)
        for name, values in _summaries(draws).items():
            bands[name] = percentile_band(values, level)
    for name in ("ratio", *SUMMARIES):
        lo, hi = bands.get(name, (None, None))
        out[f"{name}_lo"] = None if lo is None else float_list(lo) if name == "ratio" else float(lo)
        out[f"{name}_hi"] = None if hi is None else float_list(hi) if name == "ratio" else float(hi)
    for name in SUMMARIES:
        out[name] = float(summary[name])
    finite = ~np.isnan(point)
    for name, pick in (("min", np.argmin), ("max", np.argmax)):
        where = int(np.flatnonzero(finite)[pick(point[finite])]) if finite.any() else None
        out[f"{name}_loss"] = None if where is None else float(grid[where])
    return out


def parameter_efficiency(fit_a: FitResult, fit_b: FitResult, **kwargs: Any) -> dict[str, Any]:
    """Parameter efficiency ``N_B(L) / N_A(L)`` of two loss-vs-model-size power-law fits.

    ``N(L) = (A / (L − E))^{1/α}``; keywords and result as :func:`efficiency_ratio`.
    """
    return efficiency_ratio(fit_a, fit_b, quantity="N", **kwargs)


def data_efficiency(fit_a: FitResult, fit_b: FitResult, **kwargs: Any) -> dict[str, Any]:
    """Data efficiency ``D_B(L) / D_A(L)`` of two loss-vs-data-size power-law fits.

    ``D(L) = (B / (L − E))^{1/β}``; keywords and result as :func:`efficiency_ratio`.
    """
    return efficiency_ratio(fit_a, fit_b, quantity="D", **kwargs)
