"""Fitting scaling laws the Chinchilla / Epoch-replication way, with bootstrap intervals.

Objective: ``Σ_i w_i · Huber_δ(log L̂_i − log L_i)``, summed over points, minimised with
L-BFGS-B (analytic gradient, box bounds) from the best few of a grid of starting points that
is scored all at once with numpy.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
from numpy.typing import ArrayLike
from scipy.optimize import minimize

from ecgscale.laws.forms import Array, FitData, Form, get_form

DEFAULT_DELTA = 1e-3
"""Huber threshold on log-space residuals (Chinchilla, Epoch)."""
N_REFINE = 10
"""How many of the best grid starts are refined with L-BFGS-B."""
N_REFINE_BOOT = 2
"""Grid starts refined per bootstrap resample, besides the full-data optimum."""
GRAD_RTOL = 1e-6
"""Converged needs a projected gradient ≤ this share of the largest one the points could exert."""
_ITERATION_LIMIT = 1
"""L-BFGS-B status for stopping on the iteration or evaluation limit."""
_LBFGS_OPTIONS = {"maxiter": 5000, "ftol": 1e-12, "gtol": 1e-9}


class FitError(ValueError):
    """Observations that cannot be fitted; the message names the problem in one line."""


@dataclass(frozen=True)
class FitResult:
    """A fitted law: natural parameters, fit quality, convergence and optional bootstrap CIs."""

    form: str
    params: dict[str, float]
    objective: float
    converged: bool
    message: str
    n_points: int
    delta: float = DEFAULT_DELTA
    intervals: dict[str, tuple[float, float]] | None = None
    ci: float | None = None
    n_boot: int = 0
    n_boot_skipped: int = 0
    n_boot_unconverged: int = 0
    samples: Array | None = field(default=None, repr=False, compare=False)
    """Bootstrap parameter samples (resamples × parameters, in ``params`` order)."""

    @property
    def n_params(self) -> int:
        """Number of fitted parameters."""
        return len(self.params)

    @property
    def dof(self) -> int:
        """Degrees of freedom left: points minus parameters."""
        return self.n_points - self.n_params

    def predict(self, **inputs: ArrayLike) -> Array:
        """The fitted law evaluated at ``inputs``."""
        return get_form(self.form).evaluate(self.params, **inputs)

    def summary(self) -> str:
        """Human-readable multi-line summary, one line per parameter."""
        form = get_form(self.form)
        dof = f"dof {self.dof}"
        if self.dof == 0:
            dof += " (as many points as parameters: the fit interpolates, nothing checks it)"
        status = "converged" if self.converged else "NOT converged"
        lines = [
            f"{self.form}: {form.formula}; {self.n_points} points, {self.n_params} parameters,"
            f" {dof}; Huber(δ={self.delta:g}) objective {self.objective:.4g}; {status}"
            f" ({self.message})"
        ]
        width = max(len(p) for p in self.params)
        ci_label = "CI" if self.ci is None else f"{100 * self.ci:g}% CI"
        for name, value in self.params.items():
            line = f"  {name:<{width}} = {value:.6g}"
            if self.intervals is not None:
                lo, hi = self.intervals[name]
                line += f"   {ci_label} [{lo:.6g}, {hi:.6g}]"
            lines.append(line)
        if self.intervals is not None:
            used = self.n_boot - self.n_boot_skipped
            lines.append(
                f"  bootstrap: {used} of {self.n_boot} resamples used"
                f" ({self.n_boot_skipped} skipped as unfittable,"
                f" {self.n_boot_unconverged} not converged)"
            )
        return "\n".join(lines)

    def to_dict(self, include_samples: bool = False) -> dict[str, Any]:
        """JSON-serialisable dict; bootstrap samples only when ``include_samples``."""
        out: dict[str, Any] = {
            "form": self.form,
            "params": {k: float(v) for k, v in self.params.items()},
            "intervals": None
            if self.intervals is None
            else {k: [float(lo), float(hi)] for k, (lo, hi) in self.intervals.items()},
            "objective": float(self.objective),
            "converged": bool(self.converged),
            "message": self.message,
            "n_points": int(self.n_points),
            "n_params": self.n_params,
            "dof": self.dof,
            "delta": float(self.delta),
            "ci": None if self.ci is None else float(self.ci),
            "n_boot": int(self.n_boot),
            "n_boot_skipped": int(self.n_boot_skipped),
            "n_boot_unconverged": int(self.n_boot_unconverged),
        }
        if include_samples and self.samples is not None:
            out["samples"] = self.samples.tolist()
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> FitResult:
        """Inverse of :meth:`to_dict` (derived keys ``n_params`` and ``dof`` are ignored)."""
        intervals = data.get("intervals")
        samples = data.get("samples")
        return cls(
            form=data["form"],
            params={k: float(v) for k, v in data["params"].items()},
            objective=float(data["objective"]),
            converged=bool(data["converged"]),
            message=str(data["message"]),
            n_points=int(data["n_points"]),
            delta=float(data.get("delta", DEFAULT_DELTA)),
            intervals=None
            if intervals is None
            else {k: (float(lo), float(hi)) for k, (lo, hi) in intervals.items()},
            ci=data.get("ci"),
            n_boot=int(data.get("n_boot", 0)),
            n_boot_skipped=int(data.get("n_boot_skipped", 0)),
            n_boot_unconverged=int(data.get("n_boot_unconverged", 0)),
            samples=None if samples is None else np.asarray(samples, dtype=float),
        )


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


@dataclass(frozen=True)
class _Optimum:
    """The outcome of one local refinement."""

    theta: Array
    objective: float
    converged: bool
    message: str


def _form(form: str | Form) -> Form:
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


def _validate(
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
    inside = np.abs(r) <= delta
    value = np.where(inside, 0.5 * r * r, delta * (np.abs(r) - 0.5 * delta))
    slope = np.where(inside, r, delta * np.sign(r))
    return value, slope


def objective(problem: Problem, theta: Array) -> tuple[float, Array]:
    """Summed weighted Huber loss of log-space residuals at ``theta`` (P,), and its gradient."""
    log_pred, jac = problem.form.log_predict(theta[None, :], problem.data, grad=True)
    value, slope = huber(log_pred[0] - problem.data.log_y, problem.delta)
    w = problem.weights
    return float(np.sum(w * value)), np.einsum("n,np->p", w * slope, jac[0])


def _grid_objectives(problem: Problem, thetas: Array) -> Array:
    """Objective at every row of ``thetas`` (S, P), all at once."""
    log_pred, _ = problem.form.log_predict(thetas, problem.data)
    value, _ = huber(log_pred - problem.data.log_y, problem.delta)
    return np.sum(value * problem.weights, axis=-1)


def _projected_gradient(theta: Array, grad: Array, lo: Array, hi: Array) -> Array:
    """The gradient with components that push against an active bound zeroed."""
    blocked = ((theta <= lo) & (grad > 0)) | ((theta >= hi) & (grad < 0))
    return np.where(blocked, 0.0, grad)


def _gradient_scale(problem: Problem, theta: Array) -> float:
    """Largest possible gradient norm: every point at the Huber slope δ, all pushing one way."""
    _, jac = problem.form.log_predict(theta[None, :], problem.data, grad=True)
    return problem.delta * float(np.sum(problem.weights * np.abs(jac[0]).max(axis=1)))


def _refine(problem: Problem, theta0: Array) -> _Optimum:
    """L-BFGS-B from ``theta0`` (restarted once if it stops early), convergence-checked.

    The optimiser sees the objective divided by δ², so residuals are measured in units of δ
    and its tolerances do not depend on δ or on how well the law fits. Converged means it
    stopped on its own (success, or a line search that can no longer improve, which Huber's
    kinks at ±δ cause near the optimum) and not on a limit, *and* the projected gradient is
    at most ``GRAD_RTOL`` of the largest gradient the points could exert.
    """
    bounds = problem.bounds
    scale = problem.delta**-2

    def scaled(theta: Array) -> tuple[float, Array]:
        value, grad = objective(problem, theta)
        return value * scale, grad * scale

    lo, hi = np.array(bounds).T
    theta = np.clip(theta0, lo, hi)
    for _ in range(2):
        res = minimize(
            scaled, theta, jac=True, method="L-BFGS-B", bounds=bounds, options=_LBFGS_OPTIONS
        )
        theta = res.x
        if res.success:
            break
    value, grad = objective(problem, theta)
    relative = float(np.abs(_projected_gradient(theta, grad, lo, hi)).max())
    relative /= _gradient_scale(problem, theta)
    converged = res.status != _ITERATION_LIMIT and relative <= GRAD_RTOL
    reason = str(res.message).rstrip(": ") or f"status {res.status}"
    message = f"L-BFGS-B: {reason} after {res.nit} iterations; relative gradient {relative:.2g}"
    at_bound = [problem.form.theta_names[i] for i in np.flatnonzero((theta <= lo) | (theta >= hi))]
    if at_bound:
        message += f"; at a bound: {', '.join(at_bound)}"
    return _Optimum(theta, value, converged, message)


def _multistart(problem: Problem, starts: Array, n_refine: int, pinned: Array | None) -> _Optimum:
    """Score all ``starts`` at once; refine the best ``n_refine`` and ``pinned``; keep the best."""
    scores = _grid_objectives(problem, starts)
    order = np.argsort(scores, kind="stable")[:n_refine]
    chosen = [starts[i] for i in order if np.isfinite(scores[i])]
    if pinned is not None:
        chosen.insert(0, pinned)
    if not chosen:
        raise FitError("no starting point has a finite objective")
    optima = [_refine(problem, theta) for theta in chosen]
    return min(optima, key=lambda o: o.objective)


def _starts(form: Form, data: FitData, n_starts: int | None, seed: int) -> Array:
    """The form's default grid, or ``n_starts`` uniform draws from the box that grid spans."""
    grid = form.start_grid(data)
    if n_starts is None:
        return grid
    if n_starts < 1:
        raise FitError(f"n_starts must be >= 1, got {n_starts}")
    rng = np.random.default_rng(seed)
    return rng.uniform(grid.min(axis=0), grid.max(axis=0), size=(n_starts, grid.shape[1]))


def make_problem(
    form: str | Form,
    y: ArrayLike,
    *,
    weights: ArrayLike | None = None,
    delta: float = DEFAULT_DELTA,
    **inputs: ArrayLike,
) -> Problem:
    """Validate observations and prepare them for fitting ``form``."""
    if not delta > 0:
        raise FitError(f"delta must be > 0, got {delta}")
    f = _form(form)
    y_arr, arrays, w = _validate(f, y, inputs, weights)
    return Problem(f, f.prepare(y_arr, arrays), w, float(delta))


def fit(
    form: str,
    y: ArrayLike,
    *,
    weights: ArrayLike | None = None,
    delta: float = DEFAULT_DELTA,
    n_starts: int | None = None,
    n_refine: int = N_REFINE,
    seed: int = 0,
    **inputs: ArrayLike,
) -> FitResult:
    """Fit ``form`` to losses ``y`` at ``inputs`` (``x=…`` or ``n=…, d=…``).

    ``n_starts=None`` uses the form's default start grid; an integer draws that many starts
    uniformly (with ``seed``) from the box the grid spans. The best ``n_refine`` starts are
    refined with L-BFGS-B and the lowest objective is kept.
    """
    if n_refine < 1:
        raise FitError(f"n_refine must be >= 1, got {n_refine}")
    problem = make_problem(form, y, weights=weights, delta=delta, **inputs)
    f = problem.form
    best = _multistart(problem, _starts(f, problem.data, n_starts, seed), n_refine, None)
    return FitResult(
        form=f.name,
        params=f.to_params(best.theta, problem.data),
        objective=best.objective,
        converged=best.converged,
        message=best.message,
        n_points=problem.data.n_points,
        delta=problem.delta,
    )


def bootstrap(
    form: str,
    y: ArrayLike,
    *,
    n_boot: int = 200,
    seed: int = 0,
    ci: float = 0.95,
    weights: ArrayLike | None = None,
    delta: float = DEFAULT_DELTA,
    full_fit: FitResult | None = None,
    **inputs: ArrayLike,
) -> FitResult:
    """Full-data fit plus percentile bootstrap intervals from ``n_boot`` resampled refits.

    Points are resampled with replacement; each refit starts from the full-data optimum and
    the best few points of the form's start grid. Resamples with too few distinct values are
    skipped and counted. ``full_fit`` reuses an existing fit of the same data.
    """
    if not 0 < ci < 1:
        raise FitError(f"ci must be in (0, 1), got {ci}")
    if n_boot < 1:
        raise FitError(f"n_boot must be >= 1, got {n_boot}")
    f = _form(form)
    y_arr, arrays, w = _validate(f, y, inputs, weights)
    base = full_fit or fit(f.name, y_arr, weights=w, delta=delta, seed=seed, **arrays)
    rng = np.random.default_rng(seed)
    samples, skipped, unconverged = [], 0, 0
    for _ in range(n_boot):
        idx = rng.integers(0, y_arr.size, y_arr.size)
        try:
            resampled = {k: v[idx] for k, v in arrays.items()}
            problem = make_problem(f, y_arr[idx], weights=w[idx], delta=delta, **resampled)
        except FitError:
            skipped += 1
            continue
        warm = f.from_params(base.params, problem.data)
        best = _multistart(problem, f.start_grid(problem.data), N_REFINE_BOOT, warm)
        unconverged += not best.converged
        samples.append([f.to_params(best.theta, problem.data)[p] for p in f.param_names])
    if not samples:
        raise FitError(f"bootstrap: all {n_boot} resamples had too few distinct values")
    draws = np.array(samples)
    lo, hi = np.quantile(draws, [(1 - ci) / 2, (1 + ci) / 2], axis=0)
    intervals = {p: (float(lo[j]), float(hi[j])) for j, p in enumerate(f.param_names)}
    return replace(
        base,
        intervals=intervals,
        ci=ci,
        n_boot=n_boot,
        n_boot_skipped=skipped,
        n_boot_unconverged=unconverged,
        samples=draws,
    )


def predict_interval(
    result: FitResult, *, ci: float | None = None, **inputs: ArrayLike
) -> tuple[Array, Array]:
    """Percentile band ``(lo, hi)`` of the bootstrap predictions at ``inputs``."""
    if result.samples is None:
        raise ValueError("result has no bootstrap samples; fit it with bootstrap()")
    level = result.ci if ci is None else ci
    form = get_form(result.form)
    params = {p: result.samples[:, j, None] for j, p in enumerate(form.param_names)}
    arrays = np.broadcast_arrays(*(np.asarray(v, dtype=float) for v in inputs.values()))
    flat = {k: a.ravel()[None, :] for k, a in zip(inputs, arrays, strict=True)}
    predictions = form.evaluate(params, **flat)
    lo, hi = np.quantile(predictions, [(1 - level) / 2, (1 + level) / 2], axis=0)
    return lo.reshape(arrays[0].shape), hi.reshape(arrays[0].shape)
