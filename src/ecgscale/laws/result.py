"""What a fit returns: :class:`FitResult` (parameters, fit quality, convergence, bootstrap
intervals), and :class:`FitError` for observations that cannot be fitted."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.typing import ArrayLike

from ecgscale.laws.forms import Array, get_form

DEFAULT_DELTA = 1e-3
"""Huber threshold on log-space residuals (Chinchilla, Epoch)."""


class FitError(ValueError):
    """Observations that cannot be fitted; the message names the problem in one line."""


@dataclass(frozen=True)
class FitResult:
    """A fitted law: natural parameters, fit quality, convergence and optional bootstrap CIs.

    ``converged`` is the outcome of the check in :func:`_refine`; ``message`` gives the reason
    (L-BFGS-B's stop, iterations, relative projected gradient, coordinates on a bound), and
    ``n_iterations`` and ``relative_gradient`` the numbers. ``n_points`` counts the points
    fitted, after the ``excluded`` ones (indices into the input) were dropped by the
    ``outlier_z`` rule.
    """

    form: str
    params: dict[str, float]
    objective: float
    converged: bool
    message: str
    n_points: int
    delta: float = DEFAULT_DELTA
    n_starts: int = 0
    n_iterations: int = 0
    relative_gradient: float | None = None
    """Largest projected-gradient component over the largest gradient the points could exert."""
    outlier_z: float | None = None
    excluded: tuple[int, ...] = ()
    held: tuple[str, ...] = ()
    """Parameters held at given values rather than fitted (e.g. E_x, E_y of a loss-to-loss law
    taken from per-distribution fits); they are in ``params`` but not in ``n_params``."""
    at_bound: tuple[str, ...] = ()
    """Parameters whose fitting coordinate ended on the fitter's box bound (held ones aside)."""
    exponent_bounds: dict[str, tuple[float, float]] = field(default_factory=dict)
    """The box of each parameter fitted in its own units (the exponents), e.g. α in [0, 5]."""
    intervals: dict[str, tuple[float, float]] | None = None
    ci: float | None = None
    n_boot: int = 0
    boot_scheme: str | None = None
    n_boot_skipped: int = 0
    n_boot_unconverged: int = 0
    samples: Array | None = field(default=None, repr=False, compare=False)
    """Bootstrap parameter samples (resamples × parameters, in ``params`` order)."""

    @property
    def n_params(self) -> int:
        """Number of fitted parameters (held ones not counted)."""
        return len(self.params) - len(self.held)

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
            f" {dof}; Huber(δ={self.delta:g}) objective {self.objective:.4g} from"
            f" {self.n_starts} starts; {status} ({self.message})"
        ]
        if self.outlier_z is not None:
            lines.append(
                f"  outliers (log-residual beyond {self.outlier_z:g} robust SDs): "
                + (f"excluded points {list(self.excluded)}" if self.excluded else "none")
            )
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
                f"  bootstrap ({self.boot_scheme}): {used} of {self.n_boot} resamples used"
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
            "boot_scheme": self.boot_scheme,
            "n_boot_skipped": int(self.n_boot_skipped),
            "n_boot_unconverged": int(self.n_boot_unconverged),
            "n_starts": int(self.n_starts),
            "n_iterations": int(self.n_iterations),
            "relative_gradient": None
            if self.relative_gradient is None
            else float(self.relative_gradient),
            "outlier_z": None if self.outlier_z is None else float(self.outlier_z),
            "excluded": [int(i) for i in self.excluded],
            "held": list(self.held),
            "at_bound": list(self.at_bound),
            "exponent_bounds": {
                k: [float(lo), float(hi)] for k, (lo, hi) in self.exponent_bounds.items()
            },
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
            boot_scheme=data.get("boot_scheme"),
            n_boot_skipped=int(data.get("n_boot_skipped", 0)),
            n_boot_unconverged=int(data.get("n_boot_unconverged", 0)),
            n_starts=int(data.get("n_starts", 0)),
            n_iterations=int(data.get("n_iterations", 0)),
            relative_gradient=data.get("relative_gradient"),
            outlier_z=data.get("outlier_z"),
            excluded=tuple(int(i) for i in data.get("excluded", ())),
            held=tuple(str(p) for p in data.get("held", ())),
            at_bound=tuple(str(p) for p in data.get("at_bound", ())),
            exponent_bounds={
                k: (float(lo), float(hi)) for k, (lo, hi) in data.get("exponent_bounds", {}).items()
            },
            samples=None if samples is None else np.asarray(samples, dtype=float),
        )
