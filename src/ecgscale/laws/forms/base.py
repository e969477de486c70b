"""What a scaling-law form is: its closed form and the log-space parameterisation it is
fitted in, with the helpers the forms share.

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
LOG_RANGE_BELOW = 20.0
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


def loss_scales(y: Array) -> dict[str, float]:
    """Reference constants of the observed losses used by bounds and start grids."""
    return {
        "log_ymin": float(np.log(y.min())),
        "log_ymax": float(np.log(y.max())),
        "ymin": float(y.min()),
        "ymed": float(np.median(y)),
    }


def centred_log(x: Array) -> tuple[Array, float]:
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


def cartesian(*levels: ArrayLike) -> Array:
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
