"""Training compute and the compute-optimal allocation a joint law implies.

Compute is ``C = k·N·D`` with ``k = 6`` FLOPs per parameter and training sample (Kaplan et al.
2020), or ``C = F·D`` with F the training FLOPs per sample measured for the model
(:func:`ecgscale.models.ladder.measure`) and D the training samples processed (steps × batch
size, as the study runner counts them). Minimising ``L(N, D) = E + A·N^−α + B·D^−β`` subject to
``C = k·N·D`` gives (Hoffmann et al. 2022, appendix D.2) ``N*(C) = G·(C/k)^a`` and
``D*(C) = G^−1·(C/k)^b`` with ``a = β/(α+β)``, ``b = α/(α+β)``, ``G = (αA / (βB))^{1/(α+β)}``.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.typing import ArrayLike

from ecgscale.laws.efficiency import float_list, percentile_band
from ecgscale.laws.fit import FitResult
from ecgscale.laws.forms import Array

DEFAULT_FLOPS_PER_PARAM_SAMPLE = 6.0
"""Training FLOPs per parameter and sample: 2 forward, 4 backward (Kaplan et al. 2020)."""


def positive_array(name: str, values: ArrayLike) -> Array:
    """A float array of finite values > 0, or a one-line ValueError."""
    arr = np.asarray(values, dtype=float)
    if arr.size == 0 or not (np.isfinite(arr).all() and (arr > 0).all()):
        raise ValueError(f"{name} must be non-empty, finite and > 0")
    return arr


def compute(
    n: ArrayLike | None,
    d: ArrayLike,
    flops_per_sample: ArrayLike | None = None,
) -> Array:
    """Training compute in FLOPs: ``C = 6·N·D``, or ``C = F·D`` given the measured FLOPs per
    training sample F (then ``n`` is not used and may be None).

    ``d`` counts training samples processed (steps × batch size); inputs broadcast.
    """
    d_arr = positive_array("d", d)
    if flops_per_sample is not None:
        return positive_array("flops_per_sample", flops_per_sample) * d_arr
    if n is None:
        raise ValueError("give n (parameters) or flops_per_sample")
    return DEFAULT_FLOPS_PER_PARAM_SAMPLE * positive_array("n", n) * d_arr


def _optimum(params: dict[str, Array], budget: Array) -> tuple[dict[str, Array], dict[str, Array]]:
    """Per-C arrays n_opt, d_opt, loss_opt, and the scalars G, a, b; parameters broadcast
    against ``budget = C / k``. Works in logs: ``log N* = log G + a·log(C/k)``."""
    e, a_amp, alpha, b_amp, beta = (params[p] for p in ("E", "A", "alpha", "B", "beta"))
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        total = alpha + beta
        log_g = (np.log(alpha * a_amp) - np.log(beta * b_amp)) / total
        a, b = beta / total, alpha / total
        log_budget = np.log(budget)
        n_opt = np.exp(log_g + a * log_budget)
        d_opt = np.exp(-log_g + b * log_budget)
        loss = e + a_amp * n_opt**-alpha + b_amp * d_opt**-beta
    return {"n_opt": n_opt, "d_opt": d_opt, "loss_opt": loss}, {"G": np.exp(log_g), "a": a, "b": b}


def compute_optimal(
    joint_fit: FitResult,
    c: ArrayLike,
    *,
    flops_per_param_sample: float = DEFAULT_FLOPS_PER_PARAM_SAMPLE,
    level: float | None = None,
) -> dict[str, Any]:
    """Compute-optimal ``N*(C) = G·(C/k)^{β/(α+β)}`` and ``D*(C) = G^−1·(C/k)^{α/(α+β)}``,
    ``G = (αA / (βB))^{1/(α+β)}``, minimising the joint law subject to ``C = k·N·D``.

    ``c`` (FLOPs, scalar or 1-D) is vectorised over; ``k = flops_per_param_sample``. When the
    fit carries bootstrap samples, every quantity gets a percentile interval at ``level``
    (default: the fit's ``ci``) from the per-sample optima; otherwise the ``*_lo``/``*_hi``
    entries are None. Returns a JSON-serialisable dict: ``c``, ``k``, lists ``n_opt``,
    ``d_opt``, ``loss_opt`` (the law at the optimum), ``d_per_n`` (D*/N*), scalars ``G``,
    ``a``, ``b`` (the exponents of N* and D*), each with ``_lo``/``_hi``, and ``level``,
    ``n_samples``. NaN/inf where the law is degenerate (α or β = 0).
    """
    if not isinstance(joint_fit, FitResult) or joint_fit.form != "joint":
        got = joint_fit.form if isinstance(joint_fit, FitResult) else type(joint_fit).__name__
        raise ValueError(f"compute_optimal needs a joint-law FitResult, got {got!r}")
    c_arr = positive_array("c", c)
    if c_arr.ndim > 1:
        raise ValueError(f"c must be a scalar or 1-D, got shape {c_arr.shape}")
    c_arr = np.atleast_1d(c_arr)
    k = float(flops_per_param_sample)
    if not (np.isfinite(k) and k > 0):
        raise ValueError(f"flops_per_param_sample must be finite and > 0, got {k}")
    lev = joint_fit.ci if level is None else level
    if lev is not None and not 0 < lev < 1:
        raise ValueError(f"level must be in (0, 1), got {lev}")
    point = {p: np.asarray(v, dtype=float) for p, v in joint_fit.params.items()}
    curves, scalars = _optimum(point, c_arr / k)
    with np.errstate(divide="ignore", invalid="ignore"):
        d_per_n = curves["d_opt"] / curves["n_opt"]
    out: dict[str, Any] = {
        "c": float_list(c_arr),
        "k": k,
        **{name: float_list(v) for name, v in curves.items()},
        "d_per_n": float_list(d_per_n),
        **{name: float(v) for name, v in scalars.items()},
    }
    samples = joint_fit.samples
    names = ("E", "A", "alpha", "B", "beta")
    if samples is None or lev is None:
        for name in (*curves, "d_per_n", *scalars):
            out[f"{name}_lo"] = out[f"{name}_hi"] = None
        out.update(level=None if lev is None else float(lev), n_samples=0)
        return out
    draws = {p: samples[:, j, None] for j, p in enumerate(names)}
    s_curves, s_scalars = _optimum(draws, c_arr[None, :] / k)
    with np.errstate(divide="ignore", invalid="ignore"):
        s_curves["d_per_n"] = s_curves["d_opt"] / s_curves["n_opt"]
    for name, values in s_curves.items():
        lo, hi = percentile_band(values, lev)
        out[f"{name}_lo"], out[f"{name}_hi"] = float_list(lo), float_list(hi)
    for name, values in s_scalars.items():
        lo, hi = percentile_band(values[:, 0], lev)
        out[f"{name}_lo"], out[f"{name}_hi"] = float(lo), float(hi)
    out.update(level=float(lev), n_samples=len(samples))
    return out
