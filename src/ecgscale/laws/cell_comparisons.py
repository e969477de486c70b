"""The paper's comparative findings of a study, cell against cell (family × paradigm), per
probe loss set: bottlenecks, crossovers and who wins where (:mod:`ecgscale.laws.comparisons`),
each checked against what the fitted laws can carry and what the runs show.

A fitted law's comparison is not made when the fitter's box shaped the law
(:func:`~ecgscale.laws.verdicts.box_shaped`). A crossover of two laws is not stated, and
neither is "no crossover", where the runs themselves clearly order the two cells the other way
round at an end of the range compared (non-overlapping 95% intervals, as for a clear win):
the laws do not describe that comparison then (a monotone power law cannot follow an OOD loss
that rises with N, for one).
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd

from ecgscale.laws.comparisons import NOT_DETERMINED, bottleneck, crossover, winners
from ecgscale.laws.fit import FitResult
from ecgscale.laws.verdicts import box_shaped
from ecgscale.numformat import compact


def cell_name(family: str, paradigm: str) -> str:
    return f"{family}/{paradigm}"


def comparison_entries(
    done: pd.DataFrame, metrics: list[str], laws: Mapping[tuple, FitResult], n_col: str
) -> dict[str, list[dict]]:
    """The comparative findings per probe loss set, from the joint laws and the runs.

    ``bottlenecks``: per cell (family × paradigm), :func:`ecgscale.laws.comparisons.bottleneck`
    over its observed N (``n_col``) and D. ``crossovers``: per pair of cells,
    :func:`~ecgscale.laws.comparisons.crossover` along N at the largest D and along D at the
    largest N both cells reached, over the range both observed, with what the runs show at its
    ends (:func:`runs_order`; ``runs_at_lo``, ``runs_at_hi``). ``winners``: per grid point
    (target N, D), :func:`~ecgscale.laws.comparisons.winners` of the observed losses (seeds
    averaged). Each entry names its ``metric`` and cells."""
    out: dict[str, list[dict]] = {"bottlenecks": [], "crossovers": [], "winners": []}
    cells = sorted(
        {(str(f), str(p)) for f, p in zip(done["family"], done["paradigm"], strict=True)}
    )
    for metric in metrics:
        points = observed_points(done, metric, n_col)
        have = {c: laws[(*c, metric)] for c in cells if (*c, metric) in laws}
        shaped = {c: box_shaped(law.to_dict()) for c, law in have.items()}
        for (family, paradigm), law in have.items():
            rows = done[(done["family"] == family) & (done["paradigm"] == paradigm)]
            entry = bottleneck(law, rows[n_col].to_numpy(float), rows["data_size"].to_numpy(float))
            if reason := shaped[(family, paradigm)]:  # nor is any corner: the box shaped them
                corners = [
                    c | {"label": NOT_DETERMINED, "reason": reason} for c in entry["corners"]
                ]
                entry |= {"verdict": NOT_DETERMINED, "reason": reason, "corners": corners}
            out["bottlenecks"].append(
                {"family": family, "paradigm": paradigm, "metric": metric} | entry
            )
        for a, b in itertools.combinations(sorted(have), 2):
            rows_a = done[(done["family"] == a[0]) & (done["paradigm"] == a[1])]
            rows_b = done[(done["family"] == b[0]) & (done["paradigm"] == b[1])]
            n_a, n_b = rows_a[n_col].astype(float), rows_b[n_col].astype(float)
            d_a, d_b = rows_a["data_size"].astype(float), rows_b["data_size"].astype(float)
            spans = {
                "n": (
                    max(n_a.min(), n_b.min()),
                    min(n_a.max(), n_b.max()),
                    min(d_a.max(), d_b.max()),
                ),
                "d": (
                    max(d_a.min(), d_b.min()),
                    min(d_a.max(), d_b.max()),
                    min(n_a.max(), n_b.max()),
                ),
            }
            names = {"a": cell_name(*a), "b": cell_name(*b), "metric": metric}
            for axis, (lo, hi, at) in spans.items():
                if not lo < hi:
                    continue
                entry = crossover(have[a], have[b], axis=axis, at=at, lo=lo, hi=hi)
                reason = f"{names['a']}: {shaped[a]}" if shaped[a] else ""
                reason = reason or (f"{names['b']}: {shaped[b]}" if shaped[b] else "")
                if points is not None:
                    ends = {
                        end: runs_order(points, names["a"], names["b"], axis=axis, at=at, x=x)
                        for end, x in (("lo", lo), ("hi", hi))
                    }
                    entry |= {"runs_at_lo": ends["lo"], "runs_at_hi": ends["hi"]}
                    reason = reason or _contradiction(entry, names, axis)
                if reason:  # nor is any crossing, as with bottlenecks
                    crossings = [
                        c | {"determined": False, "reason": reason} for c in entry["crossings"]
                    ]
                    entry |= {"verdict": NOT_DETERMINED, "reason": reason, "crossings": crossings}
                out["crossovers"].append(names | entry)
        if points is not None and len(points):
            out["winners"] += [{"metric": metric} | row for row in winners(points)]
    return out


def observed_points(done: pd.DataFrame, metric: str, n_col: str) -> pd.DataFrame | None:
    """One row per cell and grid point (``n``: the target size, ``d``) of the runs' ``metric``
    and its 95% interval (seeds averaged), with ``n_actual`` (``n_col``); None when the runs
    have no interval columns for it."""
    column = metric.replace("loss:", "loss{}:")
    needed = [metric, column.format("_lo"), column.format("_hi")]
    if not set(needed) <= set(done.columns):
        return None
    points = done.assign(
        cell=[cell_name(f, p) for f, p in zip(done["family"], done["paradigm"], strict=True)],
        n_actual=done[n_col].astype(float),
    )
    points = points.rename(columns=dict(zip(needed, ["loss", "loss_lo", "loss_hi"], strict=True)))
    points = points.rename(columns={"target_params": "n", "data_size": "d"})
    points = points.groupby(["cell", "n", "d"], as_index=False)[
        ["loss", "loss_lo", "loss_hi", "n_actual"]
    ].mean()
    return points[np.isfinite(points["loss"].astype(float))]


def runs_order(
    points: pd.DataFrame, a: str, b: str, *, axis: str, at: float, x: float
) -> dict[str, Any] | None:
    """Which of cells ``a`` and ``b`` the runs put lower at the end ``x`` of a range along
    ``axis`` ("n": actual N, at D = ``at``; "d": D, at N = ``at``): each cell's grid point
    nearest (in log size) to it, no further than a factor 1.5 away. ``x``, ``lower`` ("a", "b"
    or "equal"), ``clear`` (the two 95% intervals do not overlap), and each cell's ``n``,
    ``d``, ``loss``, ``loss_lo``, ``loss_hi``; None when a cell has no run there."""
    found = {}
    for key, cell in (("a", a), ("b", b)):
        rows = points[points["cell"] == cell]
        if not len(rows):
            return None
        size_n = np.log(rows["n_actual"].to_numpy(float))
        size_d = np.log(rows["d"].to_numpy(float))
        along, fixed = (size_n, size_d) if axis == "n" else (size_d, size_n)
        distance = np.maximum(np.abs(along - np.log(x)), np.abs(fixed - np.log(at)))
        best = int(np.argmin(distance))
        if distance[best] > np.log(1.5):
            return None
        row = rows.iloc[best]
        found[key] = {
            "n": float(row["n_actual"]),
            "d": float(row["d"]),
            **{k: float(row[k]) for k in ("loss", "loss_lo", "loss_hi")},
        }
    la, lb = found["a"]["loss"], found["b"]["loss"]
    lower = "a" if la < lb else "b" if lb < la else "equal"
    first, second = (found["a"], found["b"]) if lower == "a" else (found["b"], found["a"])
    clear = lower != "equal" and first["loss_hi"] < second["loss_lo"]
    return {"x": float(x), "lower": lower, "clear": bool(clear), "a": found["a"], "b": found["b"]}


def _contradiction(entry: Mapping[str, Any], names: Mapping[str, str], axis: str) -> str:
    """Why the runs contradict the laws' order at an end of ``entry``'s range, or ``""``."""
    for end in ("lo", "hi"):
        runs, law = entry.get(f"runs_at_{end}"), entry.get(f"lower_at_{end}")
        if not runs or not runs["clear"] or law in (None, "equal") or law == runs["lower"]:
            continue
        low, high = (runs["a"], runs["b"]) if runs["lower"] == "a" else (runs["b"], runs["a"])
        return (
            f"the fitted laws put {names[law]} lower at {axis.upper()} = {compact(runs['x'])}, "
            "but the runs "
            f"clearly put {names[runs['lower']]} lower there ({low['loss']:.4g} "
            f"[{low['loss_lo']:.4g}, {low['loss_hi']:.4g}] against {high['loss']:.4g} "
            f"[{high['loss_lo']:.4g}, {high['loss_hi']:.4g}]): the laws do not describe this "
            "comparison"
        )
    return ""
