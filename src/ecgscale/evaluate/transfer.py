"""Effective data transferred by pre-training (Hernandez et al. 2021, "Scaling laws for transfer").

**Curves.** For each (task, family, target_params) the from-scratch runs give a curve
``L_scratch(D) = E + B·D^−β``, fitted with the project's Huber-in-log-space fitter to the
seed-averaged losses at each D_F. The fit needs at least one degree of freedom, so 4 distinct
D_F for its 3 parameters: with fewer it interpolates, E is unconstrained, and the curve is kept
for the record but flagged (:attr:`Curve.reason`) and never inverted. ``curve="piecewise"``
asks instead for straight lines in log-log space through the monotone fit of the points: an
interpolation, honest between the measured D only, which is the only place it is inverted.

**Censored effective data.** A pre-trained model reaching loss L at D_F labelled records has
*effective data* ``D_E = L_scratch⁻¹(L)``. D_E is exact only when L lies within the losses the
curve reaches over the measured range [d_min, d_max] of its points. A lower L gives a
right-censored ``D_E ≥ d_max`` (bounds [d_max, ∞]), a higher one a left-censored
``D_E ≤ d_min`` (bounds [0, d_min]): beyond its points a power law's inverse is no evidence,
so it is kept (``d_e``) for information only. ``D_T = D_E − D_F`` is the data transferred, its
bounds shifted by D_F; ``D_T = k·D_F^α·N^β`` is the transfer law, fitted on the exact rows.

**Ratios.** SSL and SL compare at matched task, family, size, pre-training data, D_F, method
and seed. A pair's ratio D_E(SSL) / D_E(SL) has bounds [lower_SSL / upper_SL, upper_SSL /
lower_SL], undefined ([0, ∞]) when both sides are censored the same way. Per task and method
no pair is dropped: the summary is the median ratio's bounds (the median of the lower bounds
and of the upper bounds; finite while fewer than half the pairs are open on that side), the
minimum, maximum and geometric mean's bounds. D_T(SSL) / D_T(SL) is summarised beside it with
D_T clipped at 0 from below: a model that transfers nothing (D_T ≤ 0, negative transfer
included) transferred 0 records, so x / 0 is ∞ and 0 / 0 undefined.

**Intervals.** A hierarchical bootstrap over runs, not pairs: resample b (a) takes draw b of
every from-scratch curve (a Bayesian bootstrap of its power fit, :func:`ecgscale.laws.bootstrap`;
Exp(1) weights on its runs at each D_F for the piecewise curve) and censors every row against
it, and (b) draws the matched coordinates (family, N, pre-training D, seed: an SSL and an SL
run with all their D_F rows) with replacement. The 95% interval of a summary is [2.5% quantile
of its lower bound, 97.5% quantile of its upper bound] over the resamples; its verdict
(:func:`ecgscale.laws.verdicts.ratio_verdict`) says whether the interval excludes 1.
"""

from __future__ import annotations

import zlib
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from functools import cached_property
from typing import Any

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike, NDArray

from ecgscale.laws import FitError, bootstrap, fit
from ecgscale.laws.verdicts import MAX_SPREAD, ratio_verdict

Array = NDArray[np.float64]
CurveKey = tuple[str, str, int]
"""(task, family, target_params) of a from-scratch curve."""

CURVES = ("power", "piecewise")
POWER_PARAMS = 3
MIN_DOF = 1
"""Degrees of freedom (points − 3) a power-law curve needs before it is inverted."""
MIN_BETA = 1e-3
"""A power-law curve with a smaller exponent counts as flat: it cannot be inverted."""
RANGE_RTOL = 1e-9
"""Relative slack on the curve's losses at d_min and d_max before a D_E counts as censored."""
MIN_LAW_POINTS = 4
"""Points with exact D_T > 0 that a transfer-law fit needs."""
RATIO_KEYS = ["task", "family", "target_params", "data_size", "d_f", "method", "seed"]
CLUSTER_KEYS = ["family", "target_params", "data_size", "seed"]
"""Within a task and method, the coordinates of an SSL and an SL run: one bootstrap cluster."""
LAW_KEYS = ["task", "family", "paradigm", "method", "data_size"]
PAIR_COLUMNS = ["loss", "d_e", "d_e_lower", "d_e_upper", "censored", "d_t_lower", "d_t_upper"]


@dataclass(frozen=True)
class Curve:
    """A from-scratch loss curve L(D) of one (task, family, target_params), and its inverse.

    ``method`` is ``"power"`` (``L = E + B·D^−β``; E, B, β are NaN when the curve has too few
    points to be fitted) or ``"piecewise"`` (straight lines in log-log space through the
    monotone, non-increasing fit of the points, the end segments continued; E, B and β are
    NaN and the floor is 0). ``points`` are the seed-averaged (D, loss), sorted by D.
    ``draws`` are bootstrap draws: rows of (E, B, β) for the power curve, of the points'
    losses for the piecewise one (:func:`scratch_curves`).
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
    draws: Array | None = field(default=None, compare=False, repr=False)

    @property
    def dof(self) -> int | None:
        """Degrees of freedom of the power-law fit (points − 3); None for the piecewise curve."""
        return len(self.points) - POWER_PARAMS if self.method == "power" else None

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
        """Why the curve is not inverted, or ``""`` when it is."""
        if self.method == "power":
            if self.dof < MIN_DOF:
                return (
                    f"{len(self.points)} from-scratch D_F for a 3-parameter power law "
                    f"({self.dof} degrees of freedom: E unconstrained); not inverted, it needs "
                    f"at least {POWER_PARAMS + MIN_DOF} D_F"
                )
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
            return _power_loss(self.E, self.B, self.beta, d)
        log_d, log_loss = self._knots
        if log_d.size < 2:
            return np.full(d.shape, float(np.exp(log_loss[0])))
        with np.errstate(divide="ignore"):
            return np.exp(_interp_lines(np.log(d), log_d, log_loss))

    def data_for(self, loss: ArrayLike) -> Array:
        """The curve's inverse at ``loss``, extrapolated as needed (see :meth:`bounds`): inf at
        or below the floor, NaN for a NaN loss or a curve that is not inverted."""
        loss = np.asarray(loss, dtype=float)
        if self.reason:
            return np.full(loss.shape, np.nan)
        if self.method == "power":
            return _power_inverse(self.E, self.B, self.beta, loss)
        log_d, log_loss = self._knots
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
            d = np.exp(_interp_lines(np.log(loss), log_loss[::-1], log_d[::-1]))
        return np.where(loss > 0, d, np.where(np.isnan(loss), np.nan, np.inf))

    def bounds(self, loss: ArrayLike) -> tuple[Array, Array]:
        """Censored effective data (lower, upper) at ``loss``: the inverse where the loss lies
        within the curve's losses at d_min and d_max, [d_max, inf] below them, [0, d_min]
        above; NaN for a NaN loss or a curve that is not inverted."""
        loss = np.asarray(loss, dtype=float)
        d_min, d_max = self.d_range
        edges = self.loss_at([d_min, d_max])
        return _censor(self.data_for(loss), loss, edges[0], edges[1], d_min, d_max)

    def draw_bounds(self, loss: ArrayLike) -> tuple[Array, Array]:
        """:meth:`bounds` under each draw of the curve, shaped (draws, losses); [0, inf] where
        a drawn curve does not decrease."""
        if self.draws is None:
            raise ValueError(f"{_curve_name(self.key)} has no bootstrap draws")
        loss = np.asarray(loss, dtype=float)[None, :]
        d_min, d_max = self.d_range
        if self.method == "power":
            e, b, beta = (self.draws[:, j, None] for j in range(POWER_PARAMS))
            lower, upper = _censor(
                _power_inverse(e, b, beta, loss),
                loss,
                _power_loss(e, b, beta, d_min),
                _power_loss(e, b, beta, d_max),
                d_min,
                d_max,
            )
            valid = (b > 0) & (beta > MIN_BETA)
        else:
            d = [p[0] for p in self.points]
            drawn = [replace(self, points=tuple(zip(d, row, strict=True))) for row in self.draws]
            lower, upper = (
                np.stack(side) for side in zip(*(c.bounds(loss[0]) for c in drawn), strict=True)
            )
            valid = np.array([[not c.reason] for c in drawn])
        undefined = ~valid | np.isnan(lower)
        return np.where(undefined, 0.0, lower), np.where(undefined, np.inf, upper)

    @property
    def key(self) -> CurveKey:
        return self.task, self.family, self.target_params

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable dict (E, B, beta NaN for the piecewise curve; no draws)."""
        return {
            "task": self.task,
            "family": self.family,
            "target_params": int(self.target_params),
            "method": self.method,
            "E": float(self.E),
            "B": float(self.B),
            "beta": float(self.beta),
            "dof": self.dof,
            "points": [[float(d), float(loss)] for d, loss in self.points],
            "n_draws": 0 if self.draws is None else len(self.draws),
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


def _power_loss(e: ArrayLike, b: ArrayLike, beta: ArrayLike, d: ArrayLike) -> Array:
    """``E + B·D^−β``, broadcast."""
    return np.asarray(e) + np.asarray(b) * np.asarray(d, dtype=float) ** -np.asarray(beta)


def _power_inverse(e: ArrayLike, b: ArrayLike, beta: ArrayLike, loss: ArrayLike) -> Array:
    """``(B / (L − E))^{1/β}``, broadcast: inf at or below E, NaN for a NaN loss."""
    loss = np.asarray(loss, dtype=float)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        d = (np.asarray(b) / (loss - e)) ** (1.0 / np.asarray(beta))
        return np.where(loss > e, d, np.where(np.isnan(loss), np.nan, np.inf))


def _censor(
    d_e: Array,
    loss: Array,
    loss_min_d: ArrayLike,
    loss_max_d: ArrayLike,
    d_min: float,
    d_max: float,
) -> tuple[Array, Array]:
    """(lower, upper) bounds of D_E: ``d_e`` (clipped to [d_min, d_max]) for a loss between
    the curve's losses at d_max and d_min, [d_max, inf] below, [0, d_min] above, NaN where
    ``d_e`` is NaN inside; broadcast."""
    with np.errstate(invalid="ignore"):
        right = loss < np.asarray(loss_max_d) * (1 - RANGE_RTOL)
        left = loss > np.asarray(loss_min_d) * (1 + RANGE_RTOL)
        exact = np.clip(d_e, d_min, d_max)
    lower = np.where(right, d_max, np.where(left, 0.0, exact))
    upper = np.where(right, np.inf, np.where(left, d_min, exact))
    return lower, upper


def _seed(seed: int, key: CurveKey) -> int:
    """A bootstrap seed of its own for each curve, so that no two share their weights."""
    name = zlib.crc32(_curve_name(key).encode())
    return int(np.random.SeedSequence([seed, name]).generate_state(1)[0])


def _make_curve(
    key: CurveKey, runs: pd.DataFrame, *, curve: str, delta: float, n_boot: int, seed: int
) -> Curve:
    """The curve through one group's runs (columns d_f, loss) with ``n_boot`` draws; a
    ValueError when there is no curve to make."""
    means = runs.groupby("d_f", sort=True)["loss"].mean()
    d, loss = means.index.to_numpy(float), means.to_numpy(float)
    if d.size < 2:
        raise ValueError(f"{d.size} from-scratch data size(s); a curve needs at least 2")
    points = tuple((float(a), float(b)) for a, b in zip(d, loss, strict=True))
    nan = float("nan")
    rng_seed = _seed(seed, key)
    if curve == "piecewise":
        draws, note = None, ""
        if n_boot:
            rng = np.random.default_rng(rng_seed)
            columns = []
            for value in d:
                run_losses = runs.loc[runs["d_f"] == value, "loss"].to_numpy(float)
                w = rng.exponential(1.0, (n_boot, run_losses.size))
                columns.append(w @ run_losses / w.sum(axis=1))
            draws = np.column_stack(columns)
            if runs.groupby("d_f").size().max() == 1:
                note = "one from-scratch run per D_F: the bootstrap cannot vary this curve"
        return Curve(*key, "piecewise", nan, nan, nan, points, note, draws)
    if d.size < POWER_PARAMS + MIN_DOF:
        return Curve(*key, "power", nan, nan, nan, points)
    try:
        result = fit("power", loss, x=d, delta=delta)
        if n_boot:
            result = bootstrap(
                "power", loss, x=d, delta=delta, n_boot=n_boot, seed=rng_seed, full_fit=result
            )
    except FitError as err:
        raise ValueError(f"power fit impossible ({err})") from None
    p = result.params
    return Curve(*key, "power", p["E"], p["A"], p["alpha"], points, draws=result.samples)


def _curves_and_gaps(
    scratch: pd.DataFrame, *, curve: str, delta: float, n_boot: int, seed: int
) -> tuple[dict[CurveKey, Curve], list[dict[str, str]]]:
    """Curves of every (task, family, target_params) of ``scratch``, and the ones that failed
    or are not inverted."""
    if curve not in CURVES:
        raise ValueError(f"unknown curve {curve!r}; choose from {list(CURVES)}")
    done = scratch[(scratch["status"] == "done") & np.isfinite(scratch["loss"].astype(float))]
    done = done[done["loss"].astype(float) > 0].assign(loss=lambda f: f["loss"].astype(float))
    curves: dict[CurveKey, Curve] = {}
    gaps: list[dict[str, str]] = []
    for (task, family, n), runs in done.groupby(["task", "family", "target_params"], sort=True):
        key = (str(task), str(family), int(n))
        try:
            c = _make_curve(key, runs, curve=curve, delta=delta, n_boot=n_boot, seed=seed)
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
    scratch: pd.DataFrame,
    *,
    curve: str = "power",
    delta: float = 1e-3,
    n_boot: int = 0,
    seed: int = 0,
) -> dict[CurveKey, Curve]:
    """From-scratch curves per (task, family, target_params), from the ``done`` runs.

    Seeds are averaged per D_F. ``curve="power"`` fits ``E + B·D^−β`` when there are at least
    4 distinct D_F and otherwise keeps an unfitted, flagged curve (never a piecewise one in
    its place: the fallback would hide that the law is not constrained); ``"piecewise"``
    interpolates the points. Groups with fewer than 2 distinct D get no curve. With
    ``n_boot`` > 0 each curve carries that many bootstrap draws (see the module docstring).
    """
    return _curves_and_gaps(scratch, curve=curve, delta=delta, n_boot=n_boot, seed=seed)[0]


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
    for (task, family, n), idx in out.groupby(["task", "family", "target_params"]).indices.items():
        key = (str(task), str(family), int(n))
        c = curves.get(key)
        if c is None:
            reason[idx] = f"no {_curve_name(key)}"
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
    at = {(str(t), str(f), int(n)): idx for (t, f, n), idx in groups.items()}
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

    Keys: ``curves`` (from-scratch curves, with ``n_boot`` bootstrap draws each),
    ``effective`` (rows of :func:`effective_data`), ``laws`` (per task, family, paradigm,
    method, data_size: :func:`fit_transfer_law` or a ``reason``), ``ratios`` (rows of
    :func:`transfer_ratios`), ``summary`` (:func:`transfer_summary`: SSL/SL ratios per task and
    method) and ``gaps`` (``{what, reason}`` for each curve or law not made or not inverted).
    """
    curves, gaps = _curves_and_gaps(scratch, curve=curve, delta=delta, n_boot=n_boot, seed=seed)
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
        "summary": transfer_summary(eff, curves, n_boot=n_boot, seed=seed, pairs=ratios),
        "gaps": gaps,
    }
