"""Timings of ``ecgscale.laws`` fits against a naive baseline, printed as ratios.

    .venv/bin/python benchmarks/bench_laws.py [--boot 200] [--big-boot 1000] [--repeat 5]

The baseline fits the same problems from the same starts (every start scored, the same best
ones refined) the way one first writes it: ``scipy.optimize.minimize(method="L-BFGS-B")`` on
the δ²-scaled summed Huber loss with finite-difference gradients, to tight tolerances
(``maxiter`` 5000, ``ftol`` 1e-12, ``gtol`` 1e-9), and the lowest objective kept; its
bootstrap refits each resampled data set that way. Each case prints the number of starts,
the best time of ``--repeat`` runs of ``ecgscale.laws`` (bootstraps run once; the baseline
runs once), the target, the speed-up, and the relative difference of the full-data
objectives reached (negative: ``ecgscale.laws`` is lower). The baseline of the big bootstrap
times its first ``--naive-refits`` refits and scales that up to ``--big-boot`` (marked *).
Everything runs in one process with one BLAS thread. Last, a few fits are timed twice
(``--driver-only``: only these): with L-BFGS-B driven through scipy's ``setulb`` directly
(:mod:`ecgscale.laws.lbfgsb`) and through ``scipy.optimize.minimize``, the fallback, which
gives the same iterates.
"""

from __future__ import annotations

import argparse
import importlib
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy.optimize import minimize
from threadpoolctl import threadpool_limits

from ecgscale.laws import FitError, bootstrap, evaluate_form, fit
from ecgscale.laws.fit import (
    DEFAULT_DELTA,
    N_REFINE,
    N_REFINE_BOOT,
    _starts,
    huber,
    make_problem,
)
from ecgscale.train.hardware import cpu_summary

POWER = {"E": 1.7, "A": 400.0, "alpha": 0.34}
JOINT = {"E": 1.69, "A": 406.4, "alpha": 0.34, "B": 410.7, "beta": 0.28}
NAIVE_OPTIONS = {"maxiter": 5000, "ftol": 1e-12, "gtol": 1e-9}


def _noisy(y: np.ndarray, sigma: float, seed: int) -> np.ndarray:
    return y * np.exp(np.random.default_rng(seed).normal(0.0, sigma, y.size))


def naive_fit(
    form: str,
    y: np.ndarray,
    *,
    n_starts: int | None = None,
    n_refine: int = N_REFINE,
    seed: int = 0,
    pinned: dict[str, float] | None = None,
    **inputs: np.ndarray,
) -> tuple[float, dict[str, float]]:
    """The baseline: the same starts, refined with numerical gradients; (objective, params)."""
    problem = make_problem(form, y, **inputs)
    f, data, w, delta = problem.form, problem.data, problem.weights, problem.delta

    def objectives(thetas: np.ndarray) -> np.ndarray:
        log_pred, _ = f.log_predict(thetas, data)
        return huber(log_pred - data.log_y, delta)[0] @ w

    grid = _starts(f, data, n_starts, seed)
    scores = objectives(grid)
    chosen = [grid[i] for i in np.argsort(scores, kind="stable")[:n_refine]]
    if pinned is not None:
        chosen.insert(0, f.from_params(pinned, data))
    lo, hi = np.array(problem.bounds).T
    best = None
    for theta in chosen:
        res = minimize(
            lambda t: float(objectives(t[None, :])[0]) / delta**2,
            np.clip(theta, lo, hi),
            method="L-BFGS-B",
            bounds=problem.bounds,
            options=NAIVE_OPTIONS,
        )
        if best is None or res.fun < best.fun:
            best = res
    return best.fun * delta**2, f.to_params(best.x, data)


def naive_bootstrap(
    form: str,
    y: np.ndarray,
    *,
    n_boot: int,
    seed: int = 0,
    n_timed: int | None = None,
    **inputs: np.ndarray,
) -> tuple[float, float]:
    """The baseline bootstrap: the resamples ``bootstrap`` draws, each refit naively.

    Returns the full fit's objective and the seconds taken; with ``n_timed``, only the first
    ``n_timed`` refits run and their time is scaled up to ``n_boot``.
    """
    start = time.perf_counter()
    objective, params = naive_fit(form, y, seed=seed, **inputs)
    full_s = time.perf_counter() - start
    rng = np.random.default_rng(seed)
    n_run = n_boot if n_timed is None else min(n_timed, n_boot)
    start = time.perf_counter()
    for _ in range(n_run):
        idx = rng.integers(0, y.size, y.size)
        try:
            naive_fit(
                form,
                y[idx],
                n_refine=N_REFINE_BOOT,
                pinned=params,
                **{k: v[idx] for k, v in inputs.items()},
            )
        except FitError:
            continue
    return objective, full_s + (time.perf_counter() - start) * n_boot / n_run


def _timed_naive(form: str, y: np.ndarray, **kwargs: Any) -> tuple[float, float]:
    """:func:`naive_fit`'s objective and the seconds it took."""
    start = time.perf_counter()
    objective, _ = naive_fit(form, y, **kwargs)
    return objective, time.perf_counter() - start


@dataclass
class Case:
    label: str
    n_points: int
    target_s: float
    ours: Callable[[], Any]
    naive: Callable[[], tuple[float, float]]
    """The baseline: (objective, seconds)."""
    extrapolated: bool = False


def cases(n_boot: int, big_boot: int, naive_refits: int) -> list[Case]:
    rng = np.random.default_rng(0)
    out = []
    x3 = np.array([2e4, 4e4, 8e4])
    for label, y in (
        ("power, the brief's monotone 3 points", [0.5, 0.45, 0.43]),
        ("power, the brief's non-monotone 3 points", [0.5, 0.52, 0.43]),
    ):
        y = np.array(y)
        target = 0.03 if "non" not in label else 0.2
        out.append(
            Case(
                label,
                3,
                target,
                lambda y=y: fit("power", y, x=x3),
                lambda y=y: _timed_naive("power", y, x=x3),
            )
        )
    for n in (5, 9, 20):
        x = np.logspace(4, 8, n)
        y = _noisy(evaluate_form("power", POWER, x=x), 0.01, seed=n)
        out.append(
            Case(
                f"power, {n} noisy points",
                n,
                0.03,
                lambda x=x, y=y: fit("power", y, x=x),
                lambda x=x, y=y: _timed_naive("power", y, x=x),
            )
        )
    # flat losses: E trades off against A of a nearly flat law on its way to zero
    for n in (5, 9):
        x = np.sort(10 ** rng.uniform(3, 7, n))
        y = 0.5 * np.exp(rng.normal(0.0, 0.01, n))
        out.append(
            Case(
                f"power, {n} flat noisy points (worst case)",
                n,
                0.2,
                lambda x=x, y=y: fit("power", y, x=x),
                lambda x=x, y=y: _timed_naive("power", y, x=x),
            )
        )
    n_grid, d_grid = np.meshgrid(np.logspace(5, 8, 6), np.logspace(6, 9, 6))
    n36, d36 = n_grid.ravel(), d_grid.ravel()
    y36 = _noisy(evaluate_form("joint", JOINT, n=n36, d=d36), 0.01, seed=36)
    out.append(
        Case(
            "joint, 6×6 grid",
            36,
            0.2,
            lambda: fit("joint", y36, n=n36, d=d36),
            lambda: _timed_naive("joint", y36, n=n36, d=d36),
        )
    )
    n250, d250 = 10 ** rng.uniform(5, 8, 250), 10 ** rng.uniform(6, 9, 250)
    y250 = _noisy(evaluate_form("joint", JOINT, n=n250, d=d250), 0.01, seed=250)
    joint250 = {"n": n250, "d": d250}
    out.append(
        Case(
            "joint, 1,024 random starts",
            250,
            2.0,
            lambda: fit("joint", y250, n_starts=1024, **joint250),
            lambda: _timed_naive("joint", y250, n_starts=1024, **joint250),
        )
    )
    out.append(
        Case(
            "joint, default start grid",
            250,
            2.0,
            lambda: fit("joint", y250, **joint250),
            lambda: _timed_naive("joint", y250, **joint250),
        )
    )
    x9 = np.logspace(4, 8, 9)
    y9 = _noisy(evaluate_form("power", POWER, x=x9), 0.01, seed=99)
    out.append(
        Case(
            f"power bootstrap, {n_boot} resamples",
            9,
            3.0 * n_boot / 200,
            lambda: bootstrap("power", y9, x=x9, n_boot=n_boot),
            lambda: naive_bootstrap("power", y9, x=x9, n_boot=n_boot),
        )
    )
    out.append(
        Case(
            f"joint bootstrap, {big_boot:,} resamples",
            250,
            60.0 * big_boot / 1000,
            lambda: bootstrap("joint", y250, n_boot=big_boot, **joint250),
            lambda: naive_bootstrap(
                "joint", y250, n_boot=big_boot, n_timed=naive_refits, **joint250
            ),
            extrapolated=naive_refits < big_boot,
        )
    )
    return out


def driver_cases(n_boot: int) -> dict[str, Callable[[], Any]]:
    """Fits whose time is mostly L-BFGS-B's: small problems, many refinements."""
    x9 = np.logspace(4, 8, 9)
    y9 = _noisy(evaluate_form("power", POWER, x=x9), 0.01, seed=99)
    n_grid, d_grid = np.meshgrid(np.logspace(5, 8, 6), np.logspace(6, 9, 6))
    joint36 = {"n": n_grid.ravel(), "d": d_grid.ravel()}
    y36 = _noisy(evaluate_form("joint", JOINT, **joint36), 0.01, seed=36)
    return {
        "power, 9 noisy points": lambda: fit("power", y9, x=x9),
        "joint, 6×6 grid": lambda: fit("joint", y36, **joint36),
        f"power bootstrap, {n_boot} resamples": lambda: bootstrap("power", y9, x=x9, n_boot=n_boot),
        f"joint 6×6 bootstrap, {n_boot} resamples": lambda: bootstrap(
            "joint", y36, n_boot=n_boot, **joint36
        ),
    }


def compare_drivers(n_boot: int, repeat: int) -> None:
    """Each :func:`driver_cases` fit with ``setulb`` driven directly and through ``minimize``."""
    driver = importlib.import_module("ecgscale.laws.lbfgsb")
    if not driver._DIRECT:
        print("this scipy has no direct L-BFGS-B driver: every fit goes through minimize()")
        return
    header = f"{'case':<44} {'direct':>9} {'minimize':>9} {'speed-up':>9}"
    print("\nL-BFGS-B driven directly vs through scipy.optimize.minimize (the same iterates)")
    print(header)
    print("-" * len(header))
    for label, call in driver_cases(n_boot).items():
        times = {}
        for direct in (True, False):
            driver._DIRECT = direct
            times[direct], _ = _best_time(call, repeat)
        driver._DIRECT = True
        print(
            f"{label:<44} {_ms(times[True]):>9} {_ms(times[False]):>9}"
            f" {times[False] / times[True]:>8.1f}×"
        )


def _best_time(func: Callable[[], Any], repeat: int) -> tuple[float, Any]:
    times, result = [], None
    for _ in range(repeat):
        start = time.perf_counter()
        result = func()
        times.append(time.perf_counter() - start)
    return min(times), result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--boot", type=int, default=200, help="resamples of the small bootstrap")
    parser.add_argument(
        "--big-boot", type=int, default=1000, help="resamples of the 250-point joint bootstrap"
    )
    parser.add_argument(
        "--naive-refits", type=int, default=20, help="baseline refits timed for the big one"
    )
    parser.add_argument("--repeat", type=int, default=5, help="runs of ecgscale.laws per case")
    parser.add_argument(
        "--driver-only",
        action="store_true",
        help="only compare the direct L-BFGS-B driver with scipy.optimize.minimize",
    )
    args = parser.parse_args()
    print(f"CPU: {cpu_summary()}; 1 BLAS thread")
    threadpool_limits(1)  # after scipy is imported, so that its own OpenBLAS is limited too
    fit("power", np.array([0.5, 0.45, 0.43]), x=np.array([2e4, 4e4, 8e4]))  # warm up
    if args.driver_only:
        compare_drivers(args.boot, args.repeat)
        return
    header = (
        f"{'case':<44} {'n':>4} {'starts':>6} {'ours':>9} {'target':>8} {'baseline':>11}"
        f" {'speed-up':>9} {'Δobjective':>11}  converged"
    )
    print(f"ecgscale.laws vs naive L-BFGS-B (finite differences); δ = {DEFAULT_DELTA:g}")
    print(header)
    print("-" * len(header))
    all_met = True
    for case in cases(args.boot, args.big_boot, args.naive_refits):
        repeat = 1 if "bootstrap" in case.label else args.repeat
        ours_s, result = _best_time(case.ours, repeat)
        naive_objective, naive_s = case.naive()
        delta_obj = (result.objective - naive_objective) / naive_objective
        if max(result.objective, naive_objective) < 1e-6 * DEFAULT_DELTA**2:
            delta_obj = 0.0  # both interpolate the points
        met = ours_s <= case.target_s
        all_met &= met
        converged = str(result.converged)
        if result.n_boot:
            converged += f", {result.n_boot_unconverged}/{result.n_boot} refits not"
        mark = "*" if case.extrapolated else " "
        print(
            f"{case.label:<44} {case.n_points:>4} {result.n_starts:>6} {_ms(ours_s):>9}"
            f" {'≤' if met else '>'}{_ms(case.target_s):>7} {_ms(naive_s):>10}{mark}"
            f" {naive_s / ours_s:>8.1f}× {delta_obj:>+11.1e}  {converged}"
        )
    if args.naive_refits < args.big_boot:
        print(
            f"* baseline timed on the full fit and the first {args.naive_refits} refits, the"
            f" refits scaled up to {args.big_boot:,}"
        )
    print("all targets met" if all_met else "SOME TARGETS MISSED")
    compare_drivers(args.boot, 3)


def _ms(seconds: float) -> str:
    """A duration in ms below 10 s, else in s."""
    return f"{1e3 * seconds:.1f}ms" if seconds < 10 else f"{seconds:.1f}s"


if __name__ == "__main__":
    main()
