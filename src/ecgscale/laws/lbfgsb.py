"""One L-BFGS-B run (:func:`lbfgsb`), driving scipy's private ``_lbfgsb.setulb`` directly.

Why the private API: a study fits a hundred small slices, each refined from a few starts and
bootstrapped with hundreds of refits, so most of a fit's time is L-BFGS-B's own loop around
an objective of a dozen numpy operations. ``scipy.optimize.minimize(method="L-BFGS-B")``
wraps every evaluation in bookkeeping (copies of x, a cache of values, result objects) that
costs more than the objective of a 3-point power law. :func:`_lbfgsb_direct` runs the same
reverse-communication loop over ``setulb`` as ``minimize`` does (``maxcor=10``, ``maxls=20``,
the same ``factr`` and ``pgtol``), hence the same iterates to the last bit
(``tests/test_laws.py::test_direct_lbfgsb_follows_scipy_minimize``), without the bookkeeping.
``benchmarks/bench_laws.py --driver-only`` times both on one BLAS thread. On the 2-core
development machine (scipy 1.17, other jobs sharing it) a 9-point power fit took 2.9 ms
against 5.7 ms through ``minimize``, a 36-point joint fit 10 ms against 15 ms, and
200-resample bootstraps of them 0.32 s against 0.74 s and 0.89 s against 1.7 s: 1.4–2.3×
over two runs.

The fallback: ``setulb``'s calling convention is scipy's internal business (it changed in
1.15, when L-BFGS-B was translated from Fortran to C), so the direct driver is used only with
scipy >= 1.15 (:data:`_DIRECT`), and every run checks that ``setulb`` answers as expected (no
exception, a first task asking for f and g) before it iterates. Otherwise :func:`lbfgsb` goes
through ``scipy.optimize.minimize``, for the rest of the process, with the same tolerances
and iteration limit: slower, the same results.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import scipy
from scipy.optimize import minimize

from ecgscale.laws.forms.base import Array

try:  # the C L-BFGS-B of scipy >= 1.15 (private); otherwise scipy.optimize.minimize
    from scipy.optimize import _lbfgsb as _LBFGSB_MODULE
except ImportError:  # pragma: no cover - depends on the installed scipy
    _LBFGSB_MODULE = None

FTOL = 1e-12
"""L-BFGS-B's relative-reduction test, on the objective as given (the fitter gives it in units
of δ², :mod:`ecgscale.laws.refine`)."""
GTOL = 1e-9
"""L-BFGS-B's projected-gradient test, on the gradient of the objective as given."""
SUCCESS, ITERATION_LIMIT, STOPPED = 0, 1, 2
"""How an L-BFGS-B run ended: converged by its own tests, on the iteration limit, otherwise."""

Objective = Callable[[Array], tuple[float, Array]]
"""``theta (P,) -> (objective, gradient (P,))``."""


@dataclass(frozen=True)
class Run:
    """The outcome of one L-BFGS-B run."""

    x: Array
    nit: int
    status: int
    message: str


def _scipy_at_least(major: int, minor: int) -> bool:
    """Whether the installed scipy is at least ``major.minor``."""
    parts = [int(p) for p in re.findall(r"\d+", scipy.__version__)[:2]]
    return tuple(parts) >= (major, minor)


_DIRECT = _LBFGSB_MODULE is not None and _scipy_at_least(1, 15)
"""Drive scipy's L-BFGS-B routine directly; set to False to go through ``minimize`` (it is,
for good, when the routine does not answer as :func:`_lbfgsb_direct` expects)."""
_TASKS = {
    4: "CONVERGENCE",
    5: "STOP",
    6: "WARNING",
    7: "ERROR",
    8: "ABNORMAL",
    401: "NORM OF PROJECTED GRADIENT <= PGTOL",
    402: "RELATIVE REDUCTION OF F <= FACTR*EPSMCH",
    504: "TOTAL NO. OF ITERATIONS REACHED LIMIT",
    601: "ROUNDING ERRORS PREVENT PROGRESS",
    602: "STP = STPMAX",
    603: "STP = STPMIN",
    604: "XTOL TEST SATISFIED",
}
"""scipy's L-BFGS-B task codes (``scipy/optimize/_lbfgsb_py.py``), for messages."""
_TASK_FG, _TASK_NEW_X, _TASK_CONVERGED, _TASK_STOP, _STOP_ITERATIONS = 3, 1, 4, 5, 504


class _DirectUnavailable(RuntimeError):
    """scipy's L-BFGS-B routine does not speak the calling convention :func:`_lbfgsb_direct`
    expects."""


def _lbfgsb_direct(fun: Objective, x0: Array, lo: Array, hi: Array, maxiter: int) -> Run:
    """L-BFGS-B through scipy's reverse-communication routine ``setulb`` (scipy >= 1.15).

    The same loop as ``scipy.optimize.minimize(method="L-BFGS-B")`` with ``maxcor=10`` and
    ``maxls=20``, hence the same iterates, without its per-evaluation bookkeeping (copies,
    caches, result objects), which costs more than the objective of a 3-point power law.
    """
    m, maxls, n = 10, 20, x0.size
    lower, upper = np.isfinite(lo), np.isfinite(hi)
    nbd = np.where(lower & upper, 2, np.where(lower, 1, np.where(upper, 3, 0))).astype(np.int32)
    low_bnd = np.where(lower, lo, 0.0)
    upper_bnd = np.where(upper, hi, 0.0)
    x = np.array(x0, dtype=np.float64)
    f: Any = np.array(0.0)
    g = np.zeros(n)
    wa = np.zeros(2 * m * n + 5 * n + 11 * m * m + 8 * m)
    iwa = np.zeros(3 * n, dtype=np.int32)
    task = np.zeros(2, dtype=np.int32)
    ln_task = np.zeros(2, dtype=np.int32)
    lsave = np.zeros(4, dtype=np.int32)
    isave = np.zeros(44, dtype=np.int32)
    dsave = np.zeros(29)
    factr = FTOL / np.finfo(float).eps
    setulb = _LBFGSB_MODULE.setulb  # type: ignore[union-attr]
    args = (factr, GTOL, wa, iwa, task, lsave, isave, dsave, maxls, ln_task)
    try:
        setulb(m, x, low_bnd, upper_bnd, nbd, f, g, *args)
    except Exception as err:  # a different calling convention
        raise _DirectUnavailable(str(err)) from err
    if task[0] != _TASK_FG:
        raise _DirectUnavailable(f"unexpected first task {task.tolist()}")
    nit = 0
    while True:
        if task[0] == _TASK_FG:
            f, g = fun(x)
        elif task[0] == _TASK_NEW_X:
            nit += 1
            if nit >= maxiter:
                task[0], task[1] = _TASK_STOP, _STOP_ITERATIONS
        else:
            break
        setulb(m, x, low_bnd, upper_bnd, nbd, f, g, *args)
    if task[0] == _TASK_CONVERGED:
        status = SUCCESS
    elif nit >= maxiter:
        status = ITERATION_LIMIT
    else:
        status = STOPPED
    head, tail = _TASKS.get(int(task[0]), f"task {task[0]}"), _TASKS.get(int(task[1]), "")
    return Run(x, nit, status, f"{head}: {tail}".rstrip(": "))


def lbfgsb(fun: Objective, x0: Array, lo: Array, hi: Array, maxiter: int) -> Run:
    """One L-BFGS-B run of ``fun`` (value and gradient) from ``x0`` within ``[lo, hi]``, at
    most ``maxiter`` iterations: directly (:func:`_lbfgsb_direct`) where this scipy allows,
    otherwise through ``scipy.optimize.minimize``."""
    global _DIRECT
    if _DIRECT:
        try:
            return _lbfgsb_direct(fun, x0, lo, hi, maxiter)
        except _DirectUnavailable:  # pragma: no cover - depends on the installed scipy
            _DIRECT = False
    options = {"maxiter": maxiter, "ftol": FTOL, "gtol": GTOL}
    bounds = list(zip(lo, hi, strict=True))
    res = minimize(fun, x0, jac=True, method="L-BFGS-B", bounds=bounds, options=options)
    status = SUCCESS if res.success else ITERATION_LIMIT if res.nit >= maxiter else STOPPED
    return Run(res.x, int(res.nit), status, str(res.message).rstrip(": "))
