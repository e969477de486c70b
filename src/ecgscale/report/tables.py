"""The report's tables: fitted parameters, runs, each rung's recipe, what could not be
determined, the untrained encoders against their runs, and the text of a table value
(:func:`format_value`)."""

from __future__ import annotations

import numbers
from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd

from ecgscale.laws.verdicts import exponent_verdicts
from ecgscale.numformat import MISSING, compact, significant
from ecgscale.report import comparison_findings, findings
from ecgscale.report.tasks import with_interval

ID_SET = "id"


def fit_table(fits: Sequence[Mapping]) -> dict:
    """Headers and formatted rows of the fitted-parameter table, each exponent's verdict last
    (a slice of 3 runs has no interval: its α is a description, not a finding)."""
    headers = ["family", "paradigm", "metric", "x", "slice", "E", "A", "alpha"]
    headers += ["n_points", "dof", "converged", "alpha verdict"]
    rows = []
    for fit in fits:
        verdict = (fit.get("verdicts") or exponent_verdicts(fit)).get("alpha") or {}
        determined = verdict.get("status") == "determined"
        reason = verdict.get("reason") or "no verdict"
        rows.append(
            [
                *(format_value(fit.get(key)) for key in ("family", "paradigm", "metric", "x")),
                slice_text(fit.get("slice")),
                *(param_text(fit, key) for key in ("E", "A", "alpha")),
                *(format_value(fit.get(key)) for key in ("n_points", "dof", "converged")),
                "determined" if determined else f"not determined: {reason}",
            ]
        )
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
    rows += comparison_findings.comparison_gaps(analysis.get("comparisons") or {})
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
    """``{"data_size": 10000} -> "D = 10,000"``; ``{"target_params": n} -> "target N = …"``."""
    symbols = {"data_size": "D", "target_params": "target N"}
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


def has_references(references: pd.DataFrame | None) -> bool:
    """Whether the study probed any untrained encoder."""
    return references is not None and not references.empty


def reference_points(references: pd.DataFrame | None, eval_set: str) -> pd.DataFrame | None:
    """The untrained encoders' losses on ``eval_set`` as ``family``, ``target_params``, ``y``."""
    if not has_references(references):
        return None
    rows = references[references["eval_set"] == eval_set]
    return rows[["family", "target_params"]].assign(y=rows["loss"].to_numpy())


def untrained_table(
    runs: pd.DataFrame, evals: pd.DataFrame, references: pd.DataFrame, eval_sets: Sequence[str]
) -> dict:
    """Per loss set × family × paradigm × N: the untrained encoder's probe loss, the runs' at
    the largest D, the change, and whether their 95% intervals part (means over seeds)."""
    columns = ["loss", "loss_lo", "loss_hi"]
    keys = ["eval_set", "family", "target_params"]
    untrained = references.reindex(columns=[*keys, *columns]).groupby(keys)[columns].mean()
    coords = runs[["run_id", "family", "paradigm", "target_params", "data_size"]]
    scored = evals.merge(coords, on="run_id")
    rows = []
    for eval_set in eval_sets:
        groups = scored[scored["eval_set"] == eval_set].groupby(
            ["family", "paradigm", "target_params"], sort=True
        )
        for (family, paradigm, n), part in groups:
            if (eval_set, family, n) not in untrained.index:
                continue
            largest = part["data_size"].max()
            before = untrained.loc[(eval_set, family, n)]
            after = part[part["data_size"] == largest][columns].mean()
            rows.append(
                [
                    "ID" if eval_set == ID_SET else eval_set,
                    f"{family} / {paradigm}",
                    compact(n),
                    with_interval(*before[columns], digits=4),
                    f"{with_interval(*after[columns], digits=4)} (D = {compact(largest)})",
                    f"{(after['loss'] - before['loss']) / before['loss']:+.0%}",
                    _apart(after, before),
                ]
            )
    headers = ["loss on", "cell", "target N", "untrained (D = 0)", "pre-trained, largest D"]
    headers += ["change", "pre-trained vs untrained"]
    caption = (
        "Probe loss of each N's untrained encoder (its runs' initial weights) against its runs "
        "at the largest D, on the ID test split and each OOD set, with 95% intervals (means "
        "over seeds): what pre-training earns over random features of the same size; clearly "
        "lower or higher where the two intervals do not overlap"
    )
    return {"caption": caption, "headers": headers, "rows": rows}


def _apart(after: pd.Series, before: pd.Series) -> str:
    """Whether a loss's 95% interval lies wholly below or above another's."""
    bounds = [float(r[k]) for r in (after, before) for k in ("loss_lo", "loss_hi")]
    if not np.isfinite(bounds).all():
        return "no interval"
    if float(after["loss_hi"]) < float(before["loss_lo"]):
        return "clearly lower"
    if float(after["loss_lo"]) > float(before["loss_hi"]):
        return "clearly higher"
    return "intervals overlap"


def rung_recipe_table(runs: pd.DataFrame) -> dict:
    """Per rung (family × paradigm × N): the peak learning rate its runs trained at, and the
    steps they ran and kept (early stopping keeps the best validation step)."""

    def span(values: pd.Series) -> str:
        values = values.dropna()
        if values.empty:
            return "–"
        lo, hi = int(values.min()), int(values.max())
        return f"{lo:,}" if lo == hi else f"{lo:,}–{hi:,}"

    rows = []
    for (family, paradigm, n), part in runs.groupby(
        ["family", "paradigm", "target_params"], sort=True
    ):
        rates = ", ".join(f"{lr:g}" for lr in sorted(part["lr"].dropna().unique()))
        rows.append(
            [
                f"{family} / {paradigm}",
                compact(n),
                rates or "–",
                span(part["steps"]),
                span(part["best_step"]),
            ]
        )
    headers = ["cell", "target N", "peak learning rate", "steps run", "best step (kept)"]
    caption = "Learning rate and steps of each rung (its runs over every data size and seed)"
    return {"caption": caption, "headers": headers, "rows": rows}
