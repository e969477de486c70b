"""From-scratch loss curves L(D) of a task, their inverse, censoring and bootstrap draws (see
:mod:`ecgscale.laws.transfer`)."""

from __future__ import annotations

import zlib
from dataclasses import dataclass, field, replace
from functools import cached_property
from typing import Any

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike, NDArray

from ecgscale.laws import FitError, bootstrap, fit

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
            raise ValueError(f"{curve_name(self.key)} has no bootstrap draws")
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
    name = zlib.crc32(curve_name(key).encode())
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


def curves_and_gaps(
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
    for group, runs in done.groupby(["task", "family", "target_params"], sort=True):
        key = curve_key(group)
        try:
            c = _make_curve(key, runs, curve=curve, delta=delta, n_boot=n_boot, seed=seed)
        except ValueError as err:
            gaps.append({"what": curve_name(key), "reason": str(err)})
            continue
        curves[key] = c
        if c.reason:
            gaps.append({"what": curve_name(key), "reason": c.reason})
    return curves, gaps


def curve_key(group: tuple) -> CurveKey:
    """The key of a group of rows by (task, family, target_params), as plain str, str, int."""
    task, family, n = group
    return str(task), str(family), int(n)


def curve_name(key: CurveKey) -> str:
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
    return curves_and_gaps(scratch, curve=curve, delta=delta, n_boot=n_boot, seed=seed)[0]
