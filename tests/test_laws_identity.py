"""Refactoring guard: every number ``ecgscale.laws`` gives on a fixed set of problems, exactly.

The record (``tests/data/laws_identity.json``) holds, for every case below, all that the fits
return: parameters, objectives, convergence messages, intervals, bootstrap samples, summaries,
backtests, the tables, and the one-line errors. A change that only moves or rewrites code must
reproduce it to the last bit. Float results depend on the machine (BLAS, the SIMD paths of
numpy's float32 ``exp``), so the comparison runs only where the record was made (same
fingerprint: Python, numpy, scipy, CPU features); elsewhere it is skipped. To record anew,
after a change that is meant to change results:

    PYTHONPATH=src python tests/test_laws_identity.py --record
"""

from __future__ import annotations

import json
import platform
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import scipy

from ecgscale.laws import (
    FitError,
    HeldLossToLossForm,
    backtest,
    bootstrap,
    compute_optimal,
    efficiency_ratio,
    evaluate_form,
    fit,
    fit_table,
    format_fits,
    predict_interval,
)
from ecgscale.laws.comparisons import bottleneck, crossover

RECORD = Path(__file__).parent / "data" / "laws_identity.json"

POWER = {"E": 1.7, "A": 400.0, "alpha": 0.34}
JOINT = {"E": 1.69, "A": 406.4, "alpha": 0.34, "B": 410.7, "beta": 0.28}
L2L = {"K": 1.5, "kappa": 1.3, "E_x": 0.2, "E_y": 0.1}
KAPLAN = {"N_c": 8.8e13, "alpha_N": 0.076, "D_c": 5.4e13, "alpha_D": 0.095}
TRANSFER = {"k": 1.9e4, "alpha": 0.18, "beta": 0.38}
X = np.logspace(4, 8, 9)
_N, _D = np.meshgrid(np.logspace(5, 8, 5), np.logspace(6, 9, 5))
JOINT_INPUTS = {"n": _N.ravel(), "d": _D.ravel()}
_F, _NF = np.meshgrid(np.logspace(2, 5, 4), np.logspace(5, 8, 4))
CASES: dict[str, tuple[dict[str, float], dict[str, np.ndarray]]] = {
    "power": (POWER, {"x": X}),
    "joint": (JOINT, JOINT_INPUTS),
    "loss_to_loss": (L2L, {"x": np.linspace(0.3, 0.9, 10)}),
    "kaplan": (KAPLAN, JOINT_INPUTS),
    "transfer": (TRANSFER, {"d_f": _F.ravel(), "n": _NF.ravel()}),
}
N_BOOT = 12


def _noisy(y: np.ndarray, sigma: float, seed: int) -> np.ndarray:
    return y * np.exp(np.random.default_rng(seed).normal(0.0, sigma, y.size))


def _data(name: str, seed: int = 1, sigma: float = 0.01) -> tuple[np.ndarray, dict]:
    truth, inputs = CASES[name]
    return _noisy(evaluate_form(name, truth, **inputs), sigma, seed), inputs


def _plain(value: Any) -> Any:
    """JSON-able, floats kept exactly (``json`` writes their shortest round-trip repr)."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, np.ndarray):
        return _plain(value.tolist())
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, float) and not np.isfinite(value):
        return repr(value)  # NaN/inf as text: json's NaN never equals itself
    return value


def _result(result: Any) -> dict[str, Any]:
    return {**result.to_dict(include_samples=True), "summary": result.summary()}


def _error(call: Callable[[], Any]) -> str:
    try:
        call()
    except (FitError, ValueError) as err:
        return f"{type(err).__name__}: {err}"
    return "no error"


def _fits() -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name in CASES:
        y, inputs = _data(name)
        out[f"fit/{name}"] = _result(fit(name, y, **inputs))
        out[f"bootstrap/{name}"] = _result(
            bootstrap(name, y, n_boot=N_BOOT, seed=2, ci=0.9, **inputs)
        )
    y, inputs = _data("power", seed=3, sigma=0.02)
    weights = np.random.default_rng(4).uniform(0.5, 2.0, y.size)
    out["fit/power/options"] = _result(
        fit("power", y, weights=weights, delta=1e-2, n_starts=200, n_refine=3, seed=4, **inputs)
    )
    four = {"x": X[:4]}  # pairs resamples with fewer than 3 distinct x are skipped
    y4 = _noisy(evaluate_form("power", POWER, **four), 0.01, 5)
    out["bootstrap/power/pairs"] = _result(
        bootstrap("power", y4, n_boot=N_BOOT, seed=3, scheme="pairs", **four)
    )
    joint_y, _ = _data("joint", seed=6)
    out["bootstrap/joint/pairs"] = _result(
        bootstrap("joint", joint_y, n_boot=N_BOOT, seed=6, scheme="pairs", **JOINT_INPUTS)
    )
    # awkward power fits: a bump, flat, increasing, as many points as parameters
    for label, ys in {
        "bump": [0.5, 0.52, 0.43],
        "bump_dip": [0.5, 0.52, 0.43, 0.47],
        "flat": [0.5, 0.5001, 0.4999, 0.5, 0.5002],
        "increasing": [0.4, 0.45, 0.5],
    }.items():
        x = np.logspace(4, 6, len(ys)) if label != "bump" else np.array([2e4, 4e4, 8e4])
        out[f"fit/power/{label}"] = _result(fit("power", np.array(ys), x=x))
    exact = evaluate_form("power", POWER, x=X)
    out["fit/power/exact"] = _result(fit("power", exact, x=X))
    return out


def _outliers_and_held() -> dict[str, Any]:
    out: dict[str, Any] = {}
    y, inputs = _data("power", seed=7)
    y[5] *= 1.3
    out["fit/power/outliers"] = _result(fit("power", y, outlier_z=3.0, **inputs))
    out["fit/power/no_outliers"] = _result(fit("power", y, outlier_z=50.0, **inputs))
    out["bootstrap/power/outliers"] = _result(
        bootstrap("power", y, n_boot=N_BOOT, outlier_z=3.0, seed=7, **inputs)
    )
    jy, _ = _data("joint", seed=8)
    jy[3] *= 0.8
    out["fit/joint/outliers"] = _result(fit("joint", jy, outlier_z=2.5, **JOINT_INPUTS))
    y, inputs = _data("loss_to_loss", seed=9)
    for label, held in {
        "e_x": {"e_x": 0.15},
        "e_y": {"e_y": 0.05},
        "both": {"e_x": 0.2, "e_y": 0.1},
        "e_y_zero": {"e_y": 0.0},
    }.items():
        form = HeldLossToLossForm(**held)
        out[f"fit/held/{label}"] = _result(fit(form, y, **inputs))
    form = HeldLossToLossForm(e_x=0.15, e_y=0.05)
    out["bootstrap/held"] = _result(bootstrap(form, y, n_boot=N_BOOT, seed=9, **inputs))
    return out


def _analyses() -> dict[str, Any]:
    out: dict[str, Any] = {}
    y, inputs = _data("power", seed=10)
    out["backtest/power"] = backtest("power", y, k=2, n_boot=N_BOOT, seed=10, **inputs)
    jy, _ = _data("joint", seed=11)
    out["backtest/joint"] = backtest(
        "joint", jy, hold_out="smallest", by="d", n_boot=N_BOOT, seed=11, **JOINT_INPUTS
    )
    booted = bootstrap("joint", jy, n_boot=N_BOOT, seed=11, **JOINT_INPUTS)
    out["predict_interval/joint"] = predict_interval(
        booted, ci=0.8, n=np.array([1e5, 1e7, 1e9]), d=np.array([[1e6], [1e9]])
    )
    out["compute_optimal/joint"] = compute_optimal(booted, [1e15, 1e18])
    out["bottleneck/joint"] = bottleneck(booted, JOINT_INPUTS["n"], JOINT_INPUTS["d"])
    other_truth = {**JOINT, "alpha": 0.3, "A": 300.0}
    other_y = _noisy(evaluate_form("joint", other_truth, **JOINT_INPUTS), 0.01, 12)
    other = bootstrap("joint", other_y, n_boot=N_BOOT, seed=12, **JOINT_INPUTS)
    out["crossover/joint"] = crossover(booted, other, axis="n", at=1e7, lo=1e5, hi=1e8)
    ya = _noisy(evaluate_form("power", POWER, x=X), 0.01, 13)
    yb = _noisy(evaluate_form("power", {**POWER, "A": 600.0}, x=X), 0.01, 14)
    fa = bootstrap("power", ya, n_boot=N_BOOT, seed=13, x=X)
    fb = bootstrap("power", yb, n_boot=N_BOOT, seed=14, x=X)
    out["efficiency_ratio/power"] = efficiency_ratio(fa, fb, y_a=ya, y_b=yb, n_grid=5)
    return out


def _tables() -> dict[str, Any]:
    out: dict[str, Any] = {}
    rng = np.random.default_rng(20)
    rows = []
    for arch, scale in (("resnet", 1.0), ("transformer", 1.2)):
        for n in np.logspace(4, 7, 6):
            truth = {**POWER, "A": POWER["A"] * scale}
            loss = float(evaluate_form("power", truth, x=n)) * np.exp(rng.normal(0, 0.01))
            ood = 0.1 + 1.5 * (loss - 1.0) ** 1.2 * np.exp(rng.normal(0, 0.01))
            rows.append({"arch": arch, "N": n, "L": loss, "ood": ood})
    frame = pd.DataFrame(rows)
    tables = {
        "power": fit_table(
            frame, form="power", columns={"n": "N", "loss": "L"}, group=["arch"], n_boot=N_BOOT
        ),
        "l2l_held": fit_table(
            frame,
            form="loss_to_loss",
            columns={"x": "L", "y": "ood", "size": "N"},
            group=["arch"],
            irreducible="power",
            n_boot=N_BOOT,
            ci=0.8,
            seed=3,
        ),
        "few_dof": fit_table(
            frame[frame["N"] < 2e5],
            form="power",
            columns={"x": "N", "loss": "L"},
            group=["arch"],
            n_boot=N_BOOT,
        ),
    }
    for label, fits in tables.items():
        out[f"table/{label}"] = {
            "fits": [f.to_dict(include_samples=True) for f in fits],
            "summaries": [f.summary() for f in fits],
            "text": format_fits(fits),
        }
    return out


def _errors() -> dict[str, Any]:
    x = np.logspace(4, 6, 5)
    y = evaluate_form("power", POWER, x=x)
    return {
        "error/unknown_form": _error(lambda: fit("cubic", y, x=x)),
        "error/inputs": _error(lambda: fit("power", y, n=x)),
        "error/nonpositive": _error(lambda: fit("power", -y, x=x)),
        "error/too_few": _error(lambda: fit("joint", y[:4], n=x[:4], d=x[:4])),
        "error/single_value": _error(lambda: fit("power", y, x=np.full(5, 3.0))),
        "error/weights": _error(lambda: fit("power", y, x=x, weights=np.zeros(5))),
        "error/delta": _error(lambda: fit("power", y, x=x, delta=0.0)),
        "error/scheme": _error(lambda: bootstrap("power", y, x=x, scheme="jackknife")),
        "error/held": _error(lambda: fit(HeldLossToLossForm(e_x=50.0), y, x=y)),
        "error/table": _error(
            lambda: fit_table(pd.DataFrame({"x": x, "loss": y}), form="power", group=["arch"])
        ),
    }


def compute() -> dict[str, Any]:
    """Every case's results, JSON-able."""
    out = {**_fits(), **_outliers_and_held(), **_analyses(), **_tables(), **_errors()}
    return _plain(out)


def fingerprint() -> dict[str, Any]:
    """What the float results may depend on, besides the code."""
    try:
        from numpy._core._multiarray_umath import __cpu_features__ as features
    except ImportError:  # pragma: no cover - numpy < 2
        from numpy.core._multiarray_umath import __cpu_features__ as features
    return {
        "python": platform.python_version(),
        "numpy": np.__version__,
        "scipy": scipy.__version__,
        "machine": platform.machine(),
        "cpu_features": sorted(k for k, on in features.items() if on),
    }


def _first_difference(a: Any, b: Any, path: str = "") -> str | None:
    """Where ``a`` and ``b`` first differ, or None."""
    if isinstance(a, dict) and isinstance(b, dict):
        for key in sorted(set(a) | set(b)):
            if key not in a or key not in b:
                return f"{path}/{key}: only in {'recorded' if key in b else 'computed'}"
            diff = _first_difference(a[key], b[key], f"{path}/{key}")
            if diff:
                return diff
        return None
    if isinstance(a, list) and isinstance(b, list):
        if len(a) != len(b):
            return f"{path}: length {len(a)} != recorded {len(b)}"
        for i, (u, v) in enumerate(zip(a, b, strict=True)):
            diff = _first_difference(u, v, f"{path}[{i}]")
            if diff:
                return diff
        return None
    if a != b or type(a) is not type(b):
        return f"{path}: {a!r} != recorded {b!r}"
    return None


def test_laws_results_are_identical_to_the_record() -> None:
    recorded = json.loads(RECORD.read_text())
    if recorded["fingerprint"] != fingerprint():
        pytest.skip("the record was made on another machine or with other numpy/scipy versions")
    computed = json.loads(json.dumps(compute()))  # as it would be written
    diff = _first_difference(computed, recorded["results"])
    assert diff is None, diff


if __name__ == "__main__":
    if sys.argv[1:] != ["--record"]:
        sys.exit("usage: PYTHONPATH=src python tests/test_laws_identity.py --record")
    RECORD.write_text(
        json.dumps({"fingerprint": fingerprint(), "results": compute()}, indent=1) + "\n"
    )
    print(f"wrote {RECORD}")
