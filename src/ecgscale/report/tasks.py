"""Report pieces for evaluation sets and unseen tasks: figures of the transfer analysis (task
loss vs D_F beside the from-scratch curves, effective data vs D_F), the tables of evaluation
sets, per-label AUROC, transfer laws and SSL/SL transfer ratios, and the sentence that states a
transfer-efficiency entry (:func:`transfer_sentence`)."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd
from matplotlib import colormaps

from ecgscale.numformat import MISSING, as_float, compact, significant
from ecgscale.report.figures import (
    MARKERS,
    ReportFigure,
    _marker_handle,
    add_legend,
    line_handle,
    panel_grid,
    slug,
    style_axes,
)
from ecgscale.spec import N_COLUMNS, N_WORDS

PARADIGM_COLORS = {"ssl": colormaps["tab10"](0), "sl": colormaps["tab10"](3)}
SCRATCH_COLOR = "black"


format_number = significant
"""The old name of :func:`ecgscale.numformat.significant` (3 significant digits)."""


def with_interval(value: object, lo: object, hi: object, digits: int = 3) -> str:
    """``0.812 [0.79, 0.83]`` (the value to ``digits`` significant digits), or the value alone
    without a finite interval."""
    text = significant(value, digits)
    if significant(lo) != MISSING and significant(hi) != MISSING:
        text += f" [{significant(lo)}, {significant(hi)}]"
    return text


def bounded_ratio(bounds: Sequence[object] | None) -> str:
    """A ratio known within [lower, upper]: ``"3.1×"`` when they agree, ``"≥ 3.1×"``,
    ``"≤ 0.5×"``, ``"2.9–3.4×"``, ``"undefined (0 to ∞)"``, or a dash."""
    lower, upper = (as_float(v) for v in (bounds or [None, None])[:2])
    if np.isnan(lower) or np.isnan(upper):
        return MISSING
    if lower == upper:
        return f"{significant(lower)}×"
    if lower == 0 and upper == np.inf:
        return "undefined (0 to ∞)"
    if upper == np.inf:
        return f"≥ {significant(lower)}×"
    if lower == 0:
        return f"≤ {significant(upper)}×"
    return f"{significant(lower)}–{significant(upper)}×"


def interval_text(ci: Sequence[object] | None) -> str:
    """``"[1.4, 9.8]"`` (∞ for an open end), or ``"(no interval)"``."""
    lo, hi = (as_float(v) for v in (ci or [None, None])[:2])
    if np.isnan(lo) or np.isnan(hi):
        return "(no interval)"
    return f"[{significant(lo)}, {significant(hi)}]"


def censored_value(row: Mapping, quantity: str) -> str:
    """D_E or D_T (``quantity`` ``"d_e"`` or ``"d_t"``) of an effective-data row: the value,
    ``"≥ 3,200"`` or ``"≤ 50"`` when it is censored, or a dash."""
    censored = str(row.get("censored") or "")
    if censored == ">=":
        return f"≥ {significant(row.get(f'{quantity}_lower'))}"
    if censored == "<=":
        return f"≤ {significant(row.get(f'{quantity}_upper'))}"
    return significant(row.get(f"{quantity}_lower"))


def eval_set_table(evals: pd.DataFrame) -> dict:
    """One row per evaluation set: records, labels scored and labels left out of its loss."""
    rows = []
    probe = evals[evals["method"] == "probe"]
    for name, group in probe.groupby("eval_set", sort=False):
        first = group.iloc[0]
        per_label = json.loads(first["per_label"]) if isinstance(first["per_label"], str) else {}
        omitted = [x for x in str(first.get("omitted") or "").split(",") if x]
        scored = [k for k, v in per_label.items() if v.get("n")]
        positives = ", ".join(f"{k} {per_label[k]['n_pos']}" for k in scored)
        rows.append(
            [
                str(name),
                "OOD" if bool(first["is_ood"]) else "ID test",
                significant(first["n"]),
                positives or MISSING,
                ", ".join(omitted) or "none",
            ]
        )
    headers = ["set", "role", "records", "positives per scored label", "labels left out"]
    return {"caption": "Evaluation sets", "headers": headers, "rows": rows}


def auroc_table(runs: pd.DataFrame, evals: pd.DataFrame) -> dict:
    """Per-label AUROC with intervals for the largest model at the largest D of each family,
    paradigm and method, on every evaluation set."""
    done = runs[runs["status"] == "done"]
    top = done.sort_values(["target_params", "data_size"]).groupby(["family", "paradigm"]).tail(1)
    chosen = evals.merge(top[["run_id", "family", "paradigm", "target_params", "data_size"]])
    labels: list[str] = []
    rows = []
    for ev in chosen.sort_values(["eval_set", "family", "paradigm", "method"]).itertuples():
        per_label = json.loads(ev.per_label) if isinstance(ev.per_label, str) else {}
        labels = labels or list(per_label)
        rows.append(
            [
                str(ev.eval_set),
                f"{ev.family} / {ev.paradigm}",
                str(ev.method),
                f"target N={compact(ev.target_params)}, D={compact(ev.data_size)}",
                with_interval(ev.loss, ev.loss_lo, ev.loss_hi),
                with_interval(ev.auroc, ev.auroc_lo, ev.auroc_hi),
                with_interval(ev.f1, ev.f1_lo, ev.f1_hi),
                *(
                    with_interval(
                        *(per_label.get(k, {}).get(m) for m in ("auroc", "auroc_lo", "auroc_hi"))
                    )
                    for k in labels
                ),
            ]
        )
    headers = ["set", "model", "method", "size", "BCE", "macro AUROC", "macro F1", *labels]
    caption = (
        "Per-label AUROC (95% bootstrap intervals over records) of the largest model at the "
        "largest D; 'probe' is the frozen-encoder linear probe, 'head' an SL model's own head, "
        "'finetune' the fine-tuned encoder. A dash: the set does not annotate the label, or "
        "has one class only."
    )
    return {"caption": caption, "headers": headers, "rows": rows}


def task_figures(transfer: Mapping, tasks: pd.DataFrame) -> list[ReportFigure]:
    """Per task: loss vs D_F beside the from-scratch curves, then effective data vs D_F."""
    out = []
    eff = pd.DataFrame(transfer.get("effective") or [])
    curves = list(transfer.get("curves") or [])
    for task in sorted(tasks["task"].unique()):
        part = tasks[tasks["task"] == task]
        task_curves = [c for c in curves if c["task"] == task]
        out.append(_loss_vs_df(task, part, task_curves))
        if not eff.empty:
            out.append(_effective_vs_df(task, eff[eff["task"] == task]))
    return out


def _largest_d(part: pd.DataFrame) -> pd.DataFrame:
    return part[part["data_size"] == part["data_size"].max()]


def _loss_vs_df(task: str, part: pd.DataFrame, curves: Sequence[Mapping]) -> ReportFigure:
    name = f"task_{slug(task)}_loss_vs_DF"
    caption = (
        f"Task {task}: held-out loss vs labelled records D_F. Black: from-scratch models (points) "
        "and their fitted curves, one line style per N (points only for a curve that is not "
        "inverted: too few D_F, or flat); colours: pre-trained encoders (largest pre-training "
        "D), marker per N. D_E is where a pre-trained point's loss meets the from-scratch curve "
        "of its N, within the from-scratch D_F range. N: the size ladder's target (rung)."
    )
    if not curves:
        caption = (
            f"Task {task}: held-out loss vs labelled records D_F of the pre-trained encoders "
            "(largest pre-training D), colour by paradigm, marker per N. No from-scratch curve "
            "for this task (transfer.tasks, or its from-scratch models did not give one), so no "
            "effective data. N: the size ladder's target (rung)."
        )
    part = _largest_d(part[np.isfinite(part["loss"].astype(float)) & (part["loss"] > 0)])
    families = sorted(set(part["family"]) | {c["family"] for c in curves})
    if not families:
        return ReportFigure(name, caption, None, [f"No result for task {task}."])
    sizes = sorted(set(part["target_params"]) | {int(c["target_params"]) for c in curves})
    markers = {n: MARKERS[i % len(MARKERS)] for i, n in enumerate(sizes)}
    styles = {n: ("-", "--", ":", "-.")[i % 4] for i, n in enumerate(sizes)}
    fig, axes = panel_grid(1, len(families), sharey=True)
    for ax, family in zip(axes[0], families, strict=True):
        for curve in (c for c in curves if c["family"] == family):
            pts = np.asarray(curve["points"], dtype=float).reshape(-1, 2)
            n = int(curve["target_params"])
            ax.scatter(pts[:, 0], pts[:, 1], s=14, color=SCRATCH_COLOR, marker=markers[n])
            if curve.get("reason"):
                continue
            x = np.geomspace(pts[:, 0].min(), pts[:, 0].max(), 50)
            if np.isfinite(curve.get("E", np.nan)):
                y = curve["E"] + curve["B"] * x ** (-curve["beta"])
            else:
                y = np.exp(np.interp(np.log(x), np.log(pts[:, 0]), np.log(pts[:, 1])))
            ax.plot(x, y, color=SCRATCH_COLOR, ls=styles[n], lw=1)
        panel = part[part["family"] == family]
        for (paradigm, n, method), group in panel.groupby(["paradigm", "target_params", "method"]):
            mean = group.groupby("d_f")["loss"].mean()
            ls = "-" if method == "probe" else "--"
            ax.plot(
                mean.index,
                mean.to_numpy(),
                marker=markers[n],
                ls=ls,
                lw=1,
                ms=5,
                color=PARADIGM_COLORS.get(paradigm, "grey"),
            )
        style_axes(ax, f"{task} / {family}", "D_F (labelled records)", "task loss")
    handles = [
        line_handle(PARADIGM_COLORS.get(p, "grey"), f"pre-trained {p}")
        for p in sorted(set(part["paradigm"]))
    ]
    drawn = sorted({int(c["target_params"]) for c in curves if not c.get("reason")})
    handles += [
        line_handle(SCRATCH_COLOR, f"from scratch N={compact(n)}", ls=styles[n]) for n in drawn
    ]
    handles += [_marker_handle(markers[n], f"N = {compact(n)}") for n in sizes]
    add_legend(fig, handles)
    return ReportFigure(name, caption, fig, [])


def _effective_vs_df(task: str, eff: pd.DataFrame) -> ReportFigure:
    name = f"task_{slug(task)}_effective_data"
    caption = (
        f"Task {task}: effective data D_E (the from-scratch records that reach the same loss) vs "
        "D_F, pre-trained encoders at the largest pre-training D; the dotted line is D_E = D_F "
        "(no transfer), so D_T = D_E − D_F is the height above it. Hollow markers: D_E censored "
        "(mean over seeds, drawn at the bound: D_E ≥ the largest from-scratch D_F, or ≤ the "
        "smallest)."
    )
    eff = _largest_d(eff)
    censored = eff.get("censored", pd.Series("", index=eff.index)).astype(str)
    shown = np.where(censored == "<=", eff["d_e_upper"], eff["d_e_lower"]).astype(float)
    eff = eff.assign(shown=shown, hollow=censored != "")
    finite = eff[np.isfinite(shown) & (shown > 0)]
    notes = []
    if len(finite) < len(eff):
        reasons = sorted(set(eff.loc[~eff.index.isin(finite.index), "reason"].astype(str)) - {""})
        notes.append(
            f"{len(eff) - len(finite)} point(s) without D_E are left out"
            + (f" ({'; '.join(reasons[:3])}{_more(len(reasons) - 3)})" if reasons else "")
            + "."
        )
    if finite.empty:
        return ReportFigure(name, caption, None, notes or [f"No effective data for task {task}."])
    families = sorted(finite["family"].unique())
    sizes = sorted(finite["target_params"].unique())
    markers = {n: MARKERS[i % len(MARKERS)] for i, n in enumerate(sizes)}
    fig, axes = panel_grid(1, len(families), sharey=True)
    for ax, family in zip(axes[0], families, strict=True):
        panel = finite[finite["family"] == family]
        for (paradigm, n, method), group in panel.groupby(["paradigm", "target_params", "method"]):
            color = PARADIGM_COLORS.get(paradigm, "grey")
            group = group.groupby("d_f").agg(shown=("shown", "mean"), hollow=("hollow", "any"))
            ax.plot(
                group.index,
                group["shown"],
                color=color,
                lw=1,
                ls="-" if method == "probe" else "--",
            )
            for d_f, row in group.iterrows():
                face = "none" if row["hollow"] else color
                ax.scatter(
                    [d_f],
                    [row["shown"]],
                    marker=markers[n],
                    facecolors=face,
                    edgecolors=color,
                    s=28,
                )
        lo, hi = panel["d_f"].min(), panel["d_f"].max()
        lo, hi = (lo / 1.25, hi * 1.25) if lo == hi else (lo, hi)
        ax.plot([lo, hi], [lo, hi], color="grey", ls=":", lw=0.8)
        style_axes(ax, f"{task} / {family}", "D_F (labelled records)", "D_E (effective records)")
    handles = [
        line_handle(PARADIGM_COLORS.get(p, "grey"), p) for p in sorted(finite["paradigm"].unique())
    ]
    handles += [_marker_handle(markers[n], f"N = {compact(n)}") for n in sizes]
    handles.append(line_handle("grey", "D_E = D_F", ls=":"))
    add_legend(fig, handles)
    return ReportFigure(name, caption, fig, notes)


def law_table(transfer: Mapping) -> dict:
    """The fitted transfer laws D_T = k·D_F^α·N^β with intervals, or why none was fitted."""
    rows = []
    for law in transfer.get("laws") or []:
        fitted = "reason" not in law
        rows.append(
            [
                str(law["task"]),
                f"{law['family']} / {law['paradigm']}",
                str(law["method"]),
                compact(law["data_size"]),
                *(
                    with_interval(law.get(k), law.get(f"{k}_lo"), law.get(f"{k}_hi"))
                    if fitted
                    else MISSING
                    for k in ("k", "alpha", "beta")
                ),
                str(law.get("n_points", MISSING)),
                str(law.get("reason") or law.get("note") or ""),
            ]
        )
    headers = [
        "task",
        "model",
        "method",
        "pre-training D",
        "k",
        "α (D_F)",
        "β (N)",
        "points",
        "note",
    ]
    column = str(transfer.get("n_column") or "target_params")
    convention = {c: k for k, c in N_COLUMNS.items()}.get(column)
    n_words = N_WORDS[convention] if convention else "the size rung's target"
    caption = (
        f"Transfer laws D_T = k·D_F^α·N^β, N: {n_words} (least squares in log space, bootstrap "
        "intervals)."
    )
    return {"caption": caption, "headers": headers, "rows": rows}


VERDICT_WORDS = {"no_difference": "no difference", "not_determined": "not determined"}


def _verdict_words(entry: Mapping) -> str:
    verdict = str(entry.get("verdict") or "not_determined")
    if verdict == "direction":
        return f"direction ({entry.get('direction')})"
    return VERDICT_WORDS.get(verdict, verdict)


def _with_ci(entry: Mapping | None, stat: str) -> str:
    """``"≥ 2× [1.9, ∞]"``: a statistic's bounds and its interval."""
    entry = entry or {}
    if f"{stat}_bounds" not in entry:
        return MISSING
    return f"{bounded_ratio(entry[f'{stat}_bounds'])} {interval_text(entry.get(f'{stat}_ci'))}"


def ratio_table(transfer: Mapping) -> dict:
    """SSL/SL ratios of D_E and D_T per task and method: pairs by censoring, median and
    geometric mean with their bounds and 95% intervals, and the verdicts."""
    rows = [
        [
            str(s["task"]),
            str(s["method"]),
            " / ".join(
                str(s.get(k, 0))
                for k in (
                    "n_exact",
                    "n_right_censored",
                    "n_left_censored",
                    "n_undefined",
                    "n_missing",
                )
            ),
            _with_ci(s, "median"),
            _with_ci(s, "geomean"),
            _verdict_words(s),
            _with_ci(s.get("d_t"), "median"),
            _verdict_words(s.get("d_t") or {}),
        ]
        for s in transfer.get("summary") or []
    ]
    headers = [
        "task",
        "method",
        "pairs: exact / ≥ / ≤ / undefined / no D_E",
        "D_E(SSL) / D_E(SL): median [95% interval]",
        "geometric mean [95% interval]",
        "verdict",
        "D_T(SSL) / D_T(SL): median [95% interval]",
        "D_T verdict",
    ]
    caption = (
        "Transfer efficiency: SSL against SL effective data at matched family, N, pre-training "
        "D, D_F and seed (above 1: SSL transfers more). A D_E beyond the from-scratch D_F range "
        "is censored, so a pair's ratio may be known only from below (≥) or above (≤), or not "
        "at all (undefined); no such pair is left out (a pair with a side that has no D_E at "
        "all, e.g. no from-scratch curve of its size, is counted under 'no D_E'). The median is "
        "then known within bounds (median of the lower bounds to median of the upper bounds). "
        "Intervals: bootstrap over the from-scratch curves and the matched runs. In the D_T "
        "ratio, D_T is clipped at 0 (no transfer); the unseen-task table gives D_T as measured "
        "(below 0: worse than a from-scratch model on the same D_F). "
        "Verdict: a direction when the interval excludes 1, no difference when it holds 1 and "
        "spans at most a factor 100, otherwise not determined."
    )
    return {"caption": caption, "headers": headers, "rows": rows}


def _pairs_words(entry: Mapping) -> str:
    """``"18 pairs, 6 of them with a D_E censored at ≥ the largest …; D_T ratio …"``."""
    used = int(entry.get("n_pairs") or 0) - int(entry.get("n_missing") or 0)
    parts = []
    above, below = int(entry.get("n_above_range") or 0), int(entry.get("n_below_range") or 0)
    if above:
        parts.append(f"{above} of them with a D_E censored at ≥ the largest from-scratch D_F")
    if below:
        parts.append(
            f"{below} {'of them ' if not above else ''}with a D_E censored at ≤ the smallest"
        )
    if not parts:
        parts.append("none censored")
    missing = int(entry.get("n_missing") or 0)
    text = f"{used} pairs, " + " and ".join(parts)
    if missing:
        text += f"; {missing} more without D_E left out"
    d_t = entry.get("d_t") or {}
    if d_t:
        text += f"; D_T ratio {_with_ci(d_t, 'median')}"
        none_sl = int(d_t.get("n_no_transfer_sl") or 0)
        if none_sl:
            text += f", SL transferring nothing in {none_sl} pairs"
    return text


def _scope_words(entry: Mapping) -> str:
    """``"over D_F = 25–100 and task losses 0.31–0.52"``."""
    d_f = entry.get("d_f_range") or [None, None]
    losses = entry.get("loss_range") or [None, None]
    return (
        f"over D_F = {significant(d_f[0])}–{significant(d_f[1])} and task losses "
        f"{significant(losses[0])}–{significant(losses[1])}"
    )


def transfer_sentence(entry: Mapping) -> str:
    """One transfer-efficiency entry (``fits.json["efficiency"]["transfer"]``) stated as its
    verdict allows: a direction only for ``"direction"``, "no detectable difference" for
    ``"no_difference"``, otherwise "not determined …, because …"."""
    start = f"On the unseen task {entry.get('task')} ({entry.get('method')}), "
    verdict = entry.get("verdict")
    if "median_bounds" not in entry:
        return (
            start + "the SSL/SL effective-data ratio is not determined by these runs, because "
            f"{entry.get('reason') or 'there is no summary'}."
        )
    ratio = _with_ci(entry, "median")
    detail = f"(median over {_pairs_words(entry)})"
    if verdict == "direction":
        return (
            f"{start}SSL pre-training is worth {ratio} the effective data of SL {detail}, "
            f"{_scope_words(entry)}."
        )
    if verdict == "no_difference":
        return (
            f"{start}there is no detectable difference between the effective data of SSL and "
            f"SL pre-training: the SSL/SL ratio is {ratio} {detail}, {_scope_words(entry)}."
        )
    return (
        f"{start}the SSL/SL effective-data ratio is not determined by these runs (median "
        f"{ratio} over {_pairs_words(entry)}), {_scope_words(entry)}, because "
        f"{entry.get('reason') or 'its interval is undefined'}."
    )


def task_result_table(transfer: Mapping, tasks: pd.DataFrame) -> dict:
    """Every task result with its interval, metric and effective data (where the task has
    from-scratch models: the rows of ``transfer``'s effective data; the others as measured)."""
    eff = pd.DataFrame(transfer.get("effective") or [])
    covered = set(eff["task"]) if not eff.empty else set()
    rest = tasks[~tasks["task"].isin(covered)] if not tasks.empty else tasks
    if covered and not rest.empty:
        rest = rest.assign(reason="no from-scratch models for this task: no D_E")
    table = pd.concat([eff, rest], ignore_index=True) if covered else tasks
    rows = []
    for r in table.sort_values(
        ["task", "family", "paradigm", "target_params", "data_size", "d_f"]
    ).to_dict("records"):
        rows.append(
            [
                str(r["task"]),
                f"{r['family']} / {r['paradigm']}",
                str(r["method"]),
                compact(r["target_params"]),
                compact(r["data_size"]),
                str(int(r["d_f"])),
                with_interval(r["loss"], r.get("loss_lo"), r.get("loss_hi")),
                f"{r.get('metric_name', '')} "
                + with_interval(r.get("metric"), r.get("metric_lo"), r.get("metric_hi")),
                censored_value(r, "d_e"),
                censored_value(r, "d_t"),
                str(r.get("reason") or ""),
            ]
        )
    headers = ["task", "model", "method", "target N", "D", "D_F", "loss", "metric", "D_E", "D_T"]
    headers.append("note")
    return {
        "caption": (
            "Unseen-task results (95% bootstrap intervals). D_E and D_T are exact within the "
            "from-scratch D_F range; beyond it they are censored (≥ or ≤ the bound)."
        ),
        "headers": headers,
        "rows": rows,
    }


def _more(count: int) -> str:
    """``"; and 2 more"`` after a list cut to its first items, or ``""``."""
    return f"; and {count} more" if count > 0 else ""
