"""The report's tables: fitted parameters, runs, what could not be determined, and the text of
a table value (:func:`format_value`)."""

from __future__ import annotations

import numbers
from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd

from ecgscale.numformat import MISSING, significant
from ecgscale.report import findings

ID_SET = "id"


def fit_table(fits: Sequence[Mapping]) -> dict:
    """Headers and formatted rows of the fitted-parameter table."""
    headers = ["family", "paradigm", "metric", "x", "slice", "E", "A", "alpha"]
    headers += ["n_points", "dof", "converged"]
    rows = [
        [
            *(format_value(fit.get(key)) for key in ("family", "paradigm", "metric", "x")),
            slice_text(fit.get("slice")),
            *(param_text(fit, key) for key in ("E", "A", "alpha")),
            *(format_value(fit.get(key)) for key in ("n_points", "dof", "converged")),
        ]
        for fit in fits
    ]
    return {"headers": headers, "rows": rows}


def run_table(runs: pd.DataFrame, evals: pd.DataFrame, ood_sets: Sequence[str]) -> dict:
    """Headers and rows (cells with ``text`` and a ``sort`` key) of the run table.

    All run columns, then the ID probe loss and AUROC and the loss on each OOD set.
    """
    table = runs.copy()
    extra = {f"{ID_SET} loss": (ID_SET, "loss"), f"{ID_SET} auroc": (ID_SET, "auroc")}
    extra |= {f"{name} loss": (name, "loss") for name in ood_sets}
    for column, (eval_set, value) in extra.items():
        per_run = evals[evals["eval_set"] == eval_set].groupby("run_id")[value].mean()
        table[column] = table["run_id"].map(per_run)
    rows = [
        {
            "failed": row.get("status") == "failed",
            "cells": [_cell(value) for value in row.values()],
        }
        for row in table.to_dict(orient="records")
    ]
    return {"headers": [str(column) for column in table.columns], "rows": rows}


def format_value(value: object) -> str:
    """Human-readable text for a table value: yes or no, whole numbers in full, other numbers
    to 4 significant digits (:func:`~ecgscale.numformat.significant`), text as it is."""
    if value is None or (pd.api.types.is_scalar(value) and pd.isna(value)):
        return MISSING
    if isinstance(value, (bool, np.bool_)):
        return "yes" if value else "no"
    if isinstance(value, numbers.Integral):
        return f"{int(value):,}"
    if isinstance(value, numbers.Real):
        return significant(value, 4)
    return str(value)


def undetermined_table(
    fits: Sequence[Mapping], analysis: Mapping, transfer: Mapping | None
) -> dict:
    """One table of everything the runs could not determine, and why: undetermined exponents
    and ratios, laws and slices not fitted, comparisons not made, transfer curves not usable."""
    rows = findings.exponent_gaps(analysis.get("joint") or [], "joint law L(N, D)")
    rows += findings.exponent_gaps(analysis.get("loss_to_loss") or [], "loss-to-loss law")
    rows += findings.ratio_gaps(analysis.get("efficiency") or {})
    rows += findings.comparison_gaps(analysis.get("comparisons") or {})
    rows += [("Not made", str(g.get("what")), str(g.get("reason"))) for g in _gaps(analysis)]
    for gap in analysis.get("gaps") or []:
        where = f"{gap.get('family')} / {gap.get('paradigm')}, {gap.get('metric')}"
        rows.append(
            (
                "Slice not fitted",
                f"L({gap.get('x')}) at {gap.get('slice')}, {where}",
                str(gap.get("reason")),
            )
        )
    rows += [
        ("Transfer", str(g.get("what")), str(g.get("reason")))
        for g in (transfer or {}).get("gaps") or []
    ]
    return {
        "caption": f"What these runs could not determine ({len(rows)})",
        "headers": ["kind", "what", "why"],
        "rows": [list(row) for row in rows],
    }


def _gaps(analysis: Mapping) -> list[Mapping]:
    return list(analysis.get("analysis_gaps") or [])


def slice_text(fit_slice: Mapping | None) -> str:
    """``{"data_size": 10000} -> "D = 10,000"``; ``{"target_params": n} -> "N = …"``."""
    symbols = {"data_size": "D", "target_params": "N"}
    parts = [f"{symbols.get(k, k)} = {format_value(v)}" for k, v in (fit_slice or {}).items()]
    return ", ".join(parts) or MISSING


def param_text(fit: Mapping, key: str) -> str:
    """A fitted parameter with its interval when present: ``0.312 [0.28, 0.35]``."""
    text = format_value((fit.get("params") or {}).get(key))
    interval = (fit.get("intervals") or {}).get(key)
    if interval is not None and len(interval) == 2:
        text += f" [{format_value(interval[0])}, {format_value(interval[1])}]"
    return text


def _cell(value: object) -> dict:
    """A run-table cell: displayed text and a key for the inline sort script."""
    text = format_value(value)
    is_number = isinstance(value, numbers.Real) and not isinstance(value, (bool, np.bool_))
    sort = "" if text == MISSING else (repr(float(value)) if is_number else text)
    return {"text": text, "sort": sort}
