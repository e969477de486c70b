"""The study report: one self-contained HTML page with embedded figures and tables."""

from __future__ import annotations

import base64
from collections.abc import Mapping, Sequence
from functools import cache
from pathlib import Path

import jinja2
import pandas as pd

from ecgscale.numformat import compact
from ecgscale.report import comparison_findings, figures, findings, tasks
from ecgscale.report.figures import ReportFigure
from ecgscale.report.tables import (
    ID_SET,
    fit_table,
    format_value,
    has_references,
    reference_points,
    run_table,
    rung_recipe_table,
    undetermined_table,
    untrained_table,
)
from ecgscale.spec import N_COLUMNS, N_WORDS

PARADIGMS: tuple[str, ...] = ("sl", "ssl")
"""Paradigms a study is expected to cover; the summary names the absent ones."""

EVAL_COLUMNS: tuple[str, ...] = (
    "run_id",
    "eval_set",
    "method",
    "is_ood",
    "n",
    *(f"{m}{s}" for m in ("loss", "auroc", "f1") for s in ("", "_lo", "_hi")),
    "omitted",
    "per_label",
)
"""Columns of the evaluations table (missing ones are added empty; a missing method is the
probe's)."""
ID_PROBE_NOTE = (
    "The ID probe reads the six labels that SL pre-training learns (the paper's protocol): an "
    "SL encoder was trained on the task this loss measures, an SSL encoder never saw a label."
)


def render_report(
    runs: pd.DataFrame,
    evals: pd.DataFrame,
    fits: list[dict],
    *,
    spec_text: str,
    out_dir: Path,
    title: str = "ecgscale study",
    meta: dict | None = None,
    task_results: pd.DataFrame | None = None,
    transfer: Mapping | None = None,
    analysis: Mapping | None = None,
    roles: pd.DataFrame | None = None,
    sweep: pd.DataFrame | None = None,
    curves: pd.DataFrame | None = None,
    references: pd.DataFrame | None = None,
) -> Path:
    """Write ``out_dir/report.html`` and ``out_dir/figures/<name>.png`` and ``.svg``; return
    the HTML path.

    The page reads top-down: a summary, the findings the intervals support, the roles of the
    records (``roles``, the audit of :func:`ecgscale.evaluate.roles.role_table`), the figures
    and tables, then one collapsed table of everything the runs could not determine and why.
    ``analysis`` is the rest of ``fits.json`` (``efficiency``, ``backtests``, ``joint``,
    ``loss_to_loss``, ``analysis_gaps``, ``n_convention``); without it those parts say so.
    ``curves`` are the runs' training curves (``run_id``, ``step``, ``train_loss``,
    ``val_loss``), drawn per family × paradigm. ``references`` are the untrained encoders'
    probe losses (``family``, ``target_params``, ``seed``, ``eval_set``, ``loss``), drawn
    beside the runs in the loss-vs-D figures and set against them in a table.
    Figures are embedded in the page as base64 PNG data URIs, so the page needs no other file.
    Missing pieces (no fits, no evaluations, a single paradigm, failed runs, no unseen task)
    are described in words where their figure or table would be.
    """
    out_dir = Path(out_dir)
    figure_dir = out_dir / "figures"
    figure_dir.mkdir(parents=True, exist_ok=True)
    runs = runs.astype({"run_id": str, "family": str, "paradigm": str})
    all_evals = evals.reindex(columns=list(EVAL_COLUMNS)).astype({"run_id": str, "eval_set": str})
    all_evals["method"] = (
        all_evals["method"].astype(object).where(all_evals["method"].notna(), "probe")
    )
    evals = all_evals[all_evals["method"] == "probe"]
    ood_sets = ood_set_names(evals)
    analysis = analysis or {}
    convention = str(analysis.get("n_convention") or "total")
    n_axis = (N_COLUMNS.get(convention, "n_params"), f"N ({N_WORDS[convention]})")
    sections = [_findings_section(analysis, transfer), _roles_section(roles)]
    sections += figure_sections(
        runs, evals, fits, ood_sets, analysis.get("loss_to_loss") or (), n_axis, references
    )
    swept = sweep is not None and not sweep.empty
    if swept:
        sections.append(_sweep_section(sweep))
    sections.append(_training_section(runs, curves, swept=swept))
    sections.append(_comparison_section(analysis))
    sections.append(_efficiency_section(analysis))
    sections.append(_backtest_section(analysis))
    sections.append(_evaluation_section(runs, all_evals))
    sections.append(_task_section(task_results, transfer))
    used_names: set[str] = set()
    template = _environment().get_template("report.html")
    html = template.render(
        title=title,
        summary=summarise(runs, evals, analysis, ood_sets),
        status_counts=runs["status"].value_counts().to_dict(),
        sections=[_embed_section(section, figure_dir, used_names) for section in sections],
        gaps=undetermined_table(fits, analysis, transfer),
        fit_table=fit_table(fits),
        run_table=run_table(runs, evals, ood_sets),
        spec_text=spec_text,
        meta_rows=[(str(key), format_value(value)) for key, value in (meta or {}).items()],
    )
    path = out_dir / "report.html"
    path.write_text(html, encoding="utf-8")
    return path


def ood_set_names(evals: pd.DataFrame) -> list[str]:
    """Sorted names of the out-of-distribution evaluation sets."""
    return sorted(str(name) for name in evals.loc[evals["is_ood"].eq(True), "eval_set"].unique())


def figure_sections(
    runs: pd.DataFrame,
    evals: pd.DataFrame,
    fits: Sequence[Mapping],
    ood_sets: Sequence[str],
    loss_to_loss_laws: Sequence[Mapping] = (),
    n_axis: tuple[str, str] = ("n_params", "N (total parameters)"),
    references: pd.DataFrame | None = None,
) -> list[dict]:
    """The figure sections of the report, in page order: ``{"title", "intro", "figures"}``.
    ``n_axis`` is the results column of N the laws used and its axis label; ``references``
    the untrained encoders' probe losses (see :func:`render_report`)."""
    families = runs["family"].tolist()
    id_points = figures.probe_points(runs, evals, ID_SET)
    n_col, n_label = n_axis
    dashed = _dashed(fits, "N")
    by_n = {"n_col": n_col, "n_label": n_label}
    pretrain = figures.loss_vs_n(
        figures.pretrain_points(runs),
        fits,
        families,
        name="pretrain_loss_vs_N",
        caption=f"Best validation pre-training loss vs {n_label}, one marker per D.{dashed}",
        quantity="pre-training loss",
        metric="pretrain_loss",
        ylabel=figures.PRETRAIN_UNITS,
        **by_n,
    )
    id_vs_n = figures.loss_vs_n(
        id_points,
        fits,
        families,
        name="id_loss_vs_N",
        caption=f"Linear-probe BCE on the ID test split vs {n_label}, one marker per D.{dashed}",
        quantity="ID probe loss",
        metric=f"loss:{ID_SET}",
        ylabel="ID probe loss (BCE)",
        **by_n,
    )
    id_vs_d = figures.loss_vs_d(
        id_points,
        fits,
        name="id_loss_vs_D",
        caption=_vs_d_caption("Linear-probe BCE on the ID test split", references, fits),
        quantity="ID probe loss",
        metric=f"loss:{ID_SET}",
        references=reference_points(references, ID_SET),
    )
    id_vs_d_section = _section("ID probe loss vs D", [id_vs_d])
    if has_references(references):
        id_vs_d_section["tables"] = [untrained_table(runs, evals, references, [ID_SET, *ood_sets])]
    return [
        _section("Pre-training loss vs N", [pretrain], "Units differ per paradigm."),
        _section("ID probe loss vs N", [id_vs_n], ID_PROBE_NOTE),
        id_vs_d_section,
        _section("OOD loss vs N", _ood_figures(runs, evals, fits, families, ood_sets, by_n)),
        _section("OOD loss vs D", _ood_d_figures(runs, evals, fits, ood_sets, references)),
        _section(
            "Loss-to-loss: OOD vs ID probe loss",
            _loss_to_loss(runs, evals, ood_sets, loss_to_loss_laws),
            "Fitted laws L_OOD = K·(L_ID − E_x)^κ + E_y per family × paradigm: dashed, with "
            "95% bootstrap bands, where κ is determined; dash-dotted, without a band, where it "
            "is not (the table of what these runs could not determine says why).",
        ),
    ]


def summarise(
    runs: pd.DataFrame, evals: pd.DataFrame, analysis: Mapping, ood_sets: Sequence[str]
) -> str:
    """A paragraph describing the study: coverage, best ID/OOD losses, the N convention and
    the determined exponents of the ID probe loss (never an undetermined one as a number)."""
    families = sorted(runs["family"].astype(str).unique())
    paradigms = sorted(runs["paradigm"].astype(str).unique())
    sentences = [
        f"The study has {len(runs)} run(s) of {_join(families) or 'no family'} "
        f"under {_join(paradigms) or 'no paradigm'}."
    ]
    sentences += [f"No {p} run is present." for p in PARADIGMS if p not in paradigms]
    sentences += findings.precision_note(runs.get("precision", pd.Series(dtype=object)))
    if evals.empty:
        sentences.append("No evaluation results are available, so no probe loss is reported.")
    else:
        sentences.append(_best_sentence(runs, evals, ID_SET, "ID probe loss"))
        sentences += [
            _best_sentence(runs, evals, name, f"probe loss on OOD set {name}") for name in ood_sets
        ]
        if not ood_sets:
            sentences.append("No out-of-distribution evaluation set is present.")
    convention = str(analysis.get("n_convention") or "total")
    sentences.append(
        f"N counts {N_WORDS[convention]} in every law and figure (laws.n); parameter "
        "efficiency is also given under the other convention."
    )
    if analysis.get("joint"):
        sentences.append(findings.headline_exponents(analysis["joint"], convention))
    else:
        sentences.append("No scaling law was fitted, so no exponent is reported.")
    return " ".join(sentences)


def _section(title: str, report_figures: list[ReportFigure], intro: str = "") -> dict:
    """A section of the page: figures, then notes and tables (added by the caller)."""
    return {
        "title": title,
        "intro": intro,
        "figures": report_figures,
        "findings": [],
        "notes": [],
        "tables": [],
    }


def _ood_figures(
    runs: pd.DataFrame,
    evals: pd.DataFrame,
    fits: Sequence[Mapping],
    families: Sequence[str],
    ood_sets: Sequence[str],
    by_n: Mapping[str, str],
) -> list[ReportFigure]:
    """One loss-vs-N figure per OOD set, or a single note when there is none."""
    if not ood_sets:
        return [_absent("ood_loss_vs_N", "No out-of-distribution evaluation set is present.")]
    return [
        figures.loss_vs_n(
            figures.probe_points(runs, evals, name),
            fits,
            families,
            name=f"ood_loss_vs_N_{figures.slug(name)}",
            caption=f"Linear-probe BCE on the OOD set {name} vs {by_n['n_label']}, one marker "
            f"per D.{_dashed(fits, 'N')}",
            quantity=f"probe loss on {name}",
            metric=f"loss:{name}",
            ylabel=f"probe loss on {name} (BCE)",
            **by_n,
        )
        for name in ood_sets
    ]


def _vs_d_caption(what: str, references: pd.DataFrame | None, fits: Sequence[Mapping]) -> str:
    """A loss-vs-D figure's caption, naming the untrained encoders' lines where drawn."""
    drawn = ", dash-dotted: each N's untrained encoder" if has_references(references) else ""
    return f"{what} vs D, one line per target N{drawn}.{_dashed(fits, 'D')}"


def _dashed(fits: Sequence[Mapping], x: str) -> str:
    """What a loss-vs-``x`` figure's dashed lines are, where laws were fitted."""
    per = "D" if x == "N" else "N"
    words = f" Dashed: the law L({x}) = E + A·{x}^−α fitted to each {per}'s runs (a slice law"
    return words + ": the fitted slices' table gives its verdict)." if fits else ""


def _ood_d_figures(
    runs: pd.DataFrame,
    evals: pd.DataFrame,
    fits: Sequence[Mapping],
    ood_sets: Sequence[str],
    references: pd.DataFrame | None = None,
) -> list[ReportFigure]:
    """One loss-vs-D figure per OOD set, or a single note when there is none."""
    if not ood_sets:
        return [_absent("ood_loss_vs_D", "No out-of-distribution evaluation set is present.")]
    return [
        figures.loss_vs_d(
            figures.probe_points(runs, evals, name),
            fits,
            name=f"ood_loss_vs_D_{figures.slug(name)}",
            caption=_vs_d_caption(f"Linear-probe BCE on the OOD set {name}", references, fits),
            quantity=f"probe loss on {name}",
            metric=f"loss:{name}",
            references=reference_points(references, name),
        )
        for name in ood_sets
    ]


def _loss_to_loss(
    runs: pd.DataFrame,
    evals: pd.DataFrame,
    ood_sets: Sequence[str],
    laws: Sequence[Mapping] = (),
) -> list[ReportFigure]:
    """The loss-to-loss figure, or a note when there is no OOD set."""
    if not ood_sets:
        return [_absent("loss_to_loss", "No out-of-distribution evaluation set is present.")]
    caption = "Per-run OOD vs ID probe loss, one panel per OOD set; the dotted line is y = x."
    figure = figures.loss_to_loss(
        runs, evals, ood_sets, name="loss_to_loss", caption=caption, laws=laws
    )
    if not laws:
        figure.notes.append("No loss-to-loss law was fitted.")
    return [figure]


def _training_section(runs: pd.DataFrame, curves: pd.DataFrame | None, *, swept: bool) -> dict:
    """Training curves of every run, one figure per family × paradigm; without a sweep (whose
    section lists the rates it chose), each rung's learning rate and steps."""
    title = "Training curves"
    if curves is None or curves.empty:
        note = "No run has a training curve (metrics.csv or train.json history) to draw."
        section = _section(title, [_absent("training_curves", note)])
    else:
        cells = sorted(set(zip(runs["family"], runs["paradigm"], strict=True)))
        report_figures = [
            figures.training_curves(
                curves,
                runs,
                family=family,
                paradigm=paradigm,
                name=f"training_curves_{figures.slug(family)}_{figures.slug(paradigm)}",
            )
            for family, paradigm in cells
        ]
        intro = (
            "How every run trained, read from its metrics.csv (train.json's validation "
            "history for runs without one): a diverging or stalled run shows here."
        )
        section = _section(title, report_figures, intro)
    if not swept and {"lr", "steps", "best_step"} <= set(runs.columns):
        section["tables"] = [rung_recipe_table(runs)]
    return section


def _findings_section(analysis: Mapping, transfer: Mapping | None) -> dict:
    """What the intervals support, first: exponents, loss-to-loss laws, comparisons,
    efficiency, transfer, backtests."""
    section = _section(
        "Findings",
        [],
        "Only what the 95% intervals support is stated here: an exponent off the fitter's "
        "bounds whose interval excludes 0; a ratio with a direction when its interval excludes "
        "1, or no detectable difference when it contains 1 (an efficiency ratio whose interval "
        "at single losses says otherwise: the losses where it lies above or below 1). "
        "Everything else is listed, with the reason, in the table of what these runs could not "
        "determine at the end of the page.",
    )
    convention = str(analysis.get("n_convention") or "total")
    efficiency = analysis.get("efficiency") or {}
    comparisons = analysis.get("comparisons") or {}
    groups = [
        ("Scaling exponents", findings.exponent_findings(analysis.get("joint") or [], convention)),
        ("Loss-to-loss", findings.loss_to_loss_findings(analysis.get("loss_to_loss") or [])),
        (
            "Bottleneck",
            comparison_findings.bottleneck_findings(
                comparisons.get("bottlenecks") or [], convention
            ),
        ),
        ("Who wins", comparison_findings.winner_findings(comparisons.get("winners") or [])),
        (
            "Crossover",
            comparison_findings.crossover_findings(comparisons.get("crossovers") or [], convention),
        ),
        ("Efficiency", findings.efficiency_findings(efficiency)),
        ("Transfer", findings.transfer_findings(efficiency)),
        ("Backtests", findings.backtest_summary(analysis.get("backtests") or [])),
    ]
    for title, sentences in groups:
        section["findings"] += [f"{title}: {sentence}" for sentence in sentences]
    if not section["findings"]:
        section["notes"] = ["These runs determine none of the findings this report states."]
    return section


def _roles_section(roles: pd.DataFrame | None) -> dict:
    """The audit of roles: what each role holds and its overlap with pre-training."""
    intro = (
        "Every role of the records, with the records and patients it holds and its overlap "
        "with each pre-training subset and the pre-training validation set (records, "
        "patients); roles that may share records (tasks with each other and with OOD sets) "
        "say so, and any other overlap is a conflict that stops the study."
    )
    section = _section("Roles of the records", [], intro)
    if roles is None or roles.empty:
        section["notes"] = ["No audit of roles (roles.csv) was found in the study folder."]
        return section
    headers = [str(c) for c in roles.columns]
    rows = [[format_value(v) for v in row] for row in roles.itertuples(index=False)]
    conflicts = int((roles["conflicts"] != "").sum())
    caption = f"{len(roles)} roles, {conflicts} with a conflict"
    section["tables"] = [{"caption": caption, "headers": headers, "rows": rows}]
    return section


def _sweep_section(sweep: pd.DataFrame) -> dict:
    """The learning-rate sweep: each rung's validation loss per rate and the rate it chose."""
    d = ", ".join(compact(v) for v in sorted(sweep["data_size"].unique()))
    intro = (
        f"Every rung (family × paradigm × N × seed) trained at each learning rate at D = {d}; "
        "the rate with the lowest validation pre-training loss there trained the rung's other "
        f"data sizes. The sweep took {len(sweep)} runs, "
        f"{(~sweep['chosen']).sum()} of them beyond the grid."
    )
    figure = figures.lr_sweep(
        sweep, name="lr_sweep", caption="Validation pre-training loss vs peak learning rate."
    )
    section = _section("Learning-rate sweep", [figure], intro)
    chosen = sweep[sweep["chosen"]].sort_values(["family", "paradigm", "target_params", "seed"])
    rows = [
        [f"{r.family} / {r.paradigm}", compact(r.target_params), str(r.seed), f"{r.lr:g}"]
        for r in chosen.itertuples(index=False)
    ]
    headers = ["cell", "target N", "seed", "chosen learning rate"]
    section["tables"] = [{"caption": "Chosen learning rates", "headers": headers, "rows": rows}]
    return section


def _comparison_section(analysis: Mapping) -> dict:
    """Bottlenecks of each cell and crossovers between cells, every one in a table."""
    section = _section(
        "Bottlenecks and crossovers",
        [],
        "Whether more data or more parameters lowers each cell's loss more, at the corners of "
        "the grid, and where two cells' fitted laws cross (the stated ones are in the findings)."
        f" N counts {N_WORDS[analysis.get('n_convention') or 'total']} (laws.n).",
    )
    comparisons = analysis.get("comparisons") or {}
    section["tables"] = [
        comparison_findings.bottleneck_table(comparisons.get("bottlenecks") or []),
        comparison_findings.crossover_table(comparisons.get("crossovers") or []),
    ]
    return section


def _efficiency_section(analysis: Mapping) -> dict:
    """Every efficiency ratio in one table (the stated ones are in the findings)."""
    section = _section(
        "Efficiency",
        [],
        "Ratios of the sizes two fitted curves need to reach the same loss, N_B(L) / N_A(L) "
        "or D_B(L) / D_A(L) with x(L) = (A / (L − E))^(1/α), over the losses both were observed "
        "at; transfer efficiency compares effective data D_E of SSL and SL pre-training. "
        "Parameter efficiency is given under both parameter-count conventions.",
    )
    efficiency = analysis.get("efficiency")
    if not efficiency:
        section["notes"] = ["No efficiency ratios are available (fits.json has none)."]
        return section
    section["tables"] = [findings.efficiency_table(efficiency)]
    return section


def _backtest_section(analysis: Mapping) -> dict:
    """Backtests: predicted vs observed held-out runs (figure and table)."""
    backtests = analysis.get("backtests") or []
    caption = (
        "Predicted vs observed probe loss of the runs at the largest N, from the joint law "
        "fitted without them; bars are 95% prediction intervals, the dotted line is y = x."
    )
    section = _section(
        "Backtests",
        [figures.backtest_figure(backtests, name="backtests", caption=caption)],
        "Each law is fitted on all but the largest models and asked to predict them.",
    )
    section["tables"] = [findings.backtest_table(backtests)] if backtests else []
    return section


def _evaluation_section(runs: pd.DataFrame, evals: pd.DataFrame) -> dict:
    """The evaluation sets (records, labels left out) and per-label AUROC with intervals."""
    if evals.empty:
        return _section("Evaluation sets and per-label AUROC", [], "No evaluation results.")
    intro = (
        "A set's loss is the mean BCE over the labels it annotates; labels it does not "
        "annotate are left out of its loss and AUROC, as listed."
    )
    section = _section("Evaluation sets and per-label AUROC", [], intro)
    section["tables"] = [tasks.eval_set_table(evals), tasks.auroc_table(runs, evals)]
    return section


def _task_section(task_results: pd.DataFrame | None, transfer: Mapping | None) -> dict:
    """Unseen tasks: loss vs D_F with the from-scratch curves, effective data, laws, ratios."""
    title = "Unseen tasks and transfer"
    if task_results is None or task_results.empty:
        return _section(title, [_absent("tasks", "The study has no unseen-task results.")])
    transfer = transfer or {}
    intro = (
        "Probes (and fine-tuned encoders, if asked) on targets never used in pre-training, at "
        "each labelled-set size D_F. Effective data D_E: the records a from-scratch model of the "
        "same family and N needs to reach the same loss (Hernandez et al. 2021); D_T = D_E − D_F."
    )
    section = _section(title, tasks.task_figures(transfer, task_results), intro)
    section["tables"] = [
        tasks.ratio_table(transfer),
        tasks.law_table(transfer),
        tasks.task_result_table(transfer, task_results),
    ]
    return section


def _absent(name: str, note: str) -> ReportFigure:
    """A figure that cannot be drawn, with the reason."""
    return ReportFigure(name, "", None, [note])


def _embed_section(section: dict, figure_dir: Path, used_names: set[str]) -> dict:
    """Save the section's figures as PNG and SVG files and replace them by PNG data URIs.

    ``used_names`` holds the file names taken so far; a clash gets a numeric suffix.
    """
    embedded = []
    for report_figure in section["figures"]:
        uri = None
        if report_figure.figure is not None:
            name = _unique(report_figure.name, used_names)
            data = figures.write_svg_and_png(report_figure.figure, figure_dir / name)
            uri = "data:image/png;base64," + base64.b64encode(data).decode("ascii")
        caption, notes = report_figure.caption, report_figure.notes
        embedded.append({"uri": uri, "caption": caption, "notes": notes})
    return {**section, "figures": embedded}


def _unique(name: str, used_names: set[str]) -> str:
    """``name``, or ``name_2``, ``name_3``, … if taken; the result is added to ``used_names``."""
    candidate, counter = name, 1
    while candidate in used_names:
        counter += 1
        candidate = f"{name}_{counter}"
    used_names.add(candidate)
    return candidate


def _best_sentence(runs: pd.DataFrame, evals: pd.DataFrame, eval_set: str, label: str) -> str:
    """Which family / paradigm (and N, D) reached the lowest loss on ``eval_set``, and how
    clearly (:func:`~ecgscale.report.findings.best_run_sentence`)."""
    scored = evals[(evals["eval_set"] == eval_set) & evals["loss"].notna()]
    scored = scored.merge(runs, on="run_id", how="inner").reset_index(drop=True)
    return findings.best_run_sentence(scored.to_dict("records"), label)


def _join(items: Sequence[str]) -> str:
    """``["a", "b", "c"] -> "a, b and c"``."""
    items = [str(item) for item in items]
    return ", ".join(items[:-1]) + " and " + items[-1] if len(items) > 1 else "".join(items)


@cache
def _environment() -> jinja2.Environment:
    """The Jinja2 environment of the report template, with autoescaping on."""
    return jinja2.Environment(
        loader=jinja2.PackageLoader("ecgscale.report", "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
