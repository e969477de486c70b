"""Laws of a loss against model and data size: a power law in one size, Chinchilla's joint
law and Kaplan's."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from ecgscale.laws.forms.base import (
    LOG_RANGE_BELOW,
    Array,
    FitData,
    Form,
    Kernel,
    cartesian,
    centred_log,
    loss_scales,
)

_E_FRACTIONS = (1e-3, 0.25, 0.5, 0.7, 0.8, 0.9, 0.95, 0.98, 0.99, 0.995, 0.999)
"""Start values of an irreducible loss, as fractions of the smallest observed loss."""


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
        lx, log_x0 = centred_log(inputs["x"])
        return FitData(np.log(y), {"lx": lx}, {**loss_scales(y), "log_x0": log_x0})

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
            (s["log_ymin"] - LOG_RANGE_BELOW, s["log_ymax"]),
            (s["log_ymax"] - 2 * LOG_RANGE_BELOW, s["log_ymax"] + 5.0),
            (0.0, 5.0),
        ]

    def start_grid(self, data: FitData) -> Array:
        s = data.scales
        grid = cartesian(_E_FRACTIONS, np.log(self.amplitude_factors), self.alphas)
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
        ln, log_n0 = centred_log(inputs["n"])
        ld, log_d0 = centred_log(inputs["d"])
        scales = {**loss_scales(y), "log_n0": log_n0, "log_d0": log_d0}
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
        amplitude = (s["log_ymax"] - 2 * LOG_RANGE_BELOW, s["log_ymax"] + 5.0)
        return [
            (s["log_ymin"] - LOG_RANGE_BELOW, s["log_ymax"]),
            amplitude,
            (0.0, 5.0),
            amplitude,
            (0.0, 5.0),
        ]

    def start_grid(self, data: FitData) -> Array:
        s = data.scales
        grid = cartesian(
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
        ln, log_n0 = centred_log(inputs["n"])
        ld, log_d0 = centred_log(inputs["d"])
        scales = {**loss_scales(y), "log_n0": log_n0, "log_d0": log_d0}
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
        log_loss = (s["log_ymin"] - LOG_RANGE_BELOW, s["log_ymax"] + 5.0)
        exponent = (self.min_exponent, 5.0)
        return [log_loss, exponent, log_loss, exponent]

    def start_grid(self, data: FitData) -> Array:
        grid = cartesian(self.log_loss_offsets, self.shares_of_n, self.exponents, self.exponents)
        # the loss at (n0, d0) ≈ the median loss; the N law's share of the inner sum there
        log_l0 = np.log(data.scales["ymed"]) + grid[:, 0]
        a_d = grid[:, 3]
        u = log_l0 + a_d * np.log(grid[:, 1])
        v = log_l0 + a_d * np.log1p(-grid[:, 1])
        return np.column_stack([u, grid[:, 2], v, a_d])
