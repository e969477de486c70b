"""Fit the study's scaling laws from its results table: L(N) per D slice, L(D) per N slice."""

from __future__ import annotations

import numpy as np
import pandas as pd
from threadpoolctl import threadpool_limits

from ecgscale.laws import FitError, bootstrap, fit

SLICES = {"N": ("n_params", "data_size"), "D": ("data_size", "target_params")}


def loss_metrics(wide: pd.DataFrame) -> list[str]:
    """The loss columns laws are fitted to: pre-training loss, then ID and OOD probe losses."""
    probe = sorted(c for c in wide.columns if c.startswith("loss:"))
    probe.sort(key=lambda c: c != "loss:id")
    return ["pretrain_loss", *probe]


def fit_study(
    wide: pd.DataFrame, *, delta: float, n_bootstrap: int, seed: int = 0
) -> tuple[list[dict], list[dict]]:
    """Power-law fits for every (family, paradigm, metric, axis, slice) with enough points.

    Returns (fits, gaps): each gap names a slice that could not be fitted and why. Bootstrap
    intervals are computed when the fit has at least two degrees of freedom.
    """
    with threadpool_limits(1):  # scipy's BLAS threads only slow these tiny problems
        return _fit_all(wide, delta=delta, n_bootstrap=n_bootstrap, seed=seed)


def _fit_all(
    wide: pd.DataFrame, *, delta: float, n_bootstrap: int, seed: int
) -> tuple[list[dict], list[dict]]:
    fits: list[dict] = []
    gaps: list[dict] = []
    done = wide[wide["status"] == "done"]
    for (family, paradigm), group in done.groupby(["family", "paradigm"], sort=True):
        for metric in loss_metrics(wide):
            for axis, (x_col, slice_col) in SLICES.items():
                for value, part in group.groupby(slice_col, sort=True):
                    part = part[np.isfinite(part[metric].astype(float))]
                    key = {
                        "family": family,
                        "paradigm": paradigm,
                        "metric": metric,
                        "x": axis,
                        "slice": {slice_col: int(value)},
                    }
                    try:
                        x = part[x_col].to_numpy(float)
                        y = part[metric].to_numpy(float)
                        result = fit("power", y, x=x, delta=delta, seed=seed)
                        if n_bootstrap and result.dof >= 2:
                            result = bootstrap(
                                "power",
                                y,
                                x=x,
                                n_boot=n_bootstrap,
                                seed=seed,
                                delta=delta,
                                full_fit=result,
                            )
                    except FitError as err:
                        gaps.append({**key, "reason": str(err)})
                        continue
                    fits.append({**key, **result.to_dict()})
    return fits, gaps
