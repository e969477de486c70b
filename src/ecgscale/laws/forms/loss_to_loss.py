"""Loss-to-loss laws: one loss (e.g. out of distribution) against another (in distribution),
with the irreducible losses fitted or held at given values."""

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
    loss_scales,
)


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
        return FitData(np.log(y), {"x_excess": x - xmin}, {**loss_scales(y), "xmin": xmin})

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
            (s["log_ymin"] - LOG_RANGE_BELOW, s["log_ymax"]),
        ]

    def start_grid(self, data: FitData) -> Array:
        s, excess = data.scales, data.features["x_excess"]
        grid = cartesian(self.ex_fractions, self.kappas, self.ey_fractions, self.log_k_offsets)
        u = np.log1p(-grid[:, 0])
        e_y = s["ymin"] * grid[:, 2]
        # profile log K: the median log-ratio of (y − E_y) to (x − E_x)^κ, plus an offset
        log_gap = np.log(excess[None, :] + s["xmin"] * np.exp(u)[:, None])
        log_excess_y = np.log(np.exp(data.log_y)[None, :] - e_y[:, None])
        k = np.median(log_excess_y - grid[:, 1, None] * log_gap, axis=1) + grid[:, 3]
        return np.column_stack([k, grid[:, 1], u, np.log(e_y)])


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
        grid = cartesian(us, self.kappas_held, log_eys, self.log_k_offsets)
        u, kappa, log_e_y = grid[:, 0], grid[:, 1], grid[:, 2]
        # profile log K as in LossToLossForm.start_grid
        log_gap = np.log(excess[None, :] + s["xmin"] * np.exp(u)[:, None])
        log_excess_y = np.log(np.exp(data.log_y)[None, :] - np.exp(log_e_y)[:, None])
        k = np.median(log_excess_y - kappa[:, None] * log_gap, axis=1) + grid[:, 3]
        return np.column_stack([k, kappa, u, log_e_y])
