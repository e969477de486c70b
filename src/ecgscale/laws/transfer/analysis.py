"""The whole transfer analysis of a study (see :mod:`ecgscale.laws.transfer`)."""

from __future__ import annotations

from typing import Any

import pandas as pd

from ecgscale.laws.transfer.curves import curve_key, curve_name, curves_and_gaps
from ecgscale.laws.transfer.effective import effective_data
from ecgscale.laws.transfer.law import fit_transfer_law
from ecgscale.laws.transfer.ratios import transfer_ratios, transfer_summary

LAW_KEYS = ["task", "family", "paradigm", "method", "data_size"]


def transfer_analysis(
    tasks: pd.DataFrame,
    scratch: pd.DataFrame,
    *,
    curve: str = "power",
    delta: float = 1e-3,
    n_boot: int = 200,
    seed: int = 0,
    n_column: str = "target_params",
) -> dict[str, Any]:
    """The whole transfer analysis as a JSON-serialisable dict; the transfer laws read N from
    column ``n_column`` of ``tasks`` (a study passes its laws' convention, e.g. ``n_params``).

    Keys: ``curves`` (from-scratch curves, with ``n_boot`` bootstrap draws each),
    ``effective`` (rows of :func:`effective_data`), ``laws`` (per task, family, paradigm,
    method, data_size: :func:`fit_transfer_law` or a ``reason``), ``n_column``, ``ratios`` (rows of
    :func:`transfer_ratios`), ``summary`` (:func:`transfer_summary`: SSL/SL ratios per task and
    method) and ``gaps`` (``{what, reason}`` for each curve or law not made or not inverted).
    """
    curves, gaps = curves_and_gaps(scratch, curve=curve, delta=delta, n_boot=n_boot, seed=seed)
    keys = ["task", "family", "target_params"]
    needed = tasks.groupby(keys, sort=True).size().index
    tried = set(map(curve_key, scratch.groupby(keys).size().index)) if len(scratch) else set()
    for key in map(curve_key, needed):
        if key not in curves and not any(g["what"] == curve_name(key) for g in gaps):
            reason = (
                "no done from-scratch runs"
                if key in tried
                else "no from-scratch model of this size in the results (transfer.sizes picks "
                "the sizes)"
            )
            gaps.append({"what": curve_name(key), "reason": reason})
    eff = effective_data(tasks, curves)
    laws = []
    for values, part in eff.groupby(LAW_KEYS, sort=True):
        key = dict(zip(LAW_KEYS, values, strict=True))
        key = {**{k: str(v) for k, v in key.items()}, "data_size": int(key["data_size"])}
        try:
            laws.append({**key, **fit_transfer_law(part, n_boot=n_boot, seed=seed, size=n_column)})
        except ValueError as err:
            laws.append({**key, "reason": str(err)})
            what = "transfer law " + "/".join(str(v) for v in values)
            gaps.append({"what": what, "reason": str(err)})
    ratios = transfer_ratios(eff)
    return {
        "curves": [c.to_dict() for c in curves.values()],
        "effective": eff.to_dict("records"),
        "laws": laws,
        "n_column": n_column,
        "ratios": ratios.to_dict("records"),
        "summary": transfer_summary(eff, curves, n_boot=n_boot, seed=seed, pairs=ratios),
        "gaps": gaps,
    }
