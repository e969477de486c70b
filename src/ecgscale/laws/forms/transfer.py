"""The transfer law: data transferred by pre-training against pre-training data and model
size."""

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
        lf, log_f0 = centred_log(inputs["d_f"])
        ln, log_n0 = centred_log(inputs["n"])
        scales = {**loss_scales(y), "log_f0": log_f0, "log_n0": log_n0}
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
        log_range = (s["log_ymin"] - LOG_RANGE_BELOW, s["log_ymax"] + LOG_RANGE_BELOW)
        exponent = (-self.max_exponent, self.max_exponent)
        return [log_range, exponent, exponent]

    def start_grid(self, data: FitData) -> Array:
        grid = cartesian(self.log_offsets, self.exponents, self.exponents)
        c = float(np.median(data.log_y)) + grid[:, 0]
        return np.column_stack([c, grid[:, 1], grid[:, 2]])
