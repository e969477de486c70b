"""Report pieces for what the fitted laws imply: efficiency ratios stated as findings (with
their bootstrap intervals and the loss range they hold over) and backtests (laws fitted
without the largest models, predicting them). Everything is read from ``fits.json``."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from ecgscale.report.figures import compact_count
from ecgscale.report.tasks import format_number
from ecgscale.study.analysis import MAX_SPREAD

LEVEL_WORDS = "95%"
KIND_TITLES = {
    "parameter": "Parameter efficiency",
    "data": "Data efficiency",
    "transfer": "Transfer efficiency",
}


def set_name(metric: object) -> str:
    """``"loss:id" -> "ID"``, ``"loss:ptbxl" -> "ptbxl"``."""
    name = str(metric).removeprefix("loss:")
    return "ID" if name == "id" else name


def _times(value: object) -> str:
    return f"{format_number(value)}×"


def _ci(entry: Mapping, stat: str, level: float) -> str:
    """``"95% CI 0.41–0.66"``, or a statement that there is no interval."""
    lo, hi = entry.get(f"{stat}_lo"), entry.get(f"{stat}_hi")
    if not entry.get("n_samples"):
        return "no interval: the fits have no bootstrap samples"
    if format_number(lo) == "—" or format_number(hi) == "—":
        return "interval undefined: bootstrap curves that do not fall"
    return f"{level:.0%} CI {format_number(lo)}–{format_number(hi)}"


def _with_ci(entry: Mapping, stat: str) -> str:
    """``"0.55× [0.41, 0.66]"`` for the table."""
    text = _times(entry.get(stat))
    lo, hi = entry.get(f"{stat}_lo"), entry.get(f"{stat}_hi")
    if lo is not None and hi is not None and format_number(lo) != "—" and format_number(hi) != "—":
        text += f" [{format_number(lo)}, {format_number(hi)}]"
    return text


def _boot_ci(entry: Mapping) -> str:
    """A transfer ratio's geometric mean with its bootstrap interval over pairs."""
    text = _times(entry.get("geomean"))
    lo, hi = entry.get("geomean_boot_lo"), entry.get("geomean_boot_hi")
    if format_number(lo) != "—" and format_number(hi) != "—":
        text += f" [{format_number(lo)}, {format_number(hi)}]"
    return text


def _verdict(entry: Mapping) -> str:
    return "yes" if entry.get("determined") else f"no (interval > {MAX_SPREAD:g}×)"


def _loss_range(entry: Mapping) -> str:
    lo, hi = (entry.get("loss_range") or [None, None])[:2]
    return f"{format_number(lo)}–{format_number(hi)}"


def _slice_words(entry: Mapping) -> str:
    fit_slice = entry.get("slice") or {}
    if "data_size" in fit_slice:
        return f"D = {compact_count(fit_slice['data_size'])}"
    if "target_params" in fit_slice:
        return f"N = {compact_count(fit_slice['target_params'])}"
    return ""


def _largest_slice(entries: Sequence[Mapping], group: tuple[str, ...]) -> list[Mapping]:
    """Per group (keys of the entries), the entry at the largest slice value."""
    chosen: dict[tuple, Mapping] = {}
    for entry in entries:
        key = tuple(str(entry.get(k)) for k in group)
        size = max((entry.get("slice") or {}).values(), default=0)
        if key not in chosen or size > max((chosen[key].get("slice") or {}).values(), default=0):
            chosen[key] = entry
    return [chosen[key] for key in sorted(chosen)]


def _direction(entry: Mapping) -> str:
    g = entry.get("geomean")
    try:
        g = float(g)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return ""
    if g < 1:
        return "fewer"
    return "more" if g > 1 else "as many"


def efficiency_findings(efficiency: Mapping) -> list[str]:
    """One sentence per comparison the runs determine, at its largest slice (the table lists
    every slice), and one per kind on the ratios they do not determine."""
    sentences = []
    parameter, data, transfer = (
        efficiency.get(kind) or [] for kind in ("parameter", "data", "transfer")
    )
    for entry in _largest_slice(_determined(parameter), ("paradigm", "a", "b", "metric")):
        sentences.append(
            f"Under {entry.get('paradigm')} pre-training at {_slice_words(entry)}, "
            f"{entry.get('b')} models need {_times(entry.get('min'))}–{_times(entry.get('max'))} "
            f"the parameters of {entry.get('a')} models for the same "
            f"{set_name(entry.get('metric'))} probe loss {_summary(entry)}"
        )
    for entry in _largest_slice(_determined(data), ("family", "a", "b", "metric")):
        sentences.append(
            f"For {entry.get('family')} models at {_slice_words(entry)}, "
            f"{str(entry.get('b')).upper()} pre-training needs "
            f"{_times(entry.get('min'))}–{_times(entry.get('max'))} the pre-training records of "
            f"{str(entry.get('a')).upper()} for the same {set_name(entry.get('metric'))} probe "
            f"loss {_summary(entry)}"
        )
    for entry in _determined(transfer):
        level = float(entry.get("level") or 0.95)
        d_f = entry.get("d_f_range")
        where = "over no usable D_F"
        if d_f:
            where = f"over D_F = {format_number(d_f[0])}–{format_number(d_f[1])}"
        sentences.append(
            f"On the unseen task {entry.get('task')} ({entry.get('method')}), SSL pre-training "
            f"is worth {_times(entry.get('min'))}–{_times(entry.get('max'))} the effective data "
            f"of SL (geometric mean {_times(entry.get('geomean'))}, {level:.0%} bootstrap CI "
            f"over pairs {format_number(entry.get('geomean_boot_lo'))}–"
            f"{format_number(entry.get('geomean_boot_hi'))}), {where} and task losses "
            f"{_loss_range(entry)}, from {entry.get('n', 0)} of {entry.get('n_pairs', 0)} "
            "matched pairs."
        )
    for kind, entries in (("parameter", parameter), ("data", data), ("transfer", transfer)):
        loose = [e for e in entries if not e.get("determined")]
        if loose:
            sentences.append(
                f"{len(loose)} of {len(entries)} {kind}-efficiency ratios are not determined by "
                f"these runs: their {LEVEL_WORDS} interval of the geometric mean is open-ended or "
                f"wider than a factor {MAX_SPREAD:g} (flagged in the table)."
            )
    return sentences


def _summary(entry: Mapping) -> str:
    """``"(fewer on average: geometric mean …, CI; minimum CI; maximum CI), over losses …."``"""
    level = float(entry.get("level") or 0.95)
    return (
        f"({_direction(entry)} on average: geometric mean {_times(entry.get('geomean'))}, "
        f"{_ci(entry, 'geomean', level)}; minimum {_ci(entry, 'min', level)}; maximum "
        f"{_ci(entry, 'max', level)}), over losses {_loss_range(entry)}."
    )


def _determined(entries: Sequence[Mapping]) -> list[Mapping]:
    return [e for e in entries if e.get("determined")]


def efficiency_table(efficiency: Mapping) -> dict:
    """Every efficiency ratio: comparison, slice, loss range, min / max / geometric mean."""
    rows = []
    for kind in ("parameter", "data"):
        for e in efficiency.get(kind) or []:
            condition = e.get("paradigm") if kind == "parameter" else e.get("family")
            rows.append(
                [
                    KIND_TITLES[kind],
                    f"{e.get('quantity')}({e.get('b')}) / {e.get('quantity')}({e.get('a')})",
                    str(condition),
                    set_name(e.get("metric")),
                    _slice_words(e),
                    _loss_range(e),
                    _with_ci(e, "min"),
                    _with_ci(e, "max"),
                    _with_ci(e, "geomean"),
                    _verdict(e),
                    str(e.get("source") or ""),
                ]
            )
    for e in efficiency.get("transfer") or []:
        d_f = e.get("d_f_range")
        rows.append(
            [
                KIND_TITLES["transfer"],
                "D_E(SSL) / D_E(SL)",
                f"{e.get('task')} / {e.get('method')}",
                str(e.get("task")),
                f"D_F = {format_number(d_f[0])}–{format_number(d_f[1])}" if d_f else "—",
                _loss_range(e),
                _with_ci(e, "min"),
                _with_ci(e, "max"),
                _boot_ci(e),
                _verdict(e),
                f"{e.get('n', 0)} of {e.get('n_pairs', 0)} pairs",
            ]
        )
    headers = ["kind", "ratio", "condition", "loss on", "slice", "loss range", "min", "max"]
    headers += ["geometric mean", "determined", "curves"]
    caption = (
        "Efficiency ratios at equal loss (above 1: the numerator needs more), each summarised "
        "over the losses both curves were observed at, with 95% bootstrap intervals in brackets "
        "(transfer: over the matched pairs). Determined: the interval of the geometric mean is "
        f"finite and spans at most a factor {MAX_SPREAD:g}."
    )
    return {"caption": caption, "headers": headers, "rows": rows}


def backtest_table(backtests: Sequence[Mapping]) -> dict:
    """Per held-out run: observed and predicted loss, relative error, inside the interval."""
    rows = []
    for bt in backtests:
        for point in bt.get("points") or []:
            inputs = point.get("inputs") or {}
            interval = point.get("interval") or [None, None]
            rows.append(
                [
                    f"{bt.get('family')} / {bt.get('paradigm')}",
                    set_name(bt.get("metric")),
                    f"{bt.get('form')} law, {bt.get('n_train')} points",
                    compact_count(inputs.get("n")),
                    compact_count(inputs.get("d")),
                    format_number(point.get("truth")),
                    format_number(point.get("prediction")),
                    f"[{format_number(interval[0])}, {format_number(interval[1])}]",
                    f"{100 * float(point.get('rel_error') or 0):+.1f}%",
                    "yes" if point.get("inside") else "no",
                ]
            )
    headers = ["model", "loss on", "fitted", "N (held out)", "D", "observed", "predicted"]
    headers += ["95% prediction interval", "error", "inside"]
    caption = (
        "Backtests: the joint law L(N, D) fitted without the largest N, predicting the held-out "
        "runs (error = (predicted − observed) / observed)."
    )
    return {"caption": caption, "headers": headers, "rows": rows}


def backtest_summary(backtests: Sequence[Mapping]) -> list[str]:
    """One sentence on how well the held-out runs were predicted."""
    points = [p for bt in backtests for p in bt.get("points") or []]
    if not points:
        return []
    inside = sum(bool(p.get("inside")) for p in points)
    errors = [abs(float(p.get("rel_error") or 0)) for p in points]
    return [
        f"Fitted without the largest models, the laws predicted the {len(points)} held-out "
        f"run(s) with a mean absolute error of {100 * sum(errors) / len(errors):.1f}% "
        f"(at most {100 * max(errors):.1f}%); {inside} of {len(points)} lie inside their 95% "
        "prediction interval."
    ]
