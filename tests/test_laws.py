"""Tests of ecgscale.laws: forms, Huber-in-log-space fitting, bootstrap intervals."""

from __future__ import annotations

import importlib
import json
import re

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.optimize import least_squares

from ecgscale.laws import (
    FORMS,
    FitError,
    FitResult,
    bootstrap,
    evaluate_form,
    fit,
    fit_with_intervals,
    get_form,
    predict_interval,
)
from ecgscale.laws.fit import make_problem, objective
from ecgscale.laws.forms import Form

# the module, not the function ``ecgscale.laws.fit`` that the package exports
FIT = importlib.import_module("ecgscale.laws.fit")
REFINE = importlib.import_module("ecgscale.laws.refine")
LBFGSB = importlib.import_module("ecgscale.laws.lbfgsb")
PROBLEM = importlib.import_module("ecgscale.laws.problem")

POWER = {"E": 1.7, "A": 400.0, "alpha": 0.34}
JOINT = {"E": 1.69, "A": 406.4, "alpha": 0.34, "B": 410.7, "beta": 0.28}
L2L = {"K": 1.5, "kappa": 1.3, "E_x": 0.2, "E_y": 0.1}
X = np.logspace(4, 8, 9)
_N, _D = np.meshgrid(np.logspace(5, 8, 6), np.logspace(6, 9, 6))
JOINT_INPUTS = {"n": _N.ravel(), "d": _D.ravel()}
L2L_X = np.linspace(0.3, 0.9, 10)
KAPLAN = {"N_c": 8.8e13, "alpha_N": 0.076, "D_c": 5.4e13, "alpha_D": 0.095}
TRANSFER = {"k": 1.9e4, "alpha": 0.18, "beta": 0.38}
_F, _NF = np.meshgrid(np.logspace(2, 5, 5), np.logspace(5, 8, 5))
TRANSFER_INPUTS = {"d_f": _F.ravel(), "n": _NF.ravel()}
CASES = {
    "power": (POWER, {"x": X}),
    "joint": (JOINT, JOINT_INPUTS),
    "loss_to_loss": (L2L, {"x": L2L_X}),
    "kaplan": (KAPLAN, JOINT_INPUTS),
    "transfer": (TRANSFER, TRANSFER_INPUTS),
}


def _noisy(y: np.ndarray, sigma: float, seed: int) -> np.ndarray:
    """Multiplicative log-normal noise."""
    return y * np.exp(np.random.default_rng(seed).normal(0.0, sigma, y.size))


def _rel(a: float, b: float) -> float:
    return abs(a - b) / abs(b)


# --- forms -----------------------------------------------------------------------------------


def test_evaluate_form_matches_closed_forms() -> None:
    x = np.array([1e4, 1e6])
    n, d = np.array([1e5, 1e7]), np.array([1e6, 1e9])
    expected_power = 1.7 + 400.0 * x**-0.34
    np.testing.assert_allclose(evaluate_form("power", POWER, x=x), expected_power, rtol=1e-14)
    expected_joint = 1.69 + 406.4 * n**-0.34 + 410.7 * d**-0.28
    np.testing.assert_allclose(evaluate_form("joint", JOINT, n=n, d=d), expected_joint, rtol=1e-14)
    lx = np.array([0.25, 0.5])
    expected_l2l = 1.5 * (lx - 0.2) ** 1.3 + 0.1
    np.testing.assert_allclose(evaluate_form("loss_to_loss", L2L, x=lx), expected_l2l, rtol=1e-14)


def test_evaluate_form_edges() -> None:
    assert np.isnan(evaluate_form("loss_to_loss", L2L, x=np.array([0.1]))[0])
    assert evaluate_form("loss_to_loss", L2L, x=0.2) == pytest.approx(0.1)
    band = evaluate_form("power", {"E": 1.0, "A": np.array([[1.0], [2.0]]), "alpha": 1.0}, x=X)
    assert band.shape == (2, X.size)
    with pytest.raises(ValueError, match="unknown form"):
        evaluate_form("cubic", POWER, x=X)
    with pytest.raises(ValueError, match="missing parameters"):
        evaluate_form("power", {"E": 1.0}, x=X)
    with pytest.raises(ValueError, match="takes inputs"):
        evaluate_form("joint", JOINT, n=X)


@pytest.mark.parametrize("name", sorted(FORMS))
def test_parameterisation_round_trips(name: str) -> None:
    truth, inputs = CASES[name]
    form = get_form(name)
    y = evaluate_form(name, truth, **inputs)
    data = make_problem(form, y, **inputs).data
    back = form.to_params(form.from_params(truth, data), data)
    for p in form.param_names:
        assert back[p] == pytest.approx(truth[p], rel=1e-12)
    log_pred, _ = form.log_predict(form.from_params(truth, data), data)
    np.testing.assert_allclose(log_pred[0], np.log(y), atol=1e-12)


# --- gradients -------------------------------------------------------------------------------


def _central_difference(func, theta: np.ndarray, step: float = 1e-6) -> np.ndarray:
    columns = []
    for j in range(theta.size):
        e = np.zeros_like(theta)
        e[j] = step
        columns.append((func(theta + e) - func(theta - e)) / (2 * step))
    return np.stack(columns, axis=-1)


@pytest.mark.parametrize("name", sorted(FORMS))
def test_log_predict_jacobian_matches_finite_differences(name: str) -> None:
    truth, inputs = CASES[name]
    form = get_form(name)
    data = make_problem(form, evaluate_form(name, truth, **inputs), **inputs).data
    rng = np.random.default_rng(0)
    starts = form.start_grid(data)
    for theta in starts[rng.choice(len(starts), 5, replace=False)]:
        _, jac = form.log_predict(theta, data, grad=True)
        numeric = _central_difference(lambda t: form.log_predict(t, data)[0][0], theta)
        np.testing.assert_allclose(jac[0], numeric, rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("name", sorted(FORMS))
def test_kernel_matches_log_predict(name: str) -> None:
    """The specialised single-point kernel the optimiser calls agrees with the generic form."""
    truth, inputs = CASES[name]
    form = get_form(name)
    data = make_problem(form, evaluate_form(name, truth, **inputs), **inputs).data
    kernel, generic = form.kernel(data), Form.kernel(form, data)
    starts = form.start_grid(data)
    for theta in starts[np.random.default_rng(1).choice(len(starts), 20, replace=False)]:
        log_pred, jac = form.log_predict(theta, data, grad=True)
        for value, grad in (kernel(theta), generic(theta)):
            np.testing.assert_allclose(value, log_pred[0], rtol=1e-13, atol=1e-13)
            np.testing.assert_allclose(grad, jac[0], rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize("name", sorted(FORMS))
def test_grid_scores_match_the_objective(name: str) -> None:
    """Starts are ranked in single precision; the scores agree with the objective."""
    truth, inputs = CASES[name]
    y = _noisy(evaluate_form(name, truth, **inputs), 0.01, seed=13)
    weights = np.random.default_rng(3).uniform(0.5, 2.0, y.size)
    problem = make_problem(name, y, weights=weights, **inputs)
    starts = FIT._starts(problem.form, problem.data, None, seed=0)
    scores = PROBLEM.grid_objectives(problem, starts)
    exact = np.array([objective(problem, theta)[0] for theta in starts[::7]])
    np.testing.assert_allclose(scores[::7], exact, rtol=1e-4, atol=1e-9)
    losses = PROBLEM.grid_losses(problem, starts)
    assert losses.dtype == np.float32 and losses.shape == (len(starts), y.size)
    np.testing.assert_allclose(losses @ weights, scores, rtol=1e-6)


@pytest.mark.parametrize("name", sorted(FORMS))
@pytest.mark.parametrize("delta", [1e-6, 1e-3, 10.0])
def test_objective_gradient_matches_finite_differences(name: str, delta: float) -> None:
    truth, inputs = CASES[name]
    form = get_form(name)
    y = _noisy(evaluate_form(name, truth, **inputs), 0.05, seed=1)
    weights = np.random.default_rng(2).uniform(0.5, 2.0, y.size)
    problem = make_problem(form, y, weights=weights, delta=delta, **inputs)
    theta = form.from_params(truth, problem.data) + 0.01
    _, grad = objective(problem, theta)
    numeric = _central_difference(lambda t: np.array(objective(problem, t)[0]), theta, 1e-7)
    np.testing.assert_allclose(grad, numeric, rtol=1e-5, atol=1e-9 * max(delta, 1e-3))


# --- recovery --------------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(FORMS))
def test_recovers_known_parameters_from_noiseless_data(name: str) -> None:
    truth, inputs = CASES[name]
    result = fit(name, evaluate_form(name, truth, **inputs), **inputs)
    assert result.converged, result.message
    for p, value in truth.items():
        assert _rel(result.params[p], value) < 1e-4, (p, result.params[p], value)


@pytest.mark.parametrize(
    ("name", "truth", "inputs"),
    [
        # E is 99% of the smallest observed loss
        ("power", {"E": 2.0, "A": 200.0, "alpha": 0.5}, {"x": X}),
        # E_x is 98% of the smallest source loss
        ("loss_to_loss", {"K": 0.8, "kappa": 0.7, "E_x": 0.294, "E_y": 0.5}, {"x": L2L_X}),
    ],
)
def test_recovers_irreducible_loss_near_the_smallest_observation(
    name: str, truth: dict[str, float], inputs: dict[str, np.ndarray]
) -> None:
    y = evaluate_form(name, truth, **inputs)
    result = fit(name, y, **inputs)
    assert result.converged, result.message
    for p, value in truth.items():
        assert _rel(result.params[p], value) < 1e-4, (p, result.params[p], value)


@pytest.mark.parametrize(
    ("name", "inputs", "sigma", "tolerance"),
    [
        ("power", {"x": X}, 0.005, 0.05),
        ("joint", JOINT_INPUTS, 0.005, 0.1),
        # E_x, kappa and E_y trade off against each other: more points, less noise
        ("loss_to_loss", {"x": np.linspace(0.3, 0.9, 20)}, 0.002, 0.1),
    ],
)
def test_recovers_parameters_from_mildly_noisy_data(
    name: str, inputs: dict[str, np.ndarray], sigma: float, tolerance: float
) -> None:
    truth = CASES[name][0]
    clean = evaluate_form(name, truth, **inputs)
    result = fit(name, _noisy(clean, sigma, seed=3), **inputs)
    assert result.converged, result.message
    for p, value in truth.items():
        assert _rel(result.params[p], value) < tolerance, (p, result.params[p], value)
    np.testing.assert_allclose(result.predict(**inputs), clean, rtol=2 * sigma)


@pytest.mark.parametrize(
    ("name", "truth", "inputs", "sigma"),
    [
        ("power", POWER, {"x": X}, 0.01),
        ("power", {"E": 2.0, "A": 200.0, "alpha": 0.5}, {"x": X}, 0.01),  # E 99% of min loss
        ("joint", JOINT, JOINT_INPUTS, 0.01),
        ("loss_to_loss", L2L, {"x": np.linspace(0.3, 0.9, 20)}, 0.002),
    ],
)
def test_optimum_agrees_with_independent_least_squares(
    name: str, truth: dict[str, float], inputs: dict[str, np.ndarray], sigma: float
) -> None:
    """scipy's least_squares with loss='huber' minimises the same summed Huber objective.

    Its cost ``½ Σ f² ρ(r²/f²)`` with ``f = δ`` is exactly ``Σ Huber_δ(r)``; it works on the
    natural parameters with a trust region, from the truth, independently of our grid,
    parameterisation and L-BFGS-B.
    """
    y = _noisy(evaluate_form(name, truth, **inputs), sigma, seed=4)
    result = fit(name, y, **inputs)
    assert result.converged, result.message
    names = list(truth)

    def residuals(p: np.ndarray) -> np.ndarray:
        return np.log(evaluate_form(name, dict(zip(names, p, strict=True)), **inputs)) - np.log(y)

    upper = np.full(len(names), np.inf)
    if name == "loss_to_loss":  # E_x below the smallest source loss
        upper[names.index("E_x")] = np.nextafter(inputs["x"].min(), 0)
    reference = least_squares(
        residuals,
        [truth[p] for p in names],
        loss="huber",
        f_scale=1e-3,
        bounds=(0, upper),
        x_scale="jac",
        xtol=1e-15,
        ftol=1e-15,
        gtol=1e-15,
    )
    assert result.objective <= reference.cost * (1 + 1e-9)
    assert _rel(result.objective, reference.cost) < 1e-3
    for p, value in zip(names, reference.x, strict=True):
        assert _rel(result.params[p], value) < 1e-3, (p, result.params[p], value)


@settings(max_examples=15, deadline=None)
@given(
    e=st.floats(0.1, 3.0),
    reducible=st.floats(0.02, 10.0),
    alpha=st.floats(0.02, 1.5),
    n_points=st.integers(5, 8),
)
def test_noiseless_power_predictions_are_recovered(
    e: float, reducible: float, alpha: float, n_points: int
) -> None:
    x = np.logspace(4, 8, n_points)
    # ``reducible`` is the reducible loss at the smallest size, as a multiple of E
    truth = {"E": e, "A": reducible * e * 1e4**alpha, "alpha": alpha}
    y = evaluate_form("power", truth, x=x)
    result = fit("power", y, x=x)
    assert result.converged, result.message
    dense = np.logspace(4, 8, 50)
    np.testing.assert_allclose(
        result.predict(x=dense), evaluate_form("power", truth, x=dense), rtol=1e-3
    )


def test_weights_can_silence_an_outlier() -> None:
    y = evaluate_form("power", POWER, x=X)
    y[4] *= 1.5
    weights = np.ones_like(y)
    weights[4] = 0.0
    result = fit("power", y, x=X, weights=weights)
    assert _rel(result.params["alpha"], POWER["alpha"]) < 1e-4
    assert _rel(fit("power", y, x=X).params["alpha"], POWER["alpha"]) > 1e-4


def _with_outlier(index: int = 4, factor: float = 1.3) -> tuple[np.ndarray, np.ndarray]:
    """12 power-law points with 0.5% noise and one point ``factor`` too high."""
    x = np.logspace(4, 8, 12)
    y = _noisy(evaluate_form("power", POWER, x=x), 0.005, seed=11)
    y[index] *= factor
    return x, y


def test_outlier_rule_excludes_the_outlier_and_refits() -> None:
    x, y = _with_outlier()
    plain = fit("power", y, x=x)
    result = fit("power", y, x=x, outlier_z=4.0)
    assert result.excluded == (4,) and result.outlier_z == 4.0
    assert result.n_points == 11 and plain.n_points == 12 and plain.excluded == ()
    assert result.converged, result.message
    keep = np.arange(12) != 4
    reference = fit("power", y[keep], x=x[keep])
    for p, value in reference.params.items():
        assert _rel(result.params[p], value) < 1e-9, p
    err = {p: _rel(result.params[p], POWER[p]) for p in POWER}
    assert err["alpha"] < 0.5 * _rel(plain.params["alpha"], POWER["alpha"]), (err, plain.params)
    assert "excluded points [4]" in result.summary()
    assert FitResult.from_dict(json.loads(json.dumps(result.to_dict()))) == result


def test_outlier_rule_keeps_clean_data_whole() -> None:
    """Exactly fitted data: the MAD is rounding noise, and δ keeps it from excluding anything."""
    result = fit("power", evaluate_form("power", POWER, x=X), x=X, outlier_z=3.0)
    assert result.excluded == () and result.n_points == X.size
    assert "outliers (log-residual beyond 3 robust SDs): none" in result.summary()
    x, y = _with_outlier(factor=1.0)
    assert fit("power", y, x=x, outlier_z=4.0).excluded == ()


def test_outlier_rule_flags_by_robust_z_beyond_delta() -> None:
    residuals = np.array([0.0, 0.01, -0.01, 0.02, -0.02, 0.2, 0.0005])
    # median 0, MAD 0.01: robust SD 0.0148; 0.2 is 13.5 SDs out, 0.02 is 1.35
    np.testing.assert_array_equal(
        FIT._outliers(residuals, 3.0, 1e-3), [False, False, False, False, False, True, False]
    )
    assert FIT._outliers(residuals, 1.0, 1e-3)[[3, 4, 5]].all()
    # within δ of the median: not an outlier, however many robust SDs out
    np.testing.assert_array_equal(np.flatnonzero(FIT._outliers(residuals, 1.0, 0.05)), [5])
    assert not FIT._outliers(np.array([1e-12, 0.0, 0.0, -3e-12]), 3.0, 1e-3).any()


def test_outlier_rule_reports_what_it_cannot_fit(monkeypatch: pytest.MonkeyPatch) -> None:
    x, y = _with_outlier()
    with pytest.raises(FitError, match="outlier_z must be > 0"):
        fit("power", y, x=x, outlier_z=0.0)
    monkeypatch.setattr(FIT, "_outliers", lambda r, z, delta: np.arange(r.size) > 1)
    with pytest.raises(FitError, match=r"excluding 10 outlier\(s\) \(outlier_z=3\) leaves too"):
        fit("power", y, x=x, outlier_z=3.0)


def test_bootstrap_resamples_only_the_points_kept() -> None:
    x, y = _with_outlier()
    result = bootstrap("power", y, x=x, outlier_z=4.0, n_boot=30, seed=3)
    assert result.excluded == (4,) and result.n_points == 11
    keep = np.arange(12) != 4
    reference = bootstrap("power", y[keep], x=x[keep], n_boot=30, seed=3)
    np.testing.assert_allclose(result.samples, reference.samples, rtol=1e-9)
    lo, hi = result.intervals["alpha"]
    assert lo <= POWER["alpha"] <= hi


def test_fit_is_deterministic_and_random_starts_work() -> None:
    y = _noisy(evaluate_form("power", POWER, x=X), 0.01, seed=5)
    first = fit("power", y, x=X, n_starts=64, seed=7)
    assert first == fit("power", y, x=X, n_starts=64, seed=7)
    assert _rel(first.objective, fit("power", y, x=X).objective) < 1e-6


@pytest.mark.parametrize("name", sorted(FORMS))
def test_default_starts_number_at_least_1024(name: str) -> None:
    truth, inputs = CASES[name]
    form = get_form(name)
    data = make_problem(form, evaluate_form(name, truth, **inputs), **inputs).data
    grid = form.start_grid(data)
    starts = FIT._starts(form, data, None, seed=0)
    assert len(starts) == max(len(grid), FIT.MIN_STARTS) >= 1024
    np.testing.assert_array_equal(starts[: len(grid)], grid)  # the grid, then draws in its box
    assert np.all((starts >= grid.min(axis=0)) & (starts <= grid.max(axis=0)))
    np.testing.assert_array_equal(starts, FIT._starts(form, data, None, seed=0))
    result = fit(name, evaluate_form(name, truth, **inputs), **inputs)
    assert result.n_starts == len(starts)
    assert f"from {len(starts)} starts" in result.summary()
    assert fit(name, evaluate_form(name, truth, **inputs), n_starts=64, **inputs).n_starts == 64


def test_exactly_as_many_points_as_parameters_interpolates() -> None:
    x = np.array([1e4, 1e6, 1e8])
    result = fit("power", evaluate_form("power", POWER, x=x), x=x)
    assert result.dof == 0
    assert result.objective < 1e-12
    assert "interpolates" in result.summary()


def _count_lbfgsb_iterations(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Record the iterations of every L-BFGS-B run from here on."""
    runs: list[int] = []
    run_lbfgsb = REFINE.lbfgsb

    def counting(*args, **kwargs):
        run = run_lbfgsb(*args, **kwargs)
        runs.append(run.nit)
        return run

    monkeypatch.setattr(REFINE, "lbfgsb", counting)
    return runs


def test_non_monotone_three_point_fit_returns_promptly(monkeypatch: pytest.MonkeyPatch) -> None:
    """No power law fits a bump: E runs to its lower bound along a slow curved valley.

    The first implementation spent ~4,300 L-BFGS-B iterations here (10 refinements of ~430);
    now the refinements stop once three agree and each puts E on its bound after one run.
    """
    runs = _count_lbfgsb_iterations(monkeypatch)
    x = np.array([2e4, 4e4, 8e4])
    result = fit("power", np.array([0.5, 0.52, 0.43]), x=x)
    assert sum(runs) <= 1_500, runs
    assert result.converged or "iteration limit" in result.message, result.message
    assert result.converged, result.message
    assert "at a bound: log_E" in result.message
    assert result.params["E"] < 1e-8
    # the optimum the unhurried implementation found (5,000 iterations, ftol 1e-12)
    assert _rel(result.objective, 1.1388215802600819e-4) < 1e-9
    assert _rel(result.params["alpha"], 0.10879572) < 1e-6


@pytest.mark.parametrize(
    "y",
    [
        [0.5, 0.52, 0.43, 0.47],  # a bump and a dip
        [0.5, 0.5001, 0.4999, 0.5, 0.5002],  # flat
        [0.4, 0.45, 0.5],  # increasing
    ],
)
def test_awkward_power_fits_are_converged_or_flagged(y: list[float]) -> None:
    x = np.logspace(4, 6, len(y))
    result = fit("power", np.array(y), x=x)
    iterations = int(re.search(r"after (\d+) iterations", result.message).group(1))
    assert iterations <= REFINE.MAX_RUNS * REFINE.MAXITER * 2, result.message
    assert result.converged or "iteration limit" in result.message, result.message
    assert np.all(np.isfinite(list(result.params.values())))


def test_iteration_limit_is_reported(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(REFINE, "MAXITER", 3)
    monkeypatch.setattr(REFINE, "MAX_RUNS", 1)
    y = _noisy(evaluate_form("power", POWER, x=X), 0.01, seed=5)
    result = fit("power", y, x=X)
    assert not result.converged
    assert "stopped at the iteration limit (3 per run)" in result.message
    assert "NOT converged" in result.summary()


def test_convergence_is_reported_with_its_numbers() -> None:
    y = _noisy(evaluate_form("joint", JOINT, **JOINT_INPUTS), 0.01, seed=5)
    result = fit("joint", y, **JOINT_INPUTS)
    assert result.converged, result.message
    assert result.relative_gradient is not None and result.relative_gradient <= REFINE.GRAD_RTOL
    assert result.n_iterations > 0
    assert f"after {result.n_iterations} iterations" in result.message
    assert f"relative gradient {result.relative_gradient:.2g}" in result.message
    plain = result.to_dict()
    assert plain["n_iterations"] == result.n_iterations and plain["n_starts"] >= 1024


def test_bootstrap_counts_refits_that_did_not_converge(monkeypatch: pytest.MonkeyPatch) -> None:
    y = _noisy(evaluate_form("power", POWER, x=X), 0.01, seed=5)
    full = fit("power", y, x=X)
    assert bootstrap("power", y, x=X, n_boot=20, full_fit=full).n_boot_unconverged == 0
    monkeypatch.setattr(REFINE, "MAXITER", 2)
    monkeypatch.setattr(REFINE, "MAX_RUNS", 1)
    starved = bootstrap("power", y, x=X, n_boot=20, full_fit=full, seed=1)
    used = starved.n_boot - starved.n_boot_skipped
    assert 0 < starved.n_boot_unconverged <= used
    assert f"{starved.n_boot_unconverged} not converged" in starved.summary()


@pytest.mark.parametrize("name", ["power", "joint", "loss_to_loss"])
def test_stopping_once_refinements_agree_keeps_the_optimum(
    name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    truth, inputs = CASES[name]
    y = _noisy(evaluate_form(name, truth, **inputs), 0.01, seed=9)
    runs = _count_lbfgsb_iterations(monkeypatch)
    quick = fit(name, y, **inputs)
    n_quick = len(runs)
    monkeypatch.setattr(FIT, "N_AGREE", FIT.N_REFINE + 1)  # refine all ten starts
    runs.clear()
    full = fit(name, y, **inputs)
    assert n_quick < len(runs)
    assert quick.converged and full.converged
    assert _rel(quick.objective, full.objective) < 1e-9
    for p, value in full.params.items():
        assert _rel(quick.params[p], value) < 1e-6, (p, quick.params[p], value)


@pytest.mark.skipif(not LBFGSB._DIRECT, reason="this scipy goes through scipy.optimize.minimize")
def test_direct_lbfgsb_follows_scipy_minimize(monkeypatch: pytest.MonkeyPatch) -> None:
    """Driving scipy's L-BFGS-B routine directly gives exactly the iterates of minimize()."""
    y = _noisy(evaluate_form("power", POWER, x=X), 0.01, seed=10)
    problem = make_problem("power", y, x=X)
    fitter = REFINE.Fitter(problem)
    for theta in problem.form.start_grid(problem.data)[::97]:
        for maxiter in (5, 300):
            direct = LBFGSB.lbfgsb(fitter.scaled, theta, fitter.lo, fitter.hi, maxiter)
            monkeypatch.setattr(LBFGSB, "_DIRECT", False)
            reference = LBFGSB.lbfgsb(fitter.scaled, theta, fitter.lo, fitter.hi, maxiter)
            monkeypatch.setattr(LBFGSB, "_DIRECT", True)
            np.testing.assert_array_equal(direct.x, reference.x)
            assert (direct.nit, direct.status) == (reference.nit, reference.status)
            assert direct.message == reference.message


# --- bootstrap -------------------------------------------------------------------------------


def test_bootstrap_intervals_contain_the_truth() -> None:
    x = np.logspace(4, 8, 12)
    y = _noisy(evaluate_form("power", POWER, x=x), 0.005, seed=6)
    result = bootstrap("power", y, x=x, n_boot=40, seed=0)
    assert result.intervals is not None and result.ci == 0.95
    for p, value in POWER.items():
        lo, hi = result.intervals[p]
        assert lo <= value <= hi, (p, lo, value, hi)
        assert lo <= result.params[p] <= hi
    assert result.samples is not None and result.samples.shape == (40, 3)
    lo, hi = predict_interval(result, x=x)
    assert lo.shape == x.shape and np.all(lo <= hi)
    assert predict_interval(result, x=x.reshape(3, 4))[0].shape == (3, 4)
    assert np.all((lo <= result.predict(x=x) * 1.001) & (result.predict(x=x) <= hi * 1.001))
    assert "95% CI" in result.summary()


def test_bootstrap_skips_and_counts_degenerate_resamples() -> None:
    x = np.array([1e4, 1e6, 1e8])
    y = evaluate_form("power", POWER, x=x)
    result = bootstrap("power", y, x=x, n_boot=20, seed=1, scheme="pairs")
    assert result.n_boot == 20 and result.boot_scheme == "pairs"
    assert 0 < result.n_boot_skipped < 20
    assert result.samples is not None
    assert len(result.samples) == 20 - result.n_boot_skipped
    assert result == bootstrap("power", y, x=x, n_boot=20, seed=1, scheme="pairs")
    # Bayesian weights keep every point: nothing to skip
    assert bootstrap("power", y, x=x, n_boot=20, seed=1).n_boot_skipped == 0
    with pytest.raises(FitError, match="scheme must be one of"):
        bootstrap("power", y, x=x, n_boot=20, scheme="wild")


@pytest.mark.parametrize("scheme", ["pairs", "bayesian"])
@pytest.mark.parametrize("name", ["power", "joint", "loss_to_loss"])
def test_bootstrap_refits_equal_fits_of_the_resampled_points(name: str, scheme: str) -> None:
    """A resample is refitted as the full data weighted by draw counts (pairs) or by Exp(1)
    draws (Bayesian): the same optimum as a fresh fit of the drawn points, or of the points
    with those weights.

    (A parameter on its lower bound, such as an ``E_y`` of 1e-10, sits on the full data's
    bound rather than the resample's, hence the absolute tolerance.)
    """
    truth, inputs = CASES[name]
    y = _noisy(evaluate_form(name, truth, **inputs), 0.005, seed=12)
    result = bootstrap(name, y, n_boot=4, seed=5, scheme=scheme, **inputs)
    assert result.n_boot_skipped == 0 and result.n_boot_unconverged == 0
    rng = np.random.default_rng(5)
    form = get_form(name)
    for row in result.samples:
        if scheme == "pairs":
            idx = rng.integers(0, y.size, y.size)
            refit = fit(name, y[idx], **{k: v[idx] for k, v in inputs.items()})
        else:
            refit = fit(name, y, weights=rng.exponential(1.0, y.size), **inputs)
        expected = [refit.params[p] for p in form.param_names]
        np.testing.assert_allclose(row, expected, rtol=1e-4, atol=1e-8)
        sample = dict(zip(form.param_names, row, strict=True))
        np.testing.assert_allclose(
            form.evaluate(sample, **inputs), refit.predict(**inputs), rtol=1e-6
        )


def test_resample_check_agrees_with_validation() -> None:
    """The bootstrap's cheap check skips exactly the resamples that validation rejects."""
    rng = np.random.default_rng(0)
    n = np.array([1e5, 1e5, 1e6, 1e6, 1e7, 1e7, 1e8, 1e8])  # 6 distinct (n, d) points
    d = np.array([1e8, 1e9, 1e8, 1e8, 1e9, 1e9, 1e8, 1e9])
    y = evaluate_form("joint", JOINT, n=n, d=d)
    for weights in (np.ones(8), np.array([0.0, 0.0, 1.0, 1.0, 0.0, 2.0, 1.0, 1.0])):
        for name, inputs in (("joint", {"n": n, "d": d}), ("power", {"x": n})):
            form = get_form(name)
            codes = FIT._distinct_codes(inputs)
            outcomes = set()
            for _ in range(300):
                idx = rng.integers(0, 8, 8)
                counts = np.bincount(idx, minlength=8)
                resampled = {k: v[idx] for k, v in inputs.items()}
                try:
                    PROBLEM.validate(form, y[idx], resampled, weights[idx])
                    valid = True
                except FitError:
                    valid = False
                assert FIT._fittable(counts, codes, weights, form.n_params) == valid, (name, idx)
                outcomes.add(valid)
            assert outcomes == {True, False}


def test_predict_interval_needs_bootstrap_samples() -> None:
    result = fit("power", evaluate_form("power", POWER, x=X), x=X)
    with pytest.raises(ValueError, match="no bootstrap samples"):
        predict_interval(result, x=X)


# --- validation ------------------------------------------------------------------------------

_GOOD_Y = evaluate_form("power", POWER, x=X)


@pytest.mark.parametrize(
    ("form", "kwargs", "match"),
    [
        ("power", {"y": _GOOD_Y[:2], "x": X[:2]}, "at least 3 points"),
        ("power", {"y": np.where(X > 1e6, _GOOD_Y, -1.0), "x": X}, "y has 5 non-positive"),
        ("power", {"y": np.where(X > 1e6, _GOOD_Y, np.nan), "x": X}, "y has 5 NaN/inf"),
        ("power", {"y": _GOOD_Y, "x": np.where(X > 1e6, X, 0.0)}, "x has 5 non-positive"),
        ("power", {"y": _GOOD_Y, "x": np.where(X > 1e6, X, np.inf)}, "x has 5 NaN/inf"),
        ("power", {"y": _GOOD_Y, "x": np.full(9, 1e6)}, "x has a single distinct value"),
        ("power", {"y": _GOOD_Y, "x": X[:-1]}, "mismatched lengths"),
        ("power", {"y": _GOOD_Y, "x": X, "weights": np.ones(3)}, "mismatched lengths"),
        ("power", {"y": _GOOD_Y, "x": X, "weights": -np.ones(9)}, "weights must be"),
        ("power", {"y": _GOOD_Y[:3], "x": np.array([1e4, 1e4, 1e8])}, "only 2 distinct"),
        ("power", {"y": _GOOD_Y, "n": X}, "takes inputs"),
        ("power", {"y": _GOOD_Y.reshape(3, 3), "x": X.reshape(3, 3)}, "must be 1-D"),
        ("joint", {"y": _GOOD_Y, "n": X, "d": np.full(9, 1e9)}, "d has a single distinct"),
        ("cubic", {"y": _GOOD_Y, "x": X}, "unknown form"),
    ],
)
def test_bad_inputs_raise_one_line_fit_error(form: str, kwargs: dict, match: str) -> None:
    with pytest.raises(FitError, match=match) as info:
        fit(form, **kwargs)
    assert "\n" not in str(info.value)


# --- serialisation ---------------------------------------------------------------------------


def test_to_dict_from_dict_round_trip() -> None:
    x = np.array([1e4, 1e5, 1e6, 1e7])
    y = _noisy(evaluate_form("power", POWER, x=x), 0.01, seed=8)
    result = bootstrap("power", y, x=x, n_boot=5, seed=2)
    plain = json.loads(json.dumps(result.to_dict()))
    assert {"form", "params", "intervals", "objective", "converged", "n_points", "dof"} <= set(
        plain
    )
    assert "samples" not in plain
    restored = FitResult.from_dict(plain)
    assert restored == result and restored.samples is None
    full = FitResult.from_dict(json.loads(json.dumps(result.to_dict(include_samples=True))))
    assert full.samples is not None
    np.testing.assert_array_equal(full.samples, result.samples)
    lo, hi = predict_interval(full, x=x)
    np.testing.assert_array_equal(lo, predict_interval(result, x=x)[0])
    assert np.all(hi >= lo)


def test_summary_lists_every_parameter() -> None:
    result = fit("joint", evaluate_form("joint", JOINT, **JOINT_INPUTS), **JOINT_INPUTS)
    lines = result.summary().splitlines()
    assert len(lines) == 1 + len(JOINT)
    assert "converged" in lines[0] and "dof 31" in lines[0]
    assert result.dof == 31 and result.n_params == 5


def test_fit_with_intervals_is_fit_then_bootstrap_when_there_is_room() -> None:
    """One helper for "fit, then bootstrap with at least two degrees of freedom"."""
    y = _noisy(evaluate_form("power", POWER, x=X), 0.01, seed=21)
    full = fit("power", y, seed=3, x=X)
    expected = bootstrap("power", y, n_boot=15, seed=3, ci=0.9, full_fit=full, x=X)
    result = fit_with_intervals("power", y, n_boot=15, seed=3, ci=0.9, x=X)
    assert result == expected
    np.testing.assert_array_equal(result.samples, expected.samples)
    assert fit_with_intervals("power", y, n_boot=0, seed=3, x=X) == full
    few = X[:4]  # 4 points, 3 parameters: one degree of freedom
    alone = fit_with_intervals("power", y[:4], n_boot=15, x=few)
    assert alone.dof == 1 and alone.intervals is None and alone.samples is None
    assert alone == fit("power", y[:4], x=few)
