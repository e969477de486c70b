"""Effective data transferred by pre-training (Hernandez et al. 2021, "Scaling laws for transfer").

For each (task, family, target_params) the from-scratch runs give a curve
``L_scratch(D) = E + B·D^−β``, fitted with the project's Huber-in-log-space fitter to the
seed-averaged losses at each D_F (with a monotone log-log piecewise-linear curve through the
points as fallback, or on request). A pre-trained model reaching loss L at D_F labelled records
has *effective data* ``D_E = L_scratch⁻¹(L) = (B / (L − E))^{1/β}``: the from-scratch data that
would reach the same loss. ``D_T = D_E − D_F`` is the data transferred, ``D_E / D_F`` the
multiplier, and ``D_T = k·D_F^α·N^β`` the transfer law, fitted by least squares in log space
over points with ``D_T > 0`` with percentile-bootstrap intervals. SSL and SL compare as the ratio
of their D_E at matched task, family, size, pre-training data, D_F, method and seed.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike, NDArray

from ecgscale.laws import FitError, fit

Array = NDArray[np.float64]
CurveKey = tuple[str, str, int]
"""(task, family, target_params) of a from-scratch curve."""

CURVES = ("power", "piecewise")
MIN_BETA = 1e-3
"""A power-law curve with a smaller exponent counts as flat: it cannot be inverted."""
RANGE_RTOL = 1e-9
"""Relative slack on the measured D range before a D_E counts as extrapolated."""
MIN_LAW_POINTS = 4
"""Points with finite D_T > 0 that a transfer-law fit needs."""
RATIO_KEYS = ["task", "family", "target_params", "data_size", "d_f", "method", "seed"]
LAW_KEYS = ["task", "family", "paradigm", "method", "data_size"]


@dataclass(frozen=True)
class Curve:
    """A from-scratch loss curve L(D) of one (task, family, target_params), and its inverse.

    ``method`` is ``"power"`` (``L = E + B·D^−β``) or ``"piecewise"`` (straight lines in log-log
    space through the monotone, non-increasing fit of the points, the end segments continued;
    E, B and β are then NaN and the floor is 0). ``points`` are the seed-averaged (D, loss).
    """

    task: str
    family: str
    target_params: int
    method: str
    E: float
    B: float
    beta: float
    points: tuple[tuple[float, float], ...]
    note: str = field(default="", compare=False)

    @property
    def floor(self) -> float:
        """The loss the curve approaches as D → ∞: E, or 0 for the piecewise curve."""
        return self.E if self.method == "power" else 0.0

    @property
    def d_range(self) -> tuple[float, float]:
        """Smallest and largest measured D."""
        d = [p[0] for p in self.points]
        return min(d), max(d)

    @cached_property
    def _knots(self) -> tuple[Array, Array]:
        """(log D, log loss) knots of the piecewise curve: pooled adjacent violators so that
        the loss strictly decreases; each pooled block sits at its mean log D."""
        blocks: list[tuple[float, float, float]] = []  # (count, sum of loss, sum of log D)
        for d, loss in sorted(self.points):
            blocks.append((1.0, loss, float(np.log(d))))
            while len(blocks) > 1 and _mean(blocks[-1], 1) >= _mean(blocks[-2], 1):
                last = blocks.pop()
                blocks[-1] = tuple(a + b for a, b in zip(blocks[-1], last, strict=True))
        log_d = np.array([_mean(b, 2) for b in blocks])
        log_loss = np.log([_mean(b, 1) for b in blocks])
        return log_d, log_loss

    @property
    def reason(self) -> str:
        """Why the curve cannot be inverted, or ``""`` when it can."""
        if self.method == "power":
            if self.beta > MIN_BETA and self.B > 0:
                return ""
            return (
                f"from-scratch curve does not decrease with D"
                f" (beta = {self.beta:.3g}, B = {self.B:.3g})"
            )
        if self._knots[0].size >= 2:
            return ""
        return (
            "from-scratch curve does not decrease with D (the monotone fit of its points is flat)"
        )

    def loss_at(self, d: ArrayLike) -> Array:
        """The from-scratch loss at data size ``d``."""
        d = np.asarray(d, dtype=float)
        if self.method == "power":
            return self.E + self.B * d**-self.beta
        log_d, log_loss = self._knots
        if log_d.size < 2:
            return np.full(d.shape, float(np.exp(log_loss[0])))
        with np.errstate(divide="ignore"):
            return np.exp(_interp_lines(np.log(d), log_d, log_loss))

    def data_for(self, loss: ArrayLike) -> Array:
        """Effective data D_E reaching ``loss``: inf at or below the floor, NaN for a NaN loss
        or a curve that does not decrease (see :attr:`reason`)."""
        loss = np.asarray(loss, dtype=float)
        if self.reason:
            return np.full(loss.shape, np.nan)
        above = loss > self.floor
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
            if self.method == "power":
                d = (self.B / (loss - self.E)) ** (1.0 / self.beta)
            else:
                log_d, log_loss = self._knots
                d = np.exp(_interp_lines(np.log(loss), log_loss[::-1], log_d[::-1]))
        return np.where(above, d, np.where(np.isnan(loss), np.nan, np.inf))

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable dict (E, B, beta NaN for the piecewise curve)."""
        return {
            "task": self.task,
            "family": self.family,
            "target_params": int(self.target_params),
            "method": self.method,
            "E": float(self.E),
            "B": float(self.B),
            "beta": float(self.beta),
            "points": [[float(d), float(loss)] for d, loss in self.points],
            "note": self.note,
            "reason": self.reason,
        }


def _mean(block: tuple[float, float, float], i: int) -> float:
    """Mean of the ``i``-th summed quantity of a pooled block (its first entry is the count)."""
    return block[i] / block[0]


def _interp_lines(x: Array, xp: Array, fp: Array) -> Array:
    """Linear interpolation through knots ``xp`` (increasing), end segments continued."""
    y = np.interp(x, xp, fp)
    lo_slope = (fp[1] - fp[0]) / (xp[1] - xp[0])
    hi_slope = (fp[-1] - fp[-2]) / (xp[-1] - xp[-2])
    y = np.where(x < xp[0], fp[0] + lo_slope * (x - xp[0]), y)
    return np.where(x > xp[-1], fp[-1] + hi_slope * (x - xp[-1]), y)


def _make_curve(key: CurveKey, d: Array, loss: Array, *, curve: str, delta: float) -> Curve:
    """The curve through one group's points; ValueError when not even a piecewise one exists."""
    points = tuple((float(a), float(b)) for a, b in zip(d, loss, strict=True))
    note = ""
    if curve == "power":
        try:
            result = fit("power", loss, x=d, delta=delta)
        except FitError as err:
            note = f"power fit impossible ({err}); piecewise curve used"
        else:
            p = result.params
            return Curve(*key, "power", p["E"], p["A"], p["alpha"], points)
    if d.size < 2:
        raise ValueError(f"{d.size} from-scratch data size(s); a curve needs at least 2")
    return Curve(*key, "piecewise", np.nan, np.nan, np.nan, points, note)


def _curves_and_gaps(
    scratch: pd.DataFrame, *, curve: str, delta: float
) -> tuple[dict[CurveKey, Curve], list[dict[str, str]]]:
    """Curves of every (task, family, target_params) of ``scratch``, and the ones that failed."""
    if curve not in CURVES:
        raise ValueError(f"unknown curve {curve!r}; choose from {list(CURVES)}")
    done = scratch[(scratch["status"] == "done") & np.isfinite(scratch["loss"].astype(float))]
    done = done[done["loss"].astype(float) > 0]
    means = done.groupby(["task", "family", "target_params", "d_f"], sort=True)["loss"].mean()
    curves: dict[CurveKey, Curve] = {}
    gaps: list[dict[str, str]] = []
    for (task, family, n), part in means.groupby(level=[0, 1, 2], sort=True):
        key = (str(task), str(family), int(n))
        d = part.index.get_level_values("d_f").to_numpy(float)
        try:
            c = _make_curve(key, d, part.to_numpy(float), curve=curve, delta=delta)
        except ValueError as err:
            gaps.append({"what": _curve_name(key), "reason": str(err)})
            continue
        curves[key] = c
        if c.reason:
            gaps.append({"what": _curve_name(key), "reason": c.reason})
    return curves, gaps


def _curve_name(key: CurveKey) -> str:
    task, family, n = key
    return f"from-scratch curve {task}/{family}/N={n}"


def scratch_curves(
    scratch: pd.DataFrame, *, curve: str = "power", delta: float = 1e-3
) -> dict[CurveKey, Curve]:
    """From-scratch curves per (task, family, target_params), from the ``done`` runs.

    Seeds are averaged per D_F. ``curve="power"`` fits ``E + B·D^−β`` and falls back to the
    piecewise curve when the fitter cannot (fewer than 3 distinct D); ``"piecewise"`` always
    uses it. Groups with fewer than 2 distinct D get no curve.
    """
    return _curves_and_gaps(scratch, curve=curve, delta=delta)[0]


def effective_data(tasks: pd.DataFrame, curves: dict[CurveKey, Curve]) -> pd.DataFrame:
    """``tasks`` with effective data added: d_e, d_e_lo, d_e_hi, d_t, fraction, extrapolated,
    reason.

    ``d_e_lo`` comes from ``loss_hi`` and ``d_e_hi`` from ``loss_lo``. ``extrapolated`` marks a
    D_E outside the measured D range of the curve; ``reason`` says why D_E is NaN or inf.
    """
    out = tasks.reset_index(drop=True).copy()
    d_e, d_e_lo, d_e_hi = (np.full(len(out), np.nan) for _ in range(3))
    extrapolated = np.zeros(len(out), dtype=bool)
    reason = np.full(len(out), "", dtype=object)
    for (task, family, n), idx in out.groupby(["task", "family", "target_params"]).indices.items():
        key = (str(task), str(family), int(n))
        c = curves.get(key)
        if c is None:
            reason[idx] = f"no {_curve_name(key)}"
            continue
        if c.reason:
            reason[idx] = c.reason
            continue
        rows = out.iloc[idx]
        loss = rows["loss"].to_numpy(float)
        d_e[idx] = c.data_for(loss)
        d_e_lo[idx] = c.data_for(rows["loss_hi"].to_numpy(float))
        d_e_hi[idx] = c.data_for(rows["loss_lo"].to_numpy(float))
        lo, hi = c.d_range
        inside = (d_e[idx] >= lo * (1 - RANGE_RTOL)) & (d_e[idx] <= hi * (1 + RANGE_RTOL))
        extrapolated[idx] = ~inside & ~np.isnan(d_e[idx])
        floor = f"transfer loss at or below the from-scratch floor E = {c.floor:.4g}"
        reason[idx] = np.where(np.isinf(d_e[idx]), floor, np.where(np.isnan(loss), "no loss", ""))
    d_f = out["d_f"].to_numpy(float)
    with np.errstate(divide="ignore", invalid="ignore"):
        out = out.assign(
            d_e=d_e,
            d_e_lo=d_e_lo,
            d_e_hi=d_e_hi,
            d_t=d_e - d_f,
            fraction=d_e / d_f,
            extrapolated=extrapolated,
            reason=reason.astype(str),
        )
    return out


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

    Uses the rows with finite ``d_t > 0``; needs at least 4 of them and 2 distinct D_F. With a
    single N only k and α are fitted and β is NaN. Intervals are percentiles of ``n_boot``
    resamples of the points (resamples whose design is rank-deficient are skipped). Raises
    ValueError with a one-line reason when the law cannot be fitted.
    """
    d_f, d_t, n = (df[c].to_numpy(float) for c in ("d_f", "d_t", size))
    ok = np.isfinite(d_t) & (d_t > 0) & np.isfinite(d_f) & (d_f > 0) & np.isfinite(n) & (n > 0)
    notes = []
    if (~ok).any():
        notes.append(f"{int((~ok).sum())} of {ok.size} points left out (D_T not finite or <= 0)")
    m = int(ok.sum())
    if m < MIN_LAW_POINTS:
        raise ValueError(f"{m} points with finite D_T > 0; the law needs {MIN_LAW_POINTS}")
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


def transfer_ratios(eff: pd.DataFrame) -> pd.DataFrame:
    """SSL/SL ratio of effective data per matched (task, family, target_params, data_size,
    d_f, method, seed), with ``ratio_lo = d_e_lo(ssl)/d_e_hi(sl)`` and
    ``ratio_hi = d_e_hi(ssl)/d_e_lo(sl)``.

    Repeated rows of one key and paradigm are averaged first; inf and NaN propagate
    (inf/inf is NaN) without warnings. ``extrapolated`` marks a pair where either D_E lies
    outside its from-scratch curve's measured range.
    """
    value_cols = ["d_e", "d_e_lo", "d_e_hi"]
    keys = [*RATIO_KEYS, "paradigm"]
    per = eff.groupby(keys, sort=True)[value_cols].mean()
    per["extrapolated"] = eff.groupby(keys, sort=True)["extrapolated"].any()
    per = per.reset_index()
    ssl, sl = (per[per["paradigm"] == p].drop(columns="paradigm") for p in ("ssl", "sl"))
    both = ssl.merge(sl, on=RATIO_KEYS, how="inner", suffixes=("_ssl", "_sl"))
    with np.errstate(divide="ignore", invalid="ignore"):
        both["ratio"] = both["d_e_ssl"] / both["d_e_sl"]
        both["ratio_lo"] = both["d_e_lo_ssl"] / both["d_e_hi_sl"]
        both["ratio_hi"] = both["d_e_hi_ssl"] / both["d_e_lo_sl"]
    both["extrapolated"] = both.pop("extrapolated_ssl") | both.pop("extrapolated_sl")
    return both


def _ratio_summary(ratios: pd.DataFrame) -> list[dict[str, Any]]:
    """Per (task, method): range and geometric mean of the finite positive ratios whose two
    D_E lie within the measured from-scratch range (extrapolated pairs are counted apart:
    far outside the curve's points a power law's inverse is no evidence)."""
    out = []
    for (task, method), part in ratios.groupby(["task", "method"], sort=True):
        r = part["ratio"].to_numpy(float)
        usable = np.isfinite(r) & (r > 0)
        n_extrapolated = int((usable & part["extrapolated"].to_numpy(bool)).sum())
        r = r[usable & ~part["extrapolated"].to_numpy(bool)]
        out.append(
            {
                "task": str(task),
                "method": str(method),
                "n": int(r.size),
                "n_pairs": len(part),
                "n_extrapolated": n_extrapolated,
                "min": float(r.min()) if r.size else float("nan"),
                "max": float(r.max()) if r.size else float("nan"),
                "geomean": float(np.exp(np.log(r).mean())) if r.size else float("nan"),
            }
        )
    return out


def transfer_analysis(
    tasks: pd.DataFrame,
    scratch: pd.DataFrame,
    *,
    curve: str = "power",
    delta: float = 1e-3,
    n_boot: int = 200,
    seed: int = 0,
) -> dict[str, Any]:
    """The whole transfer analysis as a JSON-serialisable dict.

    Keys: ``curves`` (from-scratch curves), ``effective`` (rows of :func:`effective_data`),
    ``laws`` (per task, family, paradigm, method, data_size: :func:`fit_transfer_law` or a
    ``reason``), ``ratios`` (rows of :func:`transfer_ratios`), ``summary`` (SSL/SL ratios per
    task and method) and ``gaps`` (``{what, reason}`` for each curve or law not made).
    """
    curves, gaps = _curves_and_gaps(scratch, curve=curve, delta=delta)
    needed = tasks.groupby(["task", "family", "target_params"], sort=True).size().index
    for task, family, n in needed:
        key = (str(task), str(family), int(n))
        if key not in curves and not any(g["what"] == _curve_name(key) for g in gaps):
            gaps.append({"what": _curve_name(key), "reason": "no done from-scratch runs"})
    eff = effective_data(tasks, curves)
    laws = []
    for values, part in eff.groupby(LAW_KEYS, sort=True):
        key = dict(zip(LAW_KEYS, values, strict=True))
        key = {**{k: str(v) for k, v in key.items()}, "data_size": int(key["data_size"])}
        try:
            laws.append({**key, **fit_transfer_law(part, n_boot=n_boot, seed=seed)})
        except ValueError as err:
            laws.append({**key, "reason": str(err)})
            what = "transfer law " + "/".join(str(v) for v in values)
            gaps.append({"what": what, "reason": str(err)})
    ratios = transfer_ratios(eff)
    return {
        "curves": [c.to_dict() for c in curves.values()],
        "effective": eff.to_dict("records"),
        "laws": laws,
        "ratios": ratios.to_dict("records"),
        "summary": _ratio_summary(ratios),
        "gaps": gaps,
    }
