"""Fit the study's scaling laws from its results table, and what they imply.

:func:`analyse_study`: L(N) per D slice and L(D) per N slice, the joint law L(N, D),
loss-to-loss laws (OOD vs ID probe loss), efficiency ratios (parameter efficiency between
families, data efficiency SSL vs SL) and backtests. Everything the report shows is computed
here; the report only reads the result.
"""

from __future__ import annotations

import multiprocessing
import os
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import pandas as pd
from threadpoolctl import threadpool_limits
from tqdm.auto import tqdm

from ecgscale.interrupts import WorkerPool, as_completed
from ecgscale.laws import (
    FitError,
    FitResult,
    backtest,
    data_efficiency,
    fit_with_intervals,
    parameter_efficiency,
    predict_interval,
)
from ecgscale.laws.cell_comparisons import comparison_entries
from ecgscale.laws.verdicts import curve_ratio_verdict, exponent_verdicts
from ecgscale.spec import N_COLUMNS, N_WORDS

LEVEL = 0.95
BAND_POINTS = 40
N_GRID = 25
PARADIGM_PAIR = ("sl", "ssl")
"""Data efficiency compares D_B(L) / D_A(L) with A = SL and B = SSL."""


def loss_metrics(wide: pd.DataFrame) -> list[str]:
    """The loss columns laws are fitted to: pre-training loss, then ID and OOD probe losses."""
    probe = sorted(c for c in wide.columns if c.startswith("loss:"))
    probe.sort(key=lambda c: c != "loss:id")
    return ["pretrain_loss", *probe]


def probe_metrics(wide: pd.DataFrame) -> list[str]:
    """The probe-loss columns (ID first): the same units under every paradigm."""
    return [m for m in loss_metrics(wide) if m.startswith("loss:")]


@dataclass(frozen=True)
class Group:
    """The finished runs of one family × paradigm, and how their laws are fitted: ``n_col`` is
    the results column of N (:data:`N_COLUMNS`)."""

    family: str
    paradigm: str
    rows: pd.DataFrame
    delta: float
    n_boot: int
    seed: int
    n_col: str = "n_params"

    def slices(self, axis: str) -> tuple[str, str]:
        """(x column, slice column) of L(N) per D (``"N"``) or L(D) per N (``"D"``)."""
        return (self.n_col, "data_size") if axis == "N" else ("data_size", "target_params")


def analyse_study(
    wide: pd.DataFrame,
    *,
    delta: float,
    n_boot: int,
    seed: int = 0,
    n_convention: str = "total",
    workers: int | None = None,
    progress: bool = False,
) -> dict[str, Any]:
    """Everything ``fits.json`` holds about the pre-training runs.

    Keys: ``fits`` (L(N) per D slice and L(D) per N slice for every family, paradigm and loss,
    each with its 95% band ``band`` when bootstrapped) and ``gaps`` (slices not fitted, and
    why), ``joint`` (L(N, D) per family, paradigm and probe metric), ``loss_to_loss`` (OOD vs
    ID probe-loss laws per family and paradigm), ``efficiency`` (``parameter`` and ``data``
    lists of ratio summaries, see :func:`efficiency_entries`), ``backtests`` (held-out
    largest-N predictions) and ``analysis_gaps`` (``{what, reason}`` for every ratio, law or
    backtest not made). Bootstrap intervals are computed for fits with at least two degrees of
    freedom. Every fit carries ``verdicts`` (:func:`ecgscale.laws.verdicts.exponent_verdicts`),
    every ratio a ``verdict`` and ``direction`` (:mod:`ecgscale.laws.verdicts`).

    N is the parameter count of ``n_convention`` (``"total"`` or ``"non_embedding"``, see
    :data:`N_COLUMNS`) in every law; parameter efficiency is computed under both conventions
    (each entry names its ``n``). The losses of each family × paradigm are fitted in
    ``workers`` processes (default: one per CPU), with a progress bar if ``progress``; the
    result does not depend on ``workers``.
    """
    done = wide[wide["status"] == "done"]
    metrics = loss_metrics(wide)
    groups = [
        Group(str(family), str(paradigm), rows, delta, n_boot, seed, N_COLUMNS[n_convention])
        for (family, paradigm), rows in done.groupby(["family", "paradigm"], sort=True)
    ]
    tasks = [(g, metric, "loss:id" in metrics) for g in groups for metric in metrics]
    # without bootstrap refits every fit takes milliseconds: processes would only cost
    workers = min(len(tasks), workers or os.cpu_count() or 1) if n_boot else 1
    bar = tqdm(total=len(tasks), desc="laws", unit="fit", disable=not progress)
    if workers <= 1:
        parts = []
        for task in tasks:
            parts.append(_analyse_loss(*task))
            bar.update()
    else:
        context = multiprocessing.get_context("spawn")
        with WorkerPool(workers, mp_context=context) as pool:  # stopped at once by a Ctrl-C
            # the probe losses' bootstrapped joint laws first, the quick pre-training-loss
            # slices last, so that no long fit starts when the other worker has nothing left
            order = sorted(range(len(tasks)), key=lambda i: tasks[i][1] == "pretrain_loss")
            futures = {i: pool.submit(_analyse_loss, *tasks[i]) for i in order}
            for _ in as_completed(futures.values()):
                bar.update()
            parts = [futures[i].result() for i in range(len(tasks))]
    bar.close()
    out: dict[str, Any] = {key: [] for key in ("fits", "gaps", "joint", "loss_to_loss")}
    out |= {"backtests": [], "analysis_gaps": []}
    curves: dict[str, dict[tuple, tuple[FitResult, np.ndarray]]] = {}
    laws: dict[str, dict[tuple, FitResult]] = {}
    for part in parts:
        for key in out:
            out[key] += part[key]
        for convention, (slices, joint) in part["curves"].items():
            curves.setdefault(convention, {}).update(slices)
            laws.setdefault(convention, {}).update(joint)
    gaps = out["analysis_gaps"]
    efficiency: dict[str, list[dict]] = {"parameter": [], "data": []}
    for convention, column in N_COLUMNS.items():
        own = convention == n_convention
        missing: list[dict] = []
        ratios = efficiency_entries(
            done,
            wide,
            curves.get(convention, {}),
            laws.get(convention, {}),
            missing,
            n_col=column,
            kinds=("parameter", "data") if own else ("parameter",),
        )
        suffix = "" if own else f" (N: {N_WORDS[convention]})"
        gaps += [g | {"what": g["what"] + suffix} for g in missing]
        for kind, entries in ratios.items():
            efficiency[kind] += [e | {"n": convention} for e in entries]
    if not n_boot:
        reason = "laws.n_boot is 0, so no prediction interval can be made"
        gaps.append({"what": "backtests", "reason": reason})
    own_laws = laws.get(n_convention, {})
    comparisons = comparison_entries(done, probe_metrics(wide), own_laws, N_COLUMNS[n_convention])
    return {
        **out,
        "efficiency": efficiency,
        "comparisons": comparisons,
        "n_convention": n_convention,
    }


def _analyse_loss(g: Group, metric: str, has_id: bool) -> dict[str, Any]:
    """Everything fitted to one loss of one family × paradigm: its slice fits and, for a probe
    loss, its joint law and backtest, and (an OOD loss, with ``has_id``) its loss-to-loss law.

    ``curves`` maps each N convention to the (slice, joint) fits its efficiency ratios read:
    the study's own for every loss, and for a probe loss the other convention's L(N) slices
    and joint law too (parameter efficiency is reported under both)."""
    probe = [metric] if metric.startswith("loss:") else []
    ood = ["loss:id", metric] if has_id and probe and metric != "loss:id" else []
    gaps: list[dict] = []
    own = next(c for c, column in N_COLUMNS.items() if column == g.n_col)
    with threadpool_limits(1):  # scipy's BLAS threads only slow these tiny problems
        fits, fit_gaps, results = _slice_fits(g, [metric])
        joint, joint_results = _joint_fits(g, probe, gaps)
        curves = {own: (results, joint_results)}
        for convention, column in N_COLUMNS.items():
            if convention != own and probe:
                other = replace(g, n_col=column)
                curves[convention] = (
                    _slice_fits(other, probe, axes=("N",))[2],
                    _joint_fits(other, probe, [])[1],
                )
        l2l = _loss_to_loss_fits(g, ood, gaps)
        backtests = _backtests(g, probe, gaps)
    return {
        "fits": fits,
        "gaps": fit_gaps,
        "curves": curves,
        "joint": joint,
        "loss_to_loss": l2l,
        "backtests": backtests,
        "analysis_gaps": gaps,
    }


def fit_group(form: str, y: np.ndarray, g: Group, **inputs: np.ndarray) -> FitResult:
    """:func:`~ecgscale.laws.fit_with_intervals` under the group's bootstrap count, seed and
    Huber delta."""
    return fit_with_intervals(form, y, n_boot=g.n_boot, seed=g.seed, delta=g.delta, **inputs)


def fit_entry(result: FitResult) -> dict[str, Any]:
    """``fits.json``'s record of a fit: its dict and the verdict on each exponent."""
    entry = result.to_dict()
    return entry | {"verdicts": exponent_verdicts(entry)}


def _band(result: FitResult, grid: np.ndarray) -> dict | None:
    """The 95% percentile band of the bootstrap curves over ``grid`` (None without samples)."""
    if result.samples is None or grid.size == 0:
        return None
    lo, hi = predict_interval(result, ci=LEVEL, x=grid)
    return {"x": grid.tolist(), "lo": lo.tolist(), "hi": hi.tolist(), "level": LEVEL}


def _log_grid(x: np.ndarray) -> np.ndarray:
    """:data:`BAND_POINTS` sizes spaced evenly in log over ``x``'s range (empty for none)."""
    return np.geomspace(x.min(), x.max(), BAND_POINTS) if x.size else x


def _slice_fits(
    g: Group, metrics: list[str], axes: tuple[str, ...] = ("N", "D")
) -> tuple[list[dict], list[dict], dict[tuple, tuple[FitResult, np.ndarray]]]:
    """Power laws L(N) per D slice and L(D) per N slice of every loss, and the gaps."""
    family, paradigm, group = g.family, g.paradigm, g.rows
    fits: list[dict] = []
    gaps: list[dict] = []
    results: dict[tuple, tuple[FitResult, np.ndarray]] = {}
    for metric in metrics:
        for axis in axes:
            x_col, slice_col = g.slices(axis)
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
                    result = fit_group("power", y, g, x=x)
                except FitError as err:
                    gaps.append({**key, "reason": str(err)})
                    continue
                results[(family, paradigm, metric, axis, int(value))] = (result, y)
                fits.append({**key, **fit_entry(result), "band": _band(result, _log_grid(x))})
    return fits, gaps, results


def _joint_fits(
    g: Group, metrics: list[str], gaps: list[dict]
) -> tuple[list[dict], dict[tuple, FitResult]]:
    """L(N, D) = E + A·N^−α + B·D^−β per family, paradigm and probe metric."""
    family, paradigm, group = g.family, g.paradigm, g.rows
    out: list[dict] = []
    results: dict[tuple, FitResult] = {}
    for metric in metrics:
        part = group[np.isfinite(group[metric].astype(float))]
        key = {"family": family, "paradigm": paradigm, "metric": metric}
        try:
            y = part[metric].to_numpy(float)
            n, d = part[g.n_col].to_numpy(float), part["data_size"].to_numpy(float)
            result = fit_group("joint", y, g, n=n, d=d)
        except FitError as err:
            gaps.append({"what": f"joint law {family}/{paradigm}/{metric}", "reason": str(err)})
            continue
        results[(family, paradigm, metric)] = result
        out.append({**key, **fit_entry(result)})
    return out, results


def _loss_to_loss_fits(g: Group, metrics: list[str], gaps: list[dict]) -> list[dict]:
    """OOD probe loss vs ID probe loss per family, paradigm and OOD set (loss_to_loss form)."""
    family, paradigm, group = g.family, g.paradigm, g.rows
    out: list[dict] = []
    if "loss:id" not in metrics:
        return out
    for metric in metrics:
        if metric == "loss:id":
            continue
        values = group[["loss:id", metric]].astype(float)
        values = values[np.isfinite(values).all(axis=1) & (values > 0).all(axis=1)]
        name = metric.removeprefix("loss:")
        key = {"family": family, "paradigm": paradigm, "eval_set": name, "metric": metric}
        x, y = values["loss:id"].to_numpy(), values[metric].to_numpy()
        try:
            result = fit_group("loss_to_loss", y, g, x=x)
        except FitError as err:
            what = f"loss-to-loss law {family}/{paradigm}/{name}"
            gaps.append({"what": what, "reason": str(err)})
            continue
        grid = np.linspace(x.min(), x.max(), BAND_POINTS)
        curve = {"x": grid.tolist(), "y": result.predict(x=grid).tolist()}
        out.append({**key, **fit_entry(result), "curve": curve, "band": _band(result, grid)})
    return out


def _slice_from_joint(joint: FitResult, axis: str, at: float) -> FitResult:
    """The power law L(N) at D = ``at`` (``axis="N"``) or L(D) at N = ``at`` of a joint fit,
    its bootstrap samples mapped the same way: E' = E + B·at^−β, A, α (or E + A·at^−α, B, β)."""
    p = joint.params
    s = joint.samples
    if axis == "N":
        params = {"E": p["E"] + p["B"] * at ** -p["beta"], "A": p["A"], "alpha": p["alpha"]}
        samples = None
        if s is not None:
            samples = np.column_stack([s[:, 0] + s[:, 3] * at ** -s[:, 4], s[:, 1], s[:, 2]])
    else:
        params = {"E": p["E"] + p["A"] * at ** -p["alpha"], "A": p["B"], "alpha": p["beta"]}
        samples = None
        if s is not None:
            samples = np.column_stack([s[:, 0] + s[:, 1] * at ** -s[:, 2], s[:, 3], s[:, 4]])
    return replace(joint, form="power", params=params, samples=samples, intervals=None)


def _curve(
    results: Mapping[tuple, tuple[FitResult, np.ndarray]],
    joint: Mapping[tuple, FitResult],
    done: pd.DataFrame,
    key: tuple,
    at_x: float,
) -> tuple[FitResult, np.ndarray, str, dict[str, str]] | None:
    """The curve of one slice for an efficiency ratio, its observed losses, its source and the
    verdict on the exponent a ratio inverts.

    The slice's own power-law fit when it has bootstrap samples; else the joint law at that
    slice when it has them; else the slice's fit without interval; None without any fit.
    """
    family, paradigm, metric, axis, value = key
    own = results.get(key)
    if own is not None and own[0].samples is not None:
        return own[0], own[1], "power law fitted to the slice", exponent_verdict(own[0], "alpha")
    law = joint.get((family, paradigm, metric))
    slice_col = "data_size" if axis == "N" else "target_params"
    part = done[(done["family"] == family) & (done["paradigm"] == paradigm)]
    part = part[part[slice_col] == value]
    y = part[metric].astype(float).to_numpy()
    y = y[np.isfinite(y) & (y > 0)]
    if law is not None and law.samples is not None and y.size >= 2:
        verdict = exponent_verdict(law, "alpha" if axis == "N" else "beta")
        return _slice_from_joint(law, axis, at_x), y, "joint law L(N, D) at the slice", verdict
    if own is not None:
        verdict = exponent_verdict(own[0], "alpha")
        return (
            own[0],
            own[1],
            "power law fitted to the slice (no bootstrap: too few points)",
            verdict,
        )
    return None


def exponent_verdict(result: FitResult, name: str) -> dict[str, str]:
    """:func:`ecgscale.laws.verdicts.exponent_verdict` of a fit's exponent ``name``."""
    return exponent_verdicts(result.to_dict())[name]


def efficiency_entries(
    done: pd.DataFrame,
    wide: pd.DataFrame,
    results: Mapping[tuple, tuple[FitResult, np.ndarray]],
    joint: Mapping[tuple, FitResult],
    gaps: list[dict],
    *,
    n_col: str = "n_params",
    kinds: tuple[str, ...] = ("parameter", "data"),
) -> dict[str, list[dict]]:
    """Parameter efficiency N_B(L)/N_A(L) between two families (per paradigm, probe metric and
    D slice) and data efficiency D_SSL(L)/D_SL(L) (per family, probe metric and N slice), of
    the ``kinds`` asked for, with N the results column ``n_col`` (the one the fits used).

    Each entry is :func:`ecgscale.laws.efficiency_ratio`'s dict plus ``kind``, ``a``, ``b``,
    ``metric``, ``paradigm`` or ``family``, ``slice``, ``source`` (which curves) and
    :func:`ecgscale.laws.verdicts.curve_ratio_verdict`'s ``verdict``, ``direction``,
    ``more_at`` and ``fewer_at``.
    """
    out: dict[str, list[dict]] = {"parameter": [], "data": []}
    metrics = probe_metrics(wide)
    families = sorted(done["family"].astype(str).unique())
    paradigms = sorted(done["paradigm"].astype(str).unique())
    if not metrics:
        reason = "no probe loss was measured"
        gaps += [{"what": f"{k} efficiency", "reason": reason} for k in kinds]
        return out
    if "parameter" not in kinds:
        pass
    elif len(families) < 2:
        gaps.append(
            {
                "what": "parameter efficiency",
                "reason": f"it compares two model families; the study has "
                f"{' '.join(families) or 'none'} only",
            }
        )
    else:
        fam_a = families[0]
        for fam_b in families[1:]:
            for paradigm in paradigms:
                for metric in metrics:
                    for d in sorted(done["data_size"].unique()):
                        key_a = (fam_a, paradigm, metric, "N", int(d))
                        key_b = (fam_b, paradigm, metric, "N", int(d))
                        entry = _ratio(
                            "parameter", key_a, key_b, results, joint, done, float(d), gaps
                        )
                        if entry is not None:
                            entry |= {"a": fam_a, "b": fam_b, "paradigm": paradigm}
                            out["parameter"].append(entry | {"slice": {"data_size": int(d)}})
    if "data" not in kinds:
        pass
    elif not set(PARADIGM_PAIR) <= set(paradigms):
        gaps.append(
            {
                "what": "data efficiency",
                "reason": "it compares SSL with SL pre-training; the study has "
                f"{' '.join(paradigms) or 'no'} runs only",
            }
        )
    else:
        par_a, par_b = PARADIGM_PAIR
        for family in families:
            for metric in metrics:
                for n in sorted(done["target_params"].unique()):
                    key_a = (family, par_a, metric, "D", int(n))
                    key_b = (family, par_b, metric, "D", int(n))
                    # the joint law's N is the measured one: take the slice's mean
                    sel = done[(done["family"] == family) & (done["target_params"] == n)]
                    at = float(sel[n_col].mean())
                    entry = _ratio("data", key_a, key_b, results, joint, done, at, gaps)
                    if entry is not None:
                        entry |= {"a": par_a, "b": par_b, "family": family}
                        out["data"].append(entry | {"slice": {"target_params": int(n)}})
    return out


def _ratio(
    kind: str,
    key_a: tuple,
    key_b: tuple,
    results: Mapping[tuple, tuple[FitResult, np.ndarray]],
    joint: Mapping[tuple, FitResult],
    done: pd.DataFrame,
    at: float,
    gaps: list[dict],
) -> dict | None:
    """One efficiency ratio between the curves of two slices, or a gap."""
    what = f"{kind} efficiency {key_a[0]}/{key_a[1]} vs {key_b[0]}/{key_b[1]}, {key_a[2]}, "
    what += f"{'D' if key_a[3] == 'N' else 'N'} = {key_a[4]}"
    curve_a = _curve(results, joint, done, key_a, at)
    curve_b = _curve(results, joint, done, key_b, at)
    if curve_a is None or curve_b is None:
        gaps.append({"what": what, "reason": "a fitted curve is missing on one side"})
        return None
    (fit_a, y_a, src_a, exp_a), (fit_b, y_b, src_b, exp_b) = curve_a, curve_b
    ratio = parameter_efficiency if kind == "parameter" else data_efficiency
    try:
        entry = ratio(fit_a, fit_b, y_a=y_a, y_b=y_b, n_grid=N_GRID, level=LEVEL)
    except ValueError as err:
        gaps.append({"what": what, "reason": str(err)})
        return None
    if entry["geomean"] is None or not np.isfinite(entry["geomean"]):
        symbol = "α" if kind == "parameter" else "β"  # a slice's exponent is its "alpha"
        slopes = f"{symbol} = {fit_a.params['alpha']:.3g} and {fit_b.params['alpha']:.3g}"
        reason = f"a curve does not fall over the shared losses ({slopes}), so no ratio exists"
        gaps.append({"what": what, "reason": reason})
        return None
    source = src_a if src_a == src_b else f"A: {src_a}; B: {src_b}"
    verdict = curve_ratio_verdict(entry)
    loose = [
        f"{side}'s exponent is not determined ({v['reason']})"
        for side, v in (("A", exp_a), ("B", exp_b))
        if v["status"] != "determined"
    ]
    if loose:  # inverting a curve whose scaling is not determined gives no ratio to state
        verdict |= {"verdict": "not_determined", "direction": None, "reason": "; ".join(loose)}
    return {"kind": kind, "metric": key_a[2], "source": source, **verdict, **entry}


def _backtests(g: Group, metrics: list[str], gaps: list[dict]) -> list[dict]:
    """Fit the joint law without the largest N of each family, paradigm and probe metric and
    predict the held-out runs (prediction intervals need ``n_boot`` > 0)."""
    family, paradigm, group = g.family, g.paradigm, g.rows
    out: list[dict] = []
    if not g.n_boot:  # analyse_study states this gap once
        return out
    for metric in metrics:
        part = group[np.isfinite(group[metric].astype(float))]
        key = {"family": family, "paradigm": paradigm, "metric": metric, "form": "joint"}
        try:
            result = backtest(
                "joint",
                part[metric].to_numpy(float),
                n=part[g.n_col].to_numpy(float),
                d=part["data_size"].to_numpy(float),
                hold_out="largest",
                by="n",
                k=1,
                level=LEVEL,
                n_boot=g.n_boot,
                seed=g.seed,
                delta=g.delta,
            )
        except (FitError, ValueError) as err:
            gaps.append({"what": f"backtest {family}/{paradigm}/{metric}", "reason": str(err)})
            continue
        out.append({**key, **result})
    return out
