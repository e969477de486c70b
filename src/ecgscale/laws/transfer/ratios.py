"""SSL/SL ratios of effective data: bounds of each matched pair, and their summary per task and
method with its hierarchical bootstrap and verdict (see :mod:`ecgscale.laws.transfer`)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from numpy.typing import NDArray

from ecgscale.laws.transfer.curves import Array, Curve, CurveKey, curve_key
from ecgscale.laws.verdicts import MAX_SPREAD, ratio_verdict

RATIO_KEYS = ["task", "family", "target_params", "data_size", "d_f", "method", "seed"]
CLUSTER_KEYS = ["family", "target_params", "data_size", "seed"]
"""Within a task and method, the coordinates of an SSL and an SL run: one bootstrap cluster."""
PAIR_COLUMNS = ["loss", "d_e", "d_e_lower", "d_e_upper", "censored", "d_t_lower", "d_t_upper"]


def _ratio_bounds(lo_a: Array, hi_a: Array, lo_b: Array, hi_b: Array) -> tuple[Array, Array]:
    """Bounds of a / b for a in [lo_a, hi_a] and b in [lo_b, hi_b], all ≥ 0, broadcast:
    x / inf = 0 and x / 0 = inf; 0 / 0 and inf / inf leave the bound open (0 below, inf
    above); NaN where a bound is NaN."""
    missing = np.isnan(lo_a) | np.isnan(hi_a) | np.isnan(lo_b) | np.isnan(hi_b)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore", under="ignore"):
        lower, upper = lo_a / hi_b, hi_a / lo_b
    lower = np.where(np.isnan(lower), 0.0, lower)
    upper = np.where(np.isnan(upper), np.inf, upper)
    return np.where(missing, np.nan, lower), np.where(missing, np.nan, upper)


def _transferred(lower: Array, upper: Array, d_f: Array) -> tuple[Array, Array]:
    """Bounds of D_T = D_E − D_F clipped at 0 from below (no transfer is 0 records)."""
    return np.maximum(lower - d_f, 0.0), np.maximum(upper - d_f, 0.0)


def transfer_ratios(eff: pd.DataFrame) -> pd.DataFrame:
    """Every matched SSL/SL pair of rows of :func:`effective_data`, with bounds of its ratios.

    Rows match on :data:`RATIO_KEYS` (several rows of one key and paradigm pair each with
    each). ``ratio_lower``/``ratio_upper`` bound D_E(SSL) / D_E(SL) (see
    :func:`_ratio_bounds`); ``d_t_ratio_lower``/``d_t_ratio_upper`` bound D_T(SSL) / D_T(SL)
    with D_T clipped at 0. NaN where a D_E is missing. ``row_ssl``/``row_sl`` are the rows'
    positions in ``eff``.
    """
    rows = eff.reset_index(drop=True)
    rows = rows[[*RATIO_KEYS, "paradigm", *PAIR_COLUMNS]].assign(row=np.arange(len(rows)))
    ssl, sl = (rows[rows["paradigm"] == p].drop(columns="paradigm") for p in ("ssl", "sl"))
    both = ssl.merge(sl, on=RATIO_KEYS, how="inner", suffixes=("_ssl", "_sl"))
    both = both.sort_values([*RATIO_KEYS, "row_ssl", "row_sl"], ignore_index=True)
    side = {
        p: tuple(both[f"d_e_{b}_{p}"].to_numpy(float) for b in ("lower", "upper"))
        for p in ("ssl", "sl")
    }
    d_f = both["d_f"].to_numpy(float)
    both["ratio_lower"], both["ratio_upper"] = _ratio_bounds(*side["ssl"], *side["sl"])
    both["d_t_ratio_lower"], both["d_t_ratio_upper"] = _ratio_bounds(
        *_transferred(*side["ssl"], d_f), *_transferred(*side["sl"], d_f)
    )
    return both


def _weighted_median(values: Array, weights: Array) -> Array:
    """Per row, the median of ``values`` each repeated ``weights`` times (whole numbers) as
    :func:`numpy.median` gives it: the middle value or the mean of the two middle ones."""
    order = np.argsort(values, axis=1)
    v = np.take_along_axis(values, order, axis=1)
    c = np.cumsum(np.take_along_axis(weights, order, axis=1), axis=1)
    total = c[:, -1:]
    first = np.take_along_axis(v, (c > (total - 1) // 2).argmax(axis=1)[:, None], axis=1)
    second = np.take_along_axis(v, (c > total // 2).argmax(axis=1)[:, None], axis=1)
    return ((first + second) / 2)[:, 0]


def _weighted_geomean(values: Array, weights: Array) -> Array:
    """Per row, the weighted geometric mean: 0 when a weighted value is 0, inf when one is inf,
    NaN when both are."""
    with np.errstate(divide="ignore", invalid="ignore"):
        logs = np.where(weights > 0, weights * np.log(values), 0.0)
        return np.exp(logs.sum(axis=1) / weights.sum(axis=1))


@dataclass(frozen=True)
class _Draws:
    """Bootstrap resamples of one set of pairs: bounds of each pair's ratio in each resample
    (resamples × pairs) and the pair's weight there (how often its cluster was drawn)."""

    lower: Array
    upper: Array
    weights: Array


OPEN_WORDS = {
    "d_e": (
        "SSL D_E ≥ the largest from-scratch D_F, or SL D_E ≤ the smallest",
        "SSL D_E ≤ the smallest from-scratch D_F, or SL D_E ≥ the largest",
    ),
    "d_t": (
        "SSL D_E ≥ the largest from-scratch D_F, or SL D_T possibly 0",
        "SSL D_T possibly 0, or SL D_E ≥ the largest from-scratch D_F",
    ),
}
"""What makes a pair's ratio open above and below, per ratio."""


def _ratio_summary(
    lower: Array, upper: Array, draws: _Draws | None, level: float, kind: str
) -> dict[str, Any]:
    """Summary of pair ratios with bounds [lower, upper]: counts, median, range and geometric
    mean as [lower, upper] bounds, intervals at ``level`` of the median and geometric mean from
    the resamples, verdict and direction, and the reason when it is not determined."""
    ones = np.ones((1, lower.size))
    point = {
        "median_bounds": [
            _weighted_median(lower[None], ones)[0],
            _weighted_median(upper[None], ones)[0],
        ],
        "min_bounds": [lower.min(), upper.min()],
        "max_bounds": [lower.max(), upper.max()],
        "geomean_bounds": [
            _weighted_geomean(lower[None], ones)[0],
            _weighted_geomean(upper[None], ones)[0],
        ],
    }
    out: dict[str, Any] = {
        "n_exact": int((lower == upper).sum()),
        "n_right_censored": int(((upper == np.inf) & (lower > 0) & (lower < upper)).sum()),
        "n_left_censored": int(((lower == 0) & (upper < np.inf) & (lower < upper)).sum()),
        "n_undefined": int(((lower == 0) & (upper == np.inf)).sum()),
        **{k: [float(v) for v in pair] for k, pair in point.items()},
    }
    q = (1 - level) / 2
    for stat, function in (("median", _weighted_median), ("geomean", _weighted_geomean)):
        if draws is None:
            out[f"{stat}_ci"] = [float("nan"), float("nan")]
            continue
        lo = np.quantile(function(draws.lower, draws.weights), q, method="lower")
        hi = np.quantile(function(draws.upper, draws.weights), 1 - q, method="higher")
        out[f"{stat}_ci"] = [float(lo), float(hi)]
    verdict = ratio_verdict(*out["median_ci"], open_ended=True)
    out["verdict"], out["direction"] = verdict["verdict"], verdict["direction"]
    verdict = verdict["verdict"]
    out["reason"] = (
        "" if verdict != "not_determined" else _reason(out["median_ci"], draws, level, kind)
    )
    return out


def _reason(ci: list[float], draws: _Draws | None, level: float, kind: str) -> str:
    """Why an interval leaves the ratio not determined."""
    if draws is None:
        return "there are no bootstrap resamples (n_boot = 0, or curves without draws)"
    lo, hi = ci
    above, below = OPEN_WORDS[kind]
    interval = f"its {level:.0%} interval"
    if hi == np.inf and lo == 0:
        return (
            f"{interval} is open at both ends: in some resamples half or more of the pairs are "
            "censored on each side (a D_E beyond the from-scratch D_F range)"
        )
    if hi == np.inf:
        return (
            f"{interval} is open above: in some resamples half or more of the pairs are "
            f"bounded only from below ({above})"
        )
    if lo == 0:
        return (
            f"{interval} is open below: in some resamples half or more of the pairs are "
            f"bounded only from above ({below})"
        )
    return f"{interval} spans a factor {hi / lo:.3g}, more than {MAX_SPREAD:g}"


def _row_draws(
    eff: pd.DataFrame, rows: NDArray[np.int64], curves: Mapping[CurveKey, Curve], n_boot: int
) -> tuple[Array, Array] | None:
    """D_E bounds of the ``rows`` of ``eff`` under each of the first ``n_boot`` draws of their
    curves (draws × rows); None when ``n_boot`` is 0 or a curve has fewer draws."""
    part = eff.iloc[rows].reset_index(drop=True)
    groups = part.groupby(["task", "family", "target_params"]).indices
    at = {curve_key(group): idx for group, idx in groups.items()}
    draws = [curves[key].draws for key in at]
    if n_boot < 1 or any(d is None or len(d) < n_boot for d in draws):
        return None
    loss = part["loss"].to_numpy(float)
    lower, upper = np.empty((n_boot, rows.size)), np.empty((n_boot, rows.size))
    for key, idx in at.items():
        lo, hi = curves[key].draw_bounds(loss[idx])
        lower[:, idx], upper[:, idx] = lo[:n_boot], hi[:n_boot]
    return lower, upper


def _pair_draws(
    use: pd.DataFrame,
    eff: pd.DataFrame,
    curves: Mapping[CurveKey, Curve],
    n_boot: int,
    rng: np.random.Generator,
) -> dict[str, _Draws] | None:
    """The hierarchical bootstrap of the pairs ``use`` (module docstring): D_E and D_T ratio
    bounds in each resample, weighted by how often the resample drew each pair's cluster;
    None without curve draws."""
    rows, where = np.unique(use[["row_ssl", "row_sl"]].to_numpy(), return_inverse=True)
    found = _row_draws(eff, rows, curves, n_boot)
    if found is None:
        return None
    where = where.reshape(-1, 2)
    lower, upper = found
    ssl = (lower[:, where[:, 0]], upper[:, where[:, 0]])
    sl = (lower[:, where[:, 1]], upper[:, where[:, 1]])
    clusters = use.groupby(CLUSTER_KEYS, sort=True).ngroup().to_numpy()
    n_clusters = int(clusters.max()) + 1
    drawn = rng.integers(0, n_clusters, (n_boot, n_clusters))
    flat = (drawn + n_clusters * np.arange(n_boot)[:, None]).ravel()  # one bincount for all
    counts = np.bincount(flat, minlength=n_boot * n_clusters).reshape(n_boot, n_clusters)
    weights = counts[:, clusters].astype(float)
    d_f = use["d_f"].to_numpy(float)
    return {
        "d_e": _Draws(*_ratio_bounds(*ssl, *sl), weights),
        "d_t": _Draws(*_ratio_bounds(*_transferred(*ssl, d_f), *_transferred(*sl, d_f)), weights),
    }


def _summarise(
    pairs: pd.DataFrame,
    eff: pd.DataFrame,
    curves: Mapping[CurveKey, Curve],
    *,
    n_boot: int,
    seed: int,
    level: float,
) -> dict[str, Any]:
    """The summary entry of one task and method's pairs (rows of :func:`transfer_ratios`)."""
    have = ~np.isnan(pairs["ratio_lower"].to_numpy(float))
    use = pairs[have]
    censored = use[["censored_ssl", "censored_sl"]].to_numpy(str)
    entry: dict[str, Any] = {
        "task": str(pairs["task"].iloc[0]),
        "method": str(pairs["method"].iloc[0]),
        "definition": "D_E(SSL) / D_E(SL)",
        "n_pairs": len(pairs),
        "n_missing": int((~have).sum()),
        "n_above_range": int((censored == ">=").any(axis=1).sum()),
        "n_below_range": int((censored == "<=").any(axis=1).sum()),
        "level": float(level),
    }
    if (~have).any():
        rows = pairs.loc[~have, ["row_ssl", "row_sl"]].to_numpy().ravel()
        reasons = sorted(set(eff["reason"].iloc[rows].astype(str)) - {""})
        entry["missing_reason"] = "; ".join(reasons[:3]) + ("; …" if len(reasons) > 3 else "")
    if use.empty:
        reason = "no pair has effective data on both sides"
        return {**entry, "verdict": "not_determined", "direction": None, "reason": reason}
    losses = use[["loss_ssl", "loss_sl"]].to_numpy(float)
    entry["d_f_range"] = [float(use["d_f"].min()), float(use["d_f"].max())]
    entry["loss_range"] = [float(losses.min()), float(losses.max())]
    entry["n_clusters"] = int(use.groupby(CLUSTER_KEYS).ngroups)
    draws = _pair_draws(use, eff, curves, n_boot, np.random.default_rng(seed))
    entry["n_boot"] = 0 if draws is None else n_boot
    bounds = {
        k: use[[f"{k}_lower", f"{k}_upper"]].to_numpy(float).T for k in ("ratio", "d_t_ratio")
    }
    d_e_draws, d_t_draws = (None, None) if draws is None else (draws["d_e"], draws["d_t"])
    entry.update(_ratio_summary(*bounds["ratio"], d_e_draws, level, "d_e"))
    entry["d_t"] = {
        "definition": "D_T(SSL) / D_T(SL), D_T = D_E − D_F clipped at 0",
        **{
            f"n_no_transfer_{p}": int((use[f"d_t_upper_{p}"].to_numpy(float) <= 0).sum())
            for p in ("ssl", "sl")
        },
        **_ratio_summary(*bounds["d_t_ratio"], d_t_draws, level, "d_t"),
    }
    return entry


def transfer_summary(
    eff: pd.DataFrame,
    curves: Mapping[CurveKey, Curve],
    *,
    n_boot: int = 200,
    seed: int = 0,
    level: float = 0.95,
    pairs: pd.DataFrame | None = None,
) -> list[dict[str, Any]]:
    """SSL/SL transfer efficiency per task and method, with censoring bounds, hierarchical
    bootstrap intervals and a verdict (module docstring); JSON-serialisable entries.

    ``eff`` holds rows of :func:`effective_data` made with ``curves`` (which need ``n_boot``
    draws for intervals); ``pairs`` are its :func:`transfer_ratios`, computed when not given.
    Each entry has ``task``, ``method``, ``definition``; counts ``n_pairs``, ``n_missing``
    (pairs without D_E on a side, left out, ``missing_reason`` says why), ``n_exact``,
    ``n_right_censored`` (ratio bounded only from below), ``n_left_censored`` (only from
    above), ``n_undefined`` ([0, inf]), ``n_above_range`` / ``n_below_range`` (pairs with a
    D_E censored at ≥ the largest / ≤ the smallest from-scratch D_F); ``median_bounds``,
    ``min_bounds``, ``max_bounds``, ``geomean_bounds`` ([lower, upper]); ``median_ci``,
    ``geomean_ci`` (intervals at ``level``, NaN without resamples); ``verdict``
    (:func:`~ecgscale.laws.verdicts.ratio_verdict` of the median's interval), ``direction``
    and ``reason`` (why not determined); ``d_f_range``, ``loss_range`` (D_F and task losses
    of the pairs used), ``n_clusters``, ``n_boot``, ``level``; and ``d_t``, the same for
    D_T(SSL) / D_T(SL) with ``n_no_transfer_ssl`` / ``_sl`` (pairs whose D_T is surely ≤ 0).
    """
    if not 0 < level < 1:
        raise ValueError(f"level must be in (0, 1), got {level}")
    eff = eff.reset_index(drop=True)
    pairs = transfer_ratios(eff) if pairs is None else pairs
    return [
        _summarise(part, eff, curves, n_boot=n_boot, seed=seed, level=level)
        for _, part in pairs.groupby(["task", "method"], sort=True)
    ]
