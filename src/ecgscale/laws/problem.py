"""A fitting problem: validated observations, the weighted Huber objective in log space and
its gradient, and the objective of a whole grid of starting points at once."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike, NDArray

from ecgscale.laws.forms import Array, FitData, Form, Kernel, get_form
from ecgscale.laws.lbfgsb import Objective
from ecgscale.laws.result import DEFAULT_DELTA, FitError

GRID_CHUNK = 1 << 17
"""Start-by-point values scored per numpy call when scoring a grid (cache-sized)."""


@dataclass(frozen=True)
class Problem:
    """One fitting problem: form, prepared data, point weights and Huber δ."""

    form: Form
    data: FitData
    weights: Array
    delta: float

    @property
    def bounds(self) -> list[tuple[float, float]]:
        """Box bounds on the fitting coordinates."""
        return self.form.bounds(self.data)


def lookup_form(form: str | Form) -> Form:
    """Look up a form, reporting an unknown name as a :class:`FitError`."""
    try:
        return get_form(form)
    except ValueError as err:
        raise FitError(str(err)) from None


def _as_vector(name: str, values: ArrayLike) -> Array:
    """A 1-D float array, or a FitError naming ``name``."""
    arr = np.asarray(values, dtype=float)
    if arr.ndim != 1:
        raise FitError(f"{name} must be 1-D, got shape {arr.shape}")
    return arr


def _check_positive_finite(name: str, arr: Array, what: str) -> None:
    """Raise a FitError unless every value is finite and > 0."""
    bad = ~np.isfinite(arr)
    if bad.any():
        first = int(np.flatnonzero(bad)[0])
        raise FitError(f"{name} has {int(bad.sum())} NaN/inf value(s) (first at index {first})")
    bad = arr <= 0
    if bad.any():
        first = int(np.flatnonzero(bad)[0])
        raise FitError(
            f"{name} has {int(bad.sum())} non-positive value(s) (first at index {first}:"
            f" {arr[first]:g}); {what} must be > 0"
        )


def validate(
    form: Form, y: ArrayLike, inputs: Mapping[str, ArrayLike], weights: ArrayLike | None
) -> tuple[Array, dict[str, Array], Array]:
    """Checked float arrays ``(y, inputs, weights)``, or a one-line FitError."""
    if set(inputs) != set(form.input_names):
        raise FitError(
            f"{form.name} fit takes inputs {list(form.input_names)}, got {sorted(inputs)}"
        )
    y_arr = _as_vector("y", y)
    arrays = {k: _as_vector(k, inputs[k]) for k in form.input_names}
    for name, arr in arrays.items():
        if arr.size != y_arr.size:
            raise FitError(f"mismatched lengths: y has {y_arr.size} points, {name} has {arr.size}")
    w = np.ones_like(y_arr) if weights is None else _as_vector("weights", weights)
    if w.size != y_arr.size:
        raise FitError(f"mismatched lengths: y has {y_arr.size} points, weights has {w.size}")
    if not (np.isfinite(w).all() and (w >= 0).all() and (w > 0).any()):
        raise FitError("weights must be finite, >= 0 and not all zero")
    if y_arr.size < form.n_params:
        raise FitError(
            f"{form.name} fit needs at least {form.n_params} points (one per parameter),"
            f" got {y_arr.size}"
        )
    _check_positive_finite("y", y_arr, "losses")
    for name, arr in arrays.items():
        _check_positive_finite(name, arr, "sizes and losses")
    for name, arr in arrays.items():
        distinct = np.unique(arr)
        if distinct.size < 2:
            raise FitError(
                f"{name} has a single distinct value ({distinct[0]:g});"
                f" a {form.name} fit needs at least 2"
            )
    n_distinct = len(np.unique(np.column_stack(list(arrays.values())), axis=0))
    if n_distinct < form.n_params:
        raise FitError(
            f"only {n_distinct} distinct input points for {form.n_params} parameters"
            f" of a {form.name} fit"
        )
    return y_arr, arrays, w


def huber(r: Array, delta: float) -> tuple[Array, Array]:
    """Huber loss of residuals ``r`` and its derivative: ½r² inside ±δ, δ(|r| − δ/2) outside."""
    slope = np.clip(r, -delta, delta)
    return slope * (r - 0.5 * slope), slope


def objective_fn(problem: Problem, kernel: Kernel, scale: float = 1.0) -> Objective:
    """``scale`` × the summed weighted Huber loss at one ``theta``, and its gradient.

    Built once per problem: the optimiser calls it for every evaluation, so it only does the
    arithmetic. With the Huber slope ``s = clip(r, ±δ)`` the loss is ``s·(r − s/2)``.
    """
    log_y = problem.data.log_y
    w = problem.weights * scale
    lo, hi = -problem.delta, problem.delta

    def value_and_grad(theta: Array) -> tuple[float, Array]:
        log_pred, jac = kernel(theta)
        r = log_pred - log_y
        slope = np.minimum(np.maximum(r, lo), hi)
        ws = w * slope
        return float(ws @ (r - 0.5 * slope)), ws @ jac

    return value_and_grad


def objective(problem: Problem, theta: Array) -> tuple[float, Array]:
    """Summed weighted Huber loss of log-space residuals at ``theta`` (P,), and its gradient."""
    kernel = problem.form.kernel(problem.data)
    return objective_fn(problem, kernel)(np.asarray(theta, dtype=float))


def grid_losses(problem: Problem, thetas: Array) -> NDArray[np.float32]:
    """Unweighted Huber loss of every point (S, n) at every row of ``thetas`` (S, P).

    In single precision: the scores only rank the starts, and numpy's float32 ``exp`` and
    ``log`` are vectorised where its float64 ones may not be (about 3× faster on AVX2).
    """
    chunk = max(1, GRID_CHUNK // problem.data.n_points)
    log_y = problem.data.log_y.astype(np.float32)
    delta = np.float32(problem.delta)
    out = np.empty((len(thetas), problem.data.n_points), dtype=np.float32)
    for i in range(0, len(thetas), chunk):
        terms, _ = problem.form.terms(thetas[i : i + chunk], problem.data, False)
        first, *rest = np.moveaxis(terms.astype(np.float32), -1, 0)
        log_pred = first
        if rest:  # log Σ exp(t_k), stably
            top = first
            for term in rest:
                top = np.maximum(top, term)
            total = np.exp(first - top)
            for term in rest:
                total += np.exp(term - top)
            log_pred = top + np.log(total)
        r = log_pred - log_y
        slope = np.clip(r, -delta, delta)
        out[i : i + chunk] = slope * (r - 0.5 * slope)
    return out


def grid_objectives(problem: Problem, thetas: Array) -> Array:
    """Objective at every row of ``thetas`` (S, P), all at once (in chunks of starts), in
    single precision (:func:`grid_losses`)."""
    chunk = max(1, GRID_CHUNK // problem.data.n_points)
    parts = [
        grid_losses(problem, thetas[i : i + chunk]) @ problem.weights
        for i in range(0, len(thetas), chunk)
    ]
    return np.concatenate(parts)


def problem_from_arrays(
    form: Form, y: Array, arrays: Mapping[str, Array], w: Array, delta: float
) -> Problem:
    """A problem from validated arrays."""
    if not delta > 0:
        raise FitError(f"delta must be > 0, got {delta}")
    return Problem(form, form.prepare(y, arrays), w, float(delta))


def make_problem(
    form: str | Form,
    y: ArrayLike,
    *,
    weights: ArrayLike | None = None,
    delta: float = DEFAULT_DELTA,
    **inputs: ArrayLike,
) -> Problem:
    """Validate observations and prepare them for fitting ``form``."""
    f = lookup_form(form)
    y_arr, arrays, w = validate(f, y, inputs, weights)
    return problem_from_arrays(f, y_arr, arrays, w, delta)
