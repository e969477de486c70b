"""Scaling-law forms: closed forms, and the log-space parameterisation each is fitted in.

Every form writes its prediction as a sum of positive terms, ``L̂ = Σ_k exp(t_k)``, where
each ``t_k`` is linear or smooth in the fitting coordinates ``theta``. Fitting then works on
``log L̂ = logsumexp(t)``, which is numerically stable and has a cheap analytic gradient.

Sizes are centred before fitting: ``x`` enters as ``log(x / x0)`` with ``x0`` the geometric
mean of the observed sizes, so the amplitude coordinate is the reducible loss at ``x0``
rather than at ``x = 1``. This decorrelates the amplitude from the exponent (better-conditioned
L-BFGS) and lets bounds and start grids be stated in units of the observed losses.
``to_params``/``from_params`` convert to and from the natural parameters (``A`` at ``x = 1``).
"""

from __future__ import annotations

import itertools
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike, NDArray

Array = NDArray[np.float64]
Kernel = Callable[[Array], tuple[Array, Array]]
"""``theta (P,) -> (log L̂ (n,), ∂ log L̂/∂theta (n, P))`` for one point, bound to one data set."""

_E_FRACTIONS = (1e-3, 0.25, 0.5, 0.7, 0.8, 0.9, 0.95, 0.98, 0.99, 0.995, 0.999)
"""Start values of an irreducible loss, as fractions of the smallest observed loss."""
_LOG_RANGE_BELOW = 20.0
"""How far (in log units) below the smallest observed loss a positive scale may go."""


@dataclass(frozen=True)
class FitData:
    """Observations prepared for one form: log losses, transformed inputs, reference constants."""

    log_y: Array
    features: dict[str, Array]
    scales: dict[str, float]

    @property
    def n_points(self) -> int:
        """Number of observations."""
        return int(self.log_y.size)


def _loss_scales(y: Array) -> dict[str, float]:
    """Reference constants of the observed losses used by bounds and start grids."""
    return {
        "log_ymin": float(np.log(y.min())),
        "log_ymax": float(np.log(y.max())),
        "ymin": float(y.min()),
        "ymed": float(np.median(y)),
    }


def _centred_log(x: Array) -> tuple[Array, float]:
    """``log(x / x0)`` and ``log x0`` with ``x0`` the geometric mean of ``x``."""
    lx = np.log(x)
    log_x0 = float(lx.mean())
    return lx - log_x0, log_x0


def log_sum_exp(terms: Array, jac: Array | None = None) -> tuple[Array, Array | None]:
    """Stable ``log Σ_k exp(t_k)`` over the last axis of ``terms`` (S, n, K), and its gradient.

    ``jac`` (S, n, K, P) holds ``∂t_k/∂theta_p``; the gradient (S, n, P) is the softmax-weighted
    sum of the term gradients.
    """
    top = terms.max(axis=-1, keepdims=True)
    expd = np.exp(terms - top)
    total = expd.sum(axis=-1, keepdims=True)
    value = top[..., 0] + np.log(total[..., 0])
    if jac is None:
        return value, None
    return value, np.einsum("snk,snkp->snp", expd / total, jac)


def _cartesian(*levels: ArrayLike) -> Array:
    """All combinations of the given per-coordinate levels, one per row."""
    return np.array(list(itertools.product(*levels)), dtype=float)


class Form(ABC):
    """A scaling-law form: its closed form and its log-space fitting parameterisation."""

    name: str
    formula: str
    param_names: tuple[str, ...]
    input_names: tuple[str, ...]
    theta_names: tuple[str, ...]
    """Names of the fitting coordinates, in the order of ``theta``."""

    @property
    def n_params(self) -> int:
        """Number of free parameters."""
        return len(self.param_names)

    def evaluate(self, params: Mapping[str, ArrayLike], **inputs: ArrayLike) -> Array:
        """Vectorised closed form; parameters and inputs broadcast against each other."""
        missing = [p for p in self.param_names if p not in params]
        if missing:
            raise ValueError(f"form {self.name!r} is missing parameters {missing}")
        if set(inputs) != set(self.input_names):
            raise ValueError(
                f"form {self.name!r} takes inputs {list(self.input_names)}, got {sorted(inputs)}"
            )
        values = {p: np.asarray(params[p], dtype=float) for p in self.param_names}
        arrays = {k: np.asarray(v, dtype=float) for k, v in inputs.items()}
        return self._closed_form(values, arrays)

    def log_predict(
        self, theta: Array, data: FitData, grad: bool = False
    ) -> tuple[Array, Array | None]:
        """``log L̂`` (S, n) for S rows of ``theta`` (S, P), and its gradient (S, n, P) if asked."""
        terms, jac = self.terms(np.atleast_2d(theta), data, grad)
        return log_sum_exp(terms, jac)

    def kernel(self, data: FitData) -> Kernel:
        """``log L̂`` and its gradient at one ``theta``, specialised to ``data``.

        This is what the optimiser calls thousands of times, so forms override it with a
        closure over precomputed features that does a handful of numpy operations and no
        validation. It must agree with :meth:`log_predict`; this default simply wraps it.
        """

        def log_predict_one(theta: Array) -> tuple[Array, Array]:
            value, jac = self.log_predict(theta[None, :], data, grad=True)
            assert jac is not None
            return value[0], jac[0]

        return log_predict_one

    @abstractmethod
    def _closed_form(self, params: dict[str, Array], inputs: dict[str, Array]) -> Array:
        """The law itself, on float arrays."""

    @abstractmethod
    def prepare(self, y: Array, inputs: Mapping[str, Array]) -> FitData:
        """Transform validated observations into this form's fitting space."""

    @abstractmethod
    def terms(self, theta: Array, data: FitData, grad: bool) -> tuple[Array, Array | None]:
        """Log-terms ``t`` (S, n, K) with ``L̂ = Σ_k exp(t_k)``, and ``∂t/∂theta`` (S, n, K, P)."""

    @abstractmethod
    def to_params(self, theta: Array, data: FitData) -> dict[str, float]:
        """Natural parameters from fitting coordinates."""

    @abstractmethod
    def from_params(self, params: Mapping[str, float], data: FitData) -> Array:
        """Fitting coordinates from natural parameters."""

    @abstractmethod
    def bounds(self, data: FitData) -> list[tuple[float, float]]:
        """Box bounds on the fitting coordinates, in units of the observed losses."""

    @abstractmethod
    def start_grid(self, data: FitData) -> Array:
        """Default starting points (S, P) in fitting coordinates."""


class PowerForm(Form):
    """``L(x) = E + A·x^−α``: loss against model size N or data size D."""

    name = "power"
    formula = "L = E + A·x^−alpha"
    param_names = ("E", "A", "alpha")
    input_names = ("x",)
    theta_names = ("log_E", "log_A_at_x0", "alpha")
    alphas = (0.02, 0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0)
    amplitude_factors = (0.2, 0.5, 1.0, 2.0, 5.0)

    def _closed_form(self, params: dict[str, Array], inputs: dict[str, Array]) -> Array:
        return params["E"] + params["A"] * inputs["x"] ** -params["alpha"]

    def prepare(self, y: Array, inputs: Mapping[str, Array]) -> FitData:
        lx, log_x0 = _centred_log(inputs["x"])
        return FitData(np.log(y), {"lx": lx}, {**_loss_scales(y), "log_x0": log_x0})

    def terms(self, theta: Array, data: FitData, grad: bool) -> tuple[Array, Array | None]:
        lx = data.features["lx"]
        e, a, alpha = (theta[:, i, None] for i in range(3))
        terms = np.stack([np.broadcast_to(e, (len(theta), lx.size)), a - alpha * lx], axis=-1)
        if not grad:
            return terms, None
        jac = np.zeros(terms.shape + (3,))
        jac[..., 0, 0] = 1.0
        jac[..., 1, 1] = 1.0
        jac[..., 1, 2] = -lx
        return terms, jac

    def kernel(self, data: FitData) -> Kernel:
        neg_lx = -data.features["lx"]
        shape = (neg_lx.size, 3)

        def log_predict_one(theta: Array) -> tuple[Array, Array]:
            e, a, alpha = theta
            t = a + alpha * neg_lx
            log_pred = np.logaddexp(e, t)
            jac = np.empty(shape)
            jac[:, 0] = np.exp(e - log_pred)
            share = np.exp(t - log_pred)
            jac[:, 1] = share
            jac[:, 2] = share * neg_lx
            return log_pred, jac

        return log_predict_one

    def to_params(self, theta: Array, data: FitData) -> dict[str, float]:
        e, a, alpha = (float(v) for v in theta)
        a_at_1 = a + alpha * data.scales["log_x0"]
        return {"E": float(np.exp(e)), "A": float(np.exp(a_at_1)), "alpha": alpha}

    def from_params(self, params: Mapping[str, float], data: FitData) -> Array:
        alpha = params["alpha"]
        log_a0 = np.log(params["A"]) - alpha * data.scales["log_x0"]
        return np.array([np.log(params["E"]), log_a0, alpha])

    def bounds(self, data: FitData) -> list[tuple[float, float]]:
        s = data.scales
        return [
            (s["log_ymin"] - _LOG_RANGE_BELOW, s["log_ymax"]),
            (s["log_ymax"] - 2 * _LOG_RANGE_BELOW, s["log_ymax"] + 5.0),
            (0.0, 5.0),
        ]

    def start_grid(self, data: FitData) -> Array:
        s = data.scales
        grid = _cartesian(_E_FRACTIONS, np.log(self.amplitude_factors), self.alphas)
        e = s["ymin"] * grid[:, 0]
        # amplitude at x0 ≈ (median loss − E) times a factor
        return np.column_stack([np.log(e), np.log(s["ymed"] - e) + grid[:, 1], grid[:, 2]])


class JointForm(Form):
    """``L(N, D) = E + A·N^−α + B·D^−β`` (Chinchilla's form)."""

    name = "joint"
    formula = "L = E + A·n^−alpha + B·d^−beta"
    param_names = ("E", "A", "alpha", "B", "beta")
    input_names = ("n", "d")
    theta_names = ("log_E", "log_A_at_n0", "alpha", "log_B_at_d0", "beta")
    e_fractions = (1e-3, 0.3, 0.6, 0.8, 0.9, 0.95, 0.98, 0.99)
    exponents = (0.05, 0.1, 0.2, 0.35, 0.6, 1.0)
    amplitude_factors = (0.5, 1.0, 2.0)
    shares_of_a = (0.1, 0.5, 0.9)

    def _closed_form(self, params: dict[str, Array], inputs: dict[str, Array]) -> Array:
        return (
            params["E"]
            + params["A"] * inputs["n"] ** -params["alpha"]
            + params["B"] * inputs["d"] ** -params["beta"]
        )

    def prepare(self, y: Array, inputs: Mapping[str, Array]) -> FitData:
        ln, log_n0 = _centred_log(inputs["n"])
        ld, log_d0 = _centred_log(inputs["d"])
        scales = {**_loss_scales(y), "log_n0": log_n0, "log_d0": log_d0}
        return FitData(np.log(y), {"ln": ln, "ld": ld}, scales)

    def terms(self, theta: Array, data: FitData, grad: bool) -> tuple[Array, Array | None]:
        ln, ld = data.features["ln"], data.features["ld"]
        e, a, alpha, b, beta = (theta[:, i, None] for i in range(5))
        first = np.broadcast_to(e, (len(theta), ln.size))
        terms = np.stack([first, a - alpha * ln, b - beta * ld], axis=-1)
        if not grad:
            return terms, None
        jac = np.zeros(terms.shape + (5,))
        jac[..., 0, 0] = 1.0
        jac[..., 1, 1] = 1.0
        jac[..., 1, 2] = -ln
        jac[..., 2, 3] = 1.0
        jac[..., 2, 4] = -ld
        return terms, jac

    def kernel(self, data: FitData) -> Kernel:
        neg_ln, neg_ld = -data.features["ln"], -data.features["ld"]
        shape = (neg_ln.size, 5)

        def log_predict_one(theta: Array) -> tuple[Array, Array]:
            e, a, alpha, b, beta = theta
            t_n = a + alpha * neg_ln
            t_d = b + beta * neg_ld
            log_pred = np.logaddexp(e, np.logaddexp(t_n, t_d))
            jac = np.empty(shape)
            jac[:, 0] = np.exp(e - log_pred)
            share = np.exp(t_n - log_pred)
            jac[:, 1] = share
            jac[:, 2] = share * neg_ln
            share = np.exp(t_d - log_pred)
            jac[:, 3] = share
            jac[:, 4] = share * neg_ld
            return log_pred, jac

        return log_predict_one

    def to_params(self, theta: Array, data: FitData) -> dict[str, float]:
        e, a, alpha, b, beta = (float(v) for v in theta)
        s = data.scales
        return {
            "E": float(np.exp(e)),
            "A": float(np.exp(a + alpha * s["log_n0"])),
            "alpha": alpha,
            "B": float(np.exp(b + beta * s["log_d0"])),
            "beta": beta,
        }

    def from_params(self, params: Mapping[str, float], data: FitData) -> Array:
        s = data.scales
        return np.array(
            [
                np.log(params["E"]),
                np.log(params["A"]) - params["alpha"] * s["log_n0"],
                params["alpha"],
                np.log(params["B"]) - params["beta"] * s["log_d0"],
                params["beta"],
            ]
        )

    def bounds(self, data: FitData) -> list[tuple[float, float]]:
        s = data.scales
        amplitude = (s["log_ymax"] - 2 * _LOG_RANGE_BELOW, s["log_ymax"] + 5.0)
        return [
            (s["log_ymin"] - _LOG_RANGE_BELOW, s["log_ymax"]),
            amplitude,
            (0.0, 5.0),
            amplitude,
            (0.0, 5.0),
        ]

    def start_grid(self, data: FitData) -> Array:
        s = data.scales
        grid = _cartesian(
            self.e_fractions,
            self.amplitude_factors,
            self.shares_of_a,
            self.exponents,
            self.exponents,
        )
        e = s["ymin"] * grid[:, 0]
        # reducible loss at (n0, d0) ≈ factor × (median loss − E), split between the two terms
        reducible = (s["ymed"] - e) * grid[:, 1]
        log_a = np.log(reducible * grid[:, 2])
        log_b = np.log(reducible * (1.0 - grid[:, 2]))
        return np.column_stack([np.log(e), log_a, grid[:, 3], log_b, grid[:, 4]])


class LossToLossForm(Form):
    """``L_y = K·(L_x − E_x)^κ + E_y``: one loss (e.g. OOD) against another (e.g. ID).

    ``E_x`` is fitted as a share of the smallest observed source loss,
    ``E_x = min(L_x)·(1 − exp(u))`` with ``u ≤ 0``, so ``0 ≤ E_x < min(L_x)`` always holds.
    """

    name = "loss_to_loss"
    formula = "L_y = K·(x − E_x)^kappa + E_y"
    param_names = ("K", "kappa", "E_x", "E_y")
    input_names = ("x",)
    theta_names = ("log_K", "kappa", "log_gap_x", "log_E_y")
    ex_fractions = (0.0, 0.3, 0.6, 0.8, 0.9, 0.95, 0.99)
    kappas = (0.25, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0)
    ey_fractions = (1e-3, 0.3, 0.6, 0.8, 0.9, 0.95, 0.99)
    log_k_offsets = (-1.0, 0.0, 1.0)
    min_log_gap = -25.0

    def _closed_form(self, params: dict[str, Array], inputs: dict[str, Array]) -> Array:
        gap = inputs["x"] - params["E_x"]
        base = np.where(gap >= 0, gap, np.nan)
        return params["K"] * base ** params["kappa"] + params["E_y"]

    def prepare(self, y: Array, inputs: Mapping[str, Array]) -> FitData:
        x = inputs["x"]
        xmin = float(x.min())
        return FitData(np.log(y), {"x_excess": x - xmin}, {**_loss_scales(y), "xmin": xmin})

    def terms(self, theta: Array, data: FitData, grad: bool) -> tuple[Array, Array | None]:
        excess, xmin = data.features["x_excess"], data.scales["xmin"]
        k, kappa, u, e_y = (theta[:, i, None] for i in range(4))
        gap_at_min = xmin * np.exp(u)
        gap = excess + gap_at_min  # x − E_x > 0
        log_gap = np.log(gap)
        first = k + kappa * log_gap
        terms = np.stack([first, np.broadcast_to(e_y, first.shape)], axis=-1)
        if not grad:
            return terms, None
        jac = np.zeros(terms.shape + (4,))
        jac[..., 0, 0] = 1.0
        jac[..., 0, 1] = log_gap
        jac[..., 0, 2] = kappa * gap_at_min / gap
        jac[..., 1, 3] = 1.0
        return terms, jac

    def kernel(self, data: FitData) -> Kernel:
        excess, xmin = data.features["x_excess"], data.scales["xmin"]
        shape = (excess.size, 4)

        def log_predict_one(theta: Array) -> tuple[Array, Array]:
            k, kappa, u, e_y = theta
            gap_at_min = xmin * np.exp(u)
            gap = excess + gap_at_min  # x − E_x > 0
            log_gap = np.log(gap)
            t = k + kappa * log_gap
            log_pred = np.logaddexp(t, e_y)
            jac = np.empty(shape)
            share = np.exp(t - log_pred)
            jac[:, 0] = share
            jac[:, 1] = share * log_gap
            jac[:, 2] = share * (kappa * gap_at_min) / gap
            jac[:, 3] = np.exp(e_y - log_pred)
            return log_pred, jac

        return log_predict_one

    def to_params(self, theta: Array, data: FitData) -> dict[str, float]:
        k, kappa, u, e_y = (float(v) for v in theta)
        e_x = float(data.scales["xmin"] * -np.expm1(u))
        return {"K": float(np.exp(k)), "kappa": kappa, "E_x": e_x, "E_y": float(np.exp(e_y))}

    def from_params(self, params: Mapping[str, float], data: FitData) -> Array:
        u = np.log1p(-params["E_x"] / data.scales["xmin"])
        return np.array(
            [np.log(params["K"]), params["kappa"], max(u, self.min_log_gap), np.log(params["E_y"])]
        )

    def bounds(self, data: FitData) -> list[tuple[float, float]]:
        s = data.scales
        return [
            (-50.0, 50.0),
            (0.0, 10.0),
            (self.min_log_gap, 0.0),
            (s["log_ymin"] - _LOG_RANGE_BELOW, s["log_ymax"]),
        ]

    def start_grid(self, data: FitData) -> Array:
        s, excess = data.scales, data.features["x_excess"]
        grid = _cartesian(self.ex_fractions, self.kappas, self.ey_fractions, self.log_k_offsets)
        u = np.log1p(-grid[:, 0])
        e_y = s["ymin"] * grid[:, 2]
        # profile log K: the median log-ratio of (y − E_y) to (x − E_x)^κ, plus an offset
        log_gap = np.log(excess[None, :] + s["xmin"] * np.exp(u)[:, None])
        log_excess_y = np.log(np.exp(data.log_y)[None, :] - e_y[:, None])
        k = np.median(log_excess_y - grid[:, 1, None] * log_gap, axis=1) + grid[:, 3]
        return np.column_stack([k, grid[:, 1], u, np.log(e_y)])


FORMS: dict[str, Form] = {f.name: f for f in (PowerForm(), JointForm(), LossToLossForm())}
"""Registry of the scaling-law forms, by name."""


def get_form(form: str | Form) -> Form:
    """The registered form of that name (a :class:`Form` passes through)."""
    if isinstance(form, Form):
        return form
    if form not in FORMS:
        raise ValueError(f"unknown form {form!r}; choose from {sorted(FORMS)}")
    return FORMS[form]


def evaluate_form(form: str, params: Mapping[str, ArrayLike], **inputs: ArrayLike) -> Array:
    """Evaluate the named form's closed form at ``inputs`` (e.g. to draw a fitted curve)."""
    return get_form(form).evaluate(params, **inputs)


class KaplanForm(Form):
    """``L(N, D) = [(N_c/N)^(α_N/α_D) + D_c/D]^α_D`` (Kaplan et al. 2020, eq. 1.5).

    With the one-variable laws ``L_N = (N_c/N)^α_N`` and ``L_D = (D_c/D)^α_D`` the form is a
    soft maximum at temperature α_D, ``log L = α_D·logsumexp(log L_N/α_D, log L_D/α_D)``: a
    single term, fitted in the logs of ``L_N`` at n0 and ``L_D`` at d0 (in units of the
    observed losses) and the two exponents.
    """

    name = "kaplan"
    formula = "L = [(N_c/n)^(alpha_N/alpha_D) + D_c/d]^alpha_D"
    param_names = ("N_c", "alpha_N", "D_c", "alpha_D")
    input_names = ("n", "d")
    theta_names = ("log_L_N_at_n0", "alpha_N", "log_L_D_at_d0", "alpha_D")
    exponents = (0.03, 0.05, 0.075, 0.1, 0.15, 0.25, 0.4, 0.7, 1.2)
    shares_of_n = (0.1, 0.3, 0.5, 0.7, 0.9)
    log_loss_offsets = (-0.2, 0.0, 0.2)
    min_exponent = 0.01

    def _closed_form(self, params: dict[str, Array], inputs: dict[str, Array]) -> Array:
        ratio = params["alpha_N"] / params["alpha_D"]
        inner = (params["N_c"] / inputs["n"]) ** ratio + params["D_c"] / inputs["d"]
        return inner ** params["alpha_D"]

    def prepare(self, y: Array, inputs: Mapping[str, Array]) -> FitData:
        ln, log_n0 = _centred_log(inputs["n"])
        ld, log_d0 = _centred_log(inputs["d"])
        scales = {**_loss_scales(y), "log_n0": log_n0, "log_d0": log_d0}
        return FitData(np.log(y), {"ln": ln, "ld": ld}, scales)

    def terms(self, theta: Array, data: FitData, grad: bool) -> tuple[Array, Array | None]:
        ln, ld = data.features["ln"], data.features["ld"]
        u, a_n, v, a_d = (theta[:, i, None] for i in range(4))
        t_n = u - a_n * ln
        z_n = t_n / a_d
        z_d = v / a_d - ld
        lse = np.logaddexp(z_n, z_d)
        terms = (a_d * lse)[..., None]
        if not grad:
            return terms, None
        w_n, w_d = np.exp(z_n - lse), np.exp(z_d - lse)
        jac = np.empty(terms.shape + (4,))
        jac[..., 0, 0] = w_n
        jac[..., 0, 1] = -w_n * ln
        jac[..., 0, 2] = w_d
        jac[..., 0, 3] = lse - (w_n * t_n + w_d * v) / a_d
        return terms, jac

    def kernel(self, data: FitData) -> Kernel:
        ln, ld = data.features["ln"], data.features["ld"]
        shape = (ln.size, 4)

        def log_predict_one(theta: Array) -> tuple[Array, Array]:
            u, a_n, v, a_d = theta
            t_n = u - a_n * ln
            z_n = t_n / a_d
            z_d = v / a_d - ld
            lse = np.logaddexp(z_n, z_d)
            w_n, w_d = np.exp(z_n - lse), np.exp(z_d - lse)
            jac = np.empty(shape)
            jac[:, 0] = w_n
            jac[:, 1] = -w_n * ln
            jac[:, 2] = w_d
            jac[:, 3] = lse - (w_n * t_n + w_d * v) / a_d
            return a_d * lse, jac

        return log_predict_one

    def to_params(self, theta: Array, data: FitData) -> dict[str, float]:
        u, a_n, v, a_d = (float(t) for t in theta)
        s = data.scales
        return {
            "N_c": float(np.exp(s["log_n0"] + u / a_n)),
            "alpha_N": a_n,
            "D_c": float(np.exp(s["log_d0"] + v / a_d)),
            "alpha_D": a_d,
        }

    def from_params(self, params: Mapping[str, float], data: FitData) -> Array:
        s = data.scales
        a_n, a_d = params["alpha_N"], params["alpha_D"]
        u = a_n * (np.log(params["N_c"]) - s["log_n0"])
        v = a_d * (np.log(params["D_c"]) - s["log_d0"])
        return np.array([u, a_n, v, a_d])

    def bounds(self, data: FitData) -> list[tuple[float, float]]:
        s = data.scales
        log_loss = (s["log_ymin"] - _LOG_RANGE_BELOW, s["log_ymax"] + 5.0)
        exponent = (self.min_exponent, 5.0)
        return [log_loss, exponent, log_loss, exponent]

    def start_grid(self, data: FitData) -> Array:
        grid = _cartesian(self.log_loss_offsets, self.shares_of_n, self.exponents, self.exponents)
        # the loss at (n0, d0) ≈ the median loss; the N law's share of the inner sum there
        log_l0 = np.log(data.scales["ymed"]) + grid[:, 0]
        a_d = grid[:, 3]
        u = log_l0 + a_d * np.log(grid[:, 1])
        v = log_l0 + a_d * np.log1p(-grid[:, 1])
        return np.column_stack([u, grid[:, 2], v, a_d])


class TransferForm(Form):
    """``D_T = k·D_F^α·N^β``: data transferred by pre-training (Hernandez et al. 2021).

    A single positive term, linear in log space: ``log D_T = log D_T0 + α·log(D_F/f0) +
    β·log(N/n0)`` with ``D_T0`` the transferred data at the centre (f0, n0). The exponents
    may be negative.
    """

    name = "transfer"
    formula = "D_T = k·d_f^alpha·n^beta"
    param_names = ("k", "alpha", "beta")
    input_names = ("d_f", "n")
    theta_names = ("log_D_T_at_centre", "alpha", "beta")
    log_offsets = (-3.0, -2.0, -1.0, -0.5, 0.0, 0.5, 1.0, 2.0)
    exponents = (-1.5, -1.0, -0.5, -0.25, 0.0, 0.1, 0.2, 0.35, 0.5, 0.75, 1.0, 1.5)
    max_exponent = 5.0

    def _closed_form(self, params: dict[str, Array], inputs: dict[str, Array]) -> Array:
        return params["k"] * inputs["d_f"] ** params["alpha"] * inputs["n"] ** params["beta"]

    def prepare(self, y: Array, inputs: Mapping[str, Array]) -> FitData:
        lf, log_f0 = _centred_log(inputs["d_f"])
        ln, log_n0 = _centred_log(inputs["n"])
        scales = {**_loss_scales(y), "log_f0": log_f0, "log_n0": log_n0}
        return FitData(np.log(y), {"lf": lf, "ln": ln}, scales)

    def terms(self, theta: Array, data: FitData, grad: bool) -> tuple[Array, Array | None]:
        lf, ln = data.features["lf"], data.features["ln"]
        c, alpha, beta = (theta[:, i, None] for i in range(3))
        terms = (c + alpha * lf + beta * ln)[..., None]
        if not grad:
            return terms, None
        jac = np.empty(terms.shape + (3,))
        jac[..., 0, 0] = 1.0
        jac[..., 0, 1] = lf
        jac[..., 0, 2] = ln
        return terms, jac

    def kernel(self, data: FitData) -> Kernel:
        lf, ln = data.features["lf"], data.features["ln"]
        jac = np.column_stack([np.ones_like(lf), lf, ln])
        jac.flags.writeable = False  # the same (constant) Jacobian is returned at every theta

        def log_predict_one(theta: Array) -> tuple[Array, Array]:
            c, alpha, beta = theta
            return c + alpha * lf + beta * ln, jac

        return log_predict_one

    def to_params(self, theta: Array, data: FitData) -> dict[str, float]:
        c, alpha, beta = (float(t) for t in theta)
        s = data.scales
        return {
            "k": float(np.exp(c - alpha * s["log_f0"] - beta * s["log_n0"])),
            "alpha": alpha,
            "beta": beta,
        }

    def from_params(self, params: Mapping[str, float], data: FitData) -> Array:
        s = data.scales
        alpha, beta = params["alpha"], params["beta"]
        c = np.log(params["k"]) + alpha * s["log_f0"] + beta * s["log_n0"]
        return np.array([c, alpha, beta])

    def bounds(self, data: FitData) -> list[tuple[float, float]]:
        s = data.scales
        log_range = (s["log_ymin"] - _LOG_RANGE_BELOW, s["log_ymax"] + _LOG_RANGE_BELOW)
        exponent = (-self.max_exponent, self.max_exponent)
        return [log_range, exponent, exponent]

    def start_grid(self, data: FitData) -> Array:
        grid = _cartesian(self.log_offsets, self.exponents, self.exponents)
        c = float(np.median(data.log_y)) + grid[:, 0]
        return np.column_stack([c, grid[:, 1], grid[:, 2]])


class HeldLossToLossForm(LossToLossForm):
    """:class:`LossToLossForm` with ``E_x`` and/or ``E_y`` held at given values.

    For irreducible losses taken from per-distribution fits (``E_x`` of ``L_x(N)``, ``E_y`` of
    ``L_y(N)``). A held coordinate's box is a single point, so the optimiser leaves it there;
    ``n_params`` counts the free parameters only. Results carry the held values exactly.
    """

    kappas_held = tuple(np.geomspace(0.1, 8.0, 20))
    """Start values of κ: a finer grid, as there are fewer coordinates to cover."""

    def __init__(self, e_x: float | None = None, e_y: float | None = None) -> None:
        held = {"E_x": e_x, "E_y": e_y}
        self.held = {k: float(v) for k, v in held.items() if v is not None}
        if not self.held:
            raise ValueError("a held loss-to-loss form holds E_x, E_y or both")
        for name, value in self.held.items():
            if not (np.isfinite(value) and value >= 0):
                raise ValueError(f"held {name} must be finite and >= 0, got {value:g}")
        self.theta_names = tuple(
            f"{t} (held)" if p in self.held else t
            for t, p in zip(LossToLossForm.theta_names, self.param_names, strict=True)
        )

    @property
    def n_params(self) -> int:
        """Number of free parameters (the held ones do not count)."""
        return len(self.param_names) - len(self.held)

    def prepare(self, y: Array, inputs: Mapping[str, Array]) -> FitData:
        data = super().prepare(y, inputs)
        limits = {"E_x": ("x", data.scales["xmin"]), "E_y": ("y", data.scales["ymin"])}
        for name, value in self.held.items():
            what, smallest = limits[name]
            if value >= smallest:
                raise ValueError(
                    f"held {name} = {value:.6g} is not below the smallest {what} ({smallest:.6g})"
                )
        return data

    def _held_theta(self, data: FitData) -> dict[int, float]:
        """Fitting coordinates of the held parameters, by position in ``theta``."""
        held: dict[int, float] = {}
        if "E_x" in self.held:
            u = np.log1p(-self.held["E_x"] / data.scales["xmin"])
            held[2] = float(max(u, self.min_log_gap))
        if "E_y" in self.held:
            lowest = super().bounds(data)[3][0]  # E_y = 0 sits on the lower bound
            held[3] = lowest if self.held["E_y"] == 0 else max(np.log(self.held["E_y"]), lowest)
        return held

    def to_params(self, theta: Array, data: FitData) -> dict[str, float]:
        return {**super().to_params(theta, data), **self.held}

    def from_params(self, params: Mapping[str, float], data: FitData) -> Array:
        with np.errstate(divide="ignore"):  # a held E_y = 0: log −inf, replaced below
            theta = super().from_params({**params, **self.held}, data)
        for i, value in self._held_theta(data).items():
            theta[i] = value
        return theta

    def bounds(self, data: FitData) -> list[tuple[float, float]]:
        bounds = super().bounds(data)
        for i, value in self._held_theta(data).items():
            bounds[i] = (value, value)
        return bounds

    def start_grid(self, data: FitData) -> Array:
        s, excess = data.scales, data.features["x_excess"]
        held = self._held_theta(data)
        us = [held[2]] if 2 in held else np.log1p(-np.array(self.ex_fractions))
        log_eys = [held[3]] if 3 in held else np.log(s["ymin"] * np.array(self.ey_fractions))
        grid = _cartesian(us, self.kappas_held, log_eys, self.log_k_offsets)
        u, kappa, log_e_y = grid[:, 0], grid[:, 1], grid[:, 2]
        # profile log K as in LossToLossForm.start_grid
        log_gap = np.log(excess[None, :] + s["xmin"] * np.exp(u)[:, None])
        log_excess_y = np.log(np.exp(data.log_y)[None, :] - np.exp(log_e_y)[:, None])
        k = np.median(log_excess_y - kappa[:, None] * log_gap, axis=1) + grid[:, 3]
        return np.column_stack([k, kappa, u, log_e_y])


FORMS.update({f.name: f for f in (KaplanForm(), TransferForm())})
