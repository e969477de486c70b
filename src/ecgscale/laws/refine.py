"""Local refinement of a starting point with L-BFGS-B, convergence-checked and restarted while
it falls short, and the multistart that refines the best starts of a grid."""

from __future__ import annotations

import functools
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
from threadpoolctl import ThreadpoolController

from ecgscale.laws.forms import Array, Kernel
from ecgscale.laws.lbfgsb import ITERATION_LIMIT, SUCCESS, Run, lbfgsb
from ecgscale.laws.problem import Problem, objective_fn
from ecgscale.laws.result import FitError

AGREE_RTOL = 1e-7
"""Two refinements reach the same optimum when their objectives differ by at most this share
(plus :data:`AGREE_ATOL` δ², for objectives near zero)."""
AGREE_ATOL = 1e-9
GRAD_RTOL = 1e-6
"""Converged needs a projected gradient ≤ this share of the largest one the points could exert."""
MAXITER = 300
"""L-BFGS-B iterations per run."""
MAX_RUNS = 3
"""L-BFGS-B runs per refinement, counting the first and the re-runs on bounds that follow it
when it falls short (:func:`_faces`, which always run); restarts make up the rest."""


@dataclass(frozen=True)
class Optimum:
    """The outcome of one local refinement."""

    theta: Array
    objective: float
    converged: bool
    message: str
    n_iterations: int
    relative_gradient: float


@functools.cache
def _blas_controller() -> ThreadpoolController:
    """The BLAS libraries loaded (numpy's and scipy's), found on first use."""
    return ThreadpoolController()


@contextmanager
def one_blas_thread() -> Iterator[None]:
    """Run with one BLAS thread (restored afterwards).

    L-BFGS-B calls LAPACK on matrices of a few rows every iteration; on a busy machine the
    threads of scipy's own OpenBLAS (a separate library from numpy's, so limits set before
    scipy was imported do not reach it) can turn each call from microseconds into
    milliseconds, and a fit from 50 ms into 20 s.
    """
    with _blas_controller().limit(limits=1, user_api="blas"):
        yield


def _projected_gradient(theta: Array, grad: Array, lo: Array, hi: Array) -> Array:
    """The gradient with components that push against an active bound zeroed."""
    blocked = ((theta <= lo) & (grad > 0)) | ((theta >= hi) & (grad < 0))
    return np.where(blocked, 0.0, grad)


def _gradient_scale(problem: Problem, kernel: Kernel, theta: Array) -> float:
    """Largest possible gradient norm: every point at the Huber slope δ, all pushing one way."""
    _, jac = kernel(theta)
    return problem.delta * float(problem.weights @ np.abs(jac).max(axis=1))


def _snap_to_bounds(fitter: Fitter, theta: Array, projected: Array) -> Array:
    """``theta`` with coordinates that are still being pushed towards a bound moved onto it.

    A coordinate whose term fades away (an irreducible loss going to zero, an exponent going
    to zero) has a gradient that shrinks with it, so L-BFGS-B creeps towards the bound for
    hundreds of iterations and may stop short of it. Each coordinate whose projected gradient
    points at a bound is put on that bound, largest gradient first, when that does not raise
    the objective; a coordinate that matters is never moved, since its move would raise it.
    """
    lo, hi = fitter.lo, fitter.hi
    best, (value, _) = theta, fitter.scaled(theta)
    for i in np.argsort(-np.abs(projected), kind="stable"):
        target = lo[i] if projected[i] > 0 else hi[i]
        if projected[i] == 0 or not np.isfinite(target) or lo[i] == theta[i] or theta[i] == hi[i]:
            continue
        trial = best.copy()
        trial[i] = target
        trial_value, _ = fitter.scaled(trial)
        if trial_value <= value:
            best, value = trial, trial_value
    return best


@dataclass(frozen=True)
class _State:
    """Where an L-BFGS-B run ended, and how it stands against the convergence test."""

    run: Run
    value: float
    relative: float
    projected: Array

    @property
    def converged(self) -> bool:
        """Stopped on its own, not on the iteration limit, with a small projected gradient."""
        return self.run.status != ITERATION_LIMIT and self.relative <= GRAD_RTOL

    @property
    def done(self) -> bool:
        """Converged, and L-BFGS-B's own tests agree."""
        return self.converged and self.run.status == SUCCESS


def _run(problem: Problem, fitter: Fitter, theta: Array) -> _State:
    """One L-BFGS-B run from ``theta``, checked."""
    run = lbfgsb(fitter.scaled, theta, fitter.lo, fitter.hi, MAXITER)
    return _State(run, *_check(problem, fitter, run.x))


def _faces(problem: Problem, fitter: Fitter, start: Array, end: _State) -> tuple[_State, int, int]:
    """The best of ``end`` and re-runs with a coordinate it was creeping towards a bound on.

    When L-BFGS-B runs out of iterations in a long curved valley that leads to a bound (an
    irreducible loss trading off against the amplitude of a nearly flat power law on its way
    to zero, say), re-running with that coordinate on the bound solves a smaller,
    better-conditioned problem; it is kept only if it reaches a lower objective. A coordinate
    counts as creeping when the run moved it towards a bound that its gradient still points
    at; they are tried by decreasing distance moved (in units of their box), until one
    converges. Returns the best state, the runs made and the iterations they took.
    """
    lo, hi, theta = fitter.lo, fitter.hi, end.run.x
    width = hi - lo
    moved = (theta - start) / np.where(np.isfinite(width) & (width > 0), width, np.inf)
    best, runs, nit = end, 0, 0
    for i in np.argsort(-np.abs(moved), kind="stable"):
        g = end.projected[i]
        target = lo[i] if g > 0 > moved[i] else hi[i] if g < 0 < moved[i] else np.nan
        if not np.isfinite(target):
            continue
        trial = theta.copy()
        trial[i] = target
        state = _run(problem, fitter, trial)
        runs, nit = runs + 1, nit + state.run.nit
        if state.value < best.value:
            best = state
            if state.done:
                break
    return best, runs, nit


def _refine(problem: Problem, theta0: Array, fitter: Fitter | None = None) -> Optimum:
    """L-BFGS-B from ``theta0``, convergence-checked, restarted while it falls short.

    The optimiser sees the objective divided by δ², so residuals are measured in units of δ
    and its tolerances do not depend on δ or on how well the law fits. Converged means it
    stopped on its own (success, or a line search that can no longer improve, which Huber's
    kinks at ±δ cause near the optimum) and not on the iteration limit, *and* the projected
    gradient is at most ``GRAD_RTOL`` of the largest gradient the points could exert.

    A first run that falls short is followed by runs with a coordinate it was creeping towards
    a bound on that bound (:func:`_faces`), then restarted from the best point so far, with a
    fresh curvature memory and coordinates still creeping towards a bound put on it
    (:func:`_snap_to_bounds`), up to ``MAX_RUNS`` runs in all: in the narrow curved valleys
    that points sitting at the Huber kinks make, a fresh start often finishes in a few
    iterations what the first run was creeping through. A converged result gets the same
    treatment of creeping coordinates when they stay converged on the bound.
    """
    fitter = fitter or Fitter(problem)
    lo, hi = fitter.lo, fitter.hi
    theta = np.clip(theta0, lo, hi)
    state = _run(problem, fitter, theta)
    nit, runs = state.run.nit, 1
    if not state.done:
        state, face_runs, face_nit = _faces(problem, fitter, theta, state)
        nit, runs = nit + face_nit, runs + face_runs
    while not state.done and runs < MAX_RUNS:
        theta = _snap_to_bounds(fitter, state.run.x, state.projected)
        state = _run(problem, fitter, theta)
        nit, runs = nit + state.run.nit, runs + 1
    theta, value, relative = state.run.x, state.value, state.relative
    if state.converged:  # put coordinates that are creeping towards a bound on it
        snapped = _snap_to_bounds(fitter, theta, state.projected)
        if snapped is not theta:
            snapped_value, snapped_relative, _ = _check(problem, fitter, snapped)
            if snapped_relative <= GRAD_RTOL:
                theta, value, relative = snapped, snapped_value, snapped_relative
    run = state.run
    message = f"L-BFGS-B: {run.message or f'status {run.status}'} after {nit} iterations"
    if runs > 1:
        message += f" in {runs} runs"
    if run.status == ITERATION_LIMIT:
        message += f"; stopped at the iteration limit ({MAXITER} per run)"
    message += f"; relative gradient {relative:.2g}"
    at_bound = [problem.form.theta_names[i] for i in np.flatnonzero((theta <= lo) | (theta >= hi))]
    if at_bound:
        message += f"; at a bound: {', '.join(at_bound)}"
    return Optimum(theta, value, state.converged, message, nit, relative)


def _check(problem: Problem, fitter: Fitter, theta: Array) -> tuple[float, float, Array]:
    """Objective, relative projected gradient and projected gradient at ``theta``."""
    value, grad = fitter.plain(theta)
    projected = _projected_gradient(theta, grad, fitter.lo, fitter.hi)
    scale = _gradient_scale(problem, fitter.kernel, theta)
    return value, float(np.abs(projected).max()) / scale, projected


class Fitter:
    """What refinements of one problem share: the bound objective closures and the box."""

    def __init__(self, problem: Problem, kernel: Kernel | None = None) -> None:
        self.kernel = kernel or problem.form.kernel(problem.data)
        self.plain = objective_fn(problem, self.kernel)
        self.scaled = objective_fn(problem, self.kernel, problem.delta**-2)
        lo, hi = np.array(problem.bounds, dtype=float).T
        self.lo, self.hi = np.ascontiguousarray(lo), np.ascontiguousarray(hi)


def multistart(
    problem: Problem,
    starts: Array,
    scores: Array,
    n_refine: int,
    pinned: Array | None,
    n_agree: int,
    kernel: Kernel | None = None,
) -> Optimum:
    """Refine ``pinned`` and the ``n_refine`` ``starts`` of lowest ``scores``; keep the best.

    Refinement goes down the ranking and stops early once ``n_agree`` refinements have reached
    the lowest objective found (within ``AGREE_RTOL``): further starts almost always land on
    that optimum again, and the worst cases spend hundreds of iterations each. Among
    refinements that agree, a converged one is preferred.
    """
    order = np.argsort(scores, kind="stable")[:n_refine]
    chosen = [starts[i] for i in order if np.isfinite(scores[i])]
    if pinned is not None:
        chosen.insert(0, pinned)
    if not chosen:
        raise FitError("no starting point has a finite objective")
    fitter = Fitter(problem, kernel)
    tol = AGREE_ATOL * problem.delta**2
    best: Optimum | None = None
    agree = 0
    for theta in chosen:
        opt = _refine(problem, theta, fitter)
        if best is None or opt.objective < best.objective - tol - AGREE_RTOL * best.objective:
            best, agree = opt, 1  # the first, or a clearly lower optimum
            continue
        if opt.objective <= best.objective + tol + AGREE_RTOL * best.objective:
            agree += 1
            # the same optimum: keep the lower objective, but a converged one over one that isn't
            if (opt.converged, -opt.objective) > (best.converged, -best.objective):
                best = opt
        if agree >= n_agree:
            break
    assert best is not None
    return best
