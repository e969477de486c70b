"""Report pieces for what the fitted laws imply, read from ``fits.json``: the findings the
intervals support (exponents, efficiency ratios, backtests) stated as sentences, and the rows of
what the runs could not determine, with the reason (see :mod:`ecgscale.laws.verdicts`)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from ecgscale.laws.verdicts import MAX_SPREAD
from ecgscale.numformat import MISSING, compact, significant
from ecgscale.report.tasks import bounded_ratio, interval_text, transfer_sentence
from ecgscale.spec import N_WORDS

LEVEL_WORDS = "95%"
KIND_TITLES = {
    "parameter": "Parameter efficiency",
    "data": "Data efficiency",
    "transfer": "Transfer efficiency",
}
VERDICT_WORDS = {
    "direction": "yes",
    "no_difference": "no detectable difference",
    "not_determined": "not determined",
}


def set_name(metric: object) -> str:
    """``"loss:id" -> "ID"``, ``"loss:ptbxl" -> "ptbxl"``."""
    name = str(metric).removeprefix("loss:")
    return "ID" if name == "id" else name


def _times(value: object) -> str:
    return f"{significant(value)}×"


def _ci(entry: Mapping, stat: str, level: float) -> str:
    """``"95% CI 0.41–0.66"``, or a statement that there is no interval."""
    lo, hi = entry.get(f"{stat}_lo"), entry.get(f"{stat}_hi")
    if not entry.get("n_samples"):
        return "no interval: the fits have no bootstrap samples"
    if significant(lo) == MISSING or significant(hi) == MISSING:
        return "interval undefined: bootstrap curves that do not fall"
    return f"{level:.0%} CI {significant(lo)}–{significant(hi)}"


def _with_ci(entry: Mapping, stat: str) -> str:
    """``"0.55× [0.41, 0.66]"`` for the table."""
    text = _times(entry.get(stat))
    lo, hi = entry.get(f"{stat}_lo"), entry.get(f"{stat}_hi")
    if significant(lo) != MISSING and significant(hi) != MISSING:
        text += f" [{significant(lo)}, {significant(hi)}]"
    return text


def _verdict(entry: Mapping) -> str:
    verdict = str(entry.get("verdict") or "not_determined")
    if verdict == "not_determined":
        return f"not determined (interval open or > {MAX_SPREAD:g}×)"
    return VERDICT_WORDS[verdict]


def _loss_range(entry: Mapping) -> str:
    lo, hi = (entry.get("loss_range") or [None, None])[:2]
    return f"{significant(lo)}–{significant(hi)}"


def _slice_words(entry: Mapping) -> str:
    fit_slice = entry.get("slice") or {}
    if "data_size" in fit_slice:
        return f"D = {compact(fit_slice['data_size'])}"
    if "target_params" in fit_slice:
        return f"N = {compact(fit_slice['target_params'])}"
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


def _stated(entries: Sequence[Mapping]) -> list[Mapping]:
    """The ratios whose interval supports a statement: a direction or no detectable difference."""
    return [e for e in entries if e.get("verdict") in ("direction", "no_difference")]


def _n_words(entry: Mapping) -> str:
    return N_WORDS.get(str(entry.get("n")), "parameters")


def _geomean_words(entry: Mapping) -> str:
    """``"1.6× (95% CI 1.2–2.3)"``: the geometric mean over the loss range, with its interval."""
    level = float(entry.get("level") or 0.95)
    return f"{_times(entry.get('geomean'))} ({_ci(entry, 'geomean', level)})"


def _parameter_sentence(entry: Mapping) -> str:
    a, b, metric = entry.get("a"), entry.get("b"), set_name(entry.get("metric"))
    where = (
        f"Under {str(entry.get('paradigm')).upper()} pre-training at {_slice_words(entry)} "
        f"(N = {_n_words(entry)})"
    )
    tail = f"over {metric} probe losses {_loss_range(entry)}"
    if entry.get("verdict") == "no_difference":
        return (
            f"{where}, {b} and {a} models show no detectable difference in the parameters they "
            f"need for the same {metric} probe loss: {b}/{a} = {_geomean_words(entry)} {tail}."
        )
    return (
        f"{where}, {b} models need {entry.get('direction')} parameters than {a} models for the "
        f"same {metric} probe loss: {_geomean_words(entry)} as many on average, "
        f"{_times(entry.get('min'))}–{_times(entry.get('max'))} {tail}."
    )


def _data_sentence(entry: Mapping) -> str:
    a, b = str(entry.get("a")).upper(), str(entry.get("b")).upper()
    metric = set_name(entry.get("metric"))
    where = f"For {entry.get('family')} models at {_slice_words(entry)}"
    tail = f"over {metric} probe losses {_loss_range(entry)}"
    if entry.get("verdict") == "no_difference":
        return (
            f"{where}, {b} and {a} pre-training show no detectable difference in the records "
            f"they need for the same {metric} probe loss: {b}/{a} = {_geomean_words(entry)} "
            f"{tail}."
        )
    return (
        f"{where}, {b} pre-training needs {entry.get('direction')} pre-training records than {a} "
        f"for the same {metric} probe loss: {_geomean_words(entry)} as many on average, "
        f"{_times(entry.get('min'))}–{_times(entry.get('max'))} {tail}."
    )


def efficiency_findings(efficiency: Mapping) -> list[str]:
    """One sentence per parameter- and data-efficiency comparison whose interval supports a
    statement (a direction, or no detectable difference), at its largest such slice (the table
    lists every slice). Transfer efficiency is stated by :func:`transfer_findings`."""
    sentences = []
    parameter, data = (efficiency.get(kind) or [] for kind in ("parameter", "data"))
    keys = ("n", "paradigm", "a", "b", "metric")
    sentences += [_parameter_sentence(e) for e in _largest_slice(_stated(parameter), keys)]
    keys = ("family", "a", "b", "metric")
    sentences += [_data_sentence(e) for e in _largest_slice(_stated(data), keys)]
    return sentences


def transfer_findings(efficiency: Mapping) -> list[str]:
    """One sentence per transfer-efficiency entry whose interval supports a statement
    (:func:`ecgscale.report.tasks.transfer_sentence`)."""
    return [transfer_sentence(e) for e in _stated(efficiency.get("transfer") or [])]


def ratio_gaps(efficiency: Mapping) -> list[tuple[str, str, str]]:
    """``(kind, what, why)`` for every efficiency ratio the runs do not determine."""
    rows = []
    for kind in ("parameter", "data", "transfer"):
        for e in efficiency.get(kind) or []:
            if e.get("verdict") != "not_determined":
                continue
            if kind == "transfer":
                what = f"D_E(SSL) / D_E(SL), task {e.get('task')} ({e.get('method')})"
                lo, hi = (e.get("median_ci") or [None, None])[:2]
            else:
                condition = e.get("paradigm") if kind == "parameter" else e.get("family")
                what = (
                    f"{e.get('quantity')}({e.get('b')}) / {e.get('quantity')}({e.get('a')}), "
                    f"{condition}, {set_name(e.get('metric'))} probe loss, {_slice_words(e)}"
                )
                if kind == "parameter":
                    what += f", N = {_n_words(e)}"
                lo, hi = e.get("geomean_lo"), e.get("geomean_hi")
            why = str(e.get("reason") or "") or (
                f"the {LEVEL_WORDS} interval of the geometric mean, [{significant(lo)}, "
                f"{significant(hi)}], is open-ended, undefined or wider than {MAX_SPREAD:g}×"
            )
            rows.append((KIND_TITLES[kind], what, why))
    return rows


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
                    _n_words(e) if kind == "parameter" else MISSING,
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
                "D_E(SSL) / D_E(SL), median",
                f"{e.get('task')} / {e.get('method')}",
                str(e.get("task")),
                f"D_F = {significant(d_f[0])}–{significant(d_f[1])}" if d_f else MISSING,
                MISSING,
                _loss_range(e),
                bounded_ratio(e.get("min_bounds")),
                bounded_ratio(e.get("max_bounds")),
                f"{bounded_ratio(e.get('median_bounds'))} {interval_text(e.get('median_ci'))}",
                _verdict(e),
                f"{e.get('n_pairs', 0)} pairs, {e.get('n_right_censored', 0)} at ≥, "
                f"{e.get('n_left_censored', 0)} at ≤ the from-scratch range",
            ]
        )
    headers = ["kind", "ratio", "condition", "loss on", "slice", "N counts", "loss range"]
    headers += ["min", "max", "geometric mean", "stated", "curves"]
    caption = (
        "Efficiency ratios at equal loss (above 1: the numerator needs more), each summarised "
        "over the losses both curves were observed at, with 95% bootstrap intervals in brackets "
        "(transfer: over the matched pairs). Stated: a direction when the interval of the "
        "geometric mean excludes 1, no detectable difference when it contains 1; not "
        f"determined when it is open-ended or wider than a factor {MAX_SPREAD:g}."
    )
    return {"caption": caption, "headers": headers, "rows": rows}


EXPONENT_SYMBOLS = {"alpha": "α", "beta": "β", "kappa": "κ"}


def _cell(entry: Mapping) -> str:
    return f"{entry.get('family')} / {str(entry.get('paradigm')).upper()}"


def _exponent_text(entry: Mapping, name: str, n_convention: str = "") -> str:
    """``"α = 0.21 [0.13, 0.35]"`` for a determined exponent (N's convention after α)."""
    value = (entry.get("params") or {}).get(name)
    lo, hi = (entry.get("intervals") or {}).get(name) or (None, None)
    text = f"{EXPONENT_SYMBOLS.get(name, name)} = {significant(value)}"
    text += f" [{significant(lo)}, {significant(hi)}]"
    if name == "alpha" and n_convention:
        text += f" (N = {N_WORDS.get(n_convention, n_convention)})"
    return text


def _verdict_of(entry: Mapping, name: str) -> Mapping:
    return (entry.get("verdicts") or {}).get(name) or {"status": "not_determined", "reason": ""}


def exponent_findings(joint: Sequence[Mapping], n_convention: str) -> list[str]:
    """One sentence per cell and loss set whose joint law L(N, D) has a determined exponent;
    an undetermined exponent is named without a number (its reason is in the gaps table)."""
    sentences = []
    for entry in joint:
        names = [n for n in ("alpha", "beta") if n in (entry.get("verdicts") or {})]
        stated = [n for n in names if _verdict_of(entry, n).get("status") == "determined"]
        if not stated:
            continue
        parts = [_exponent_text(entry, n, n_convention) for n in stated]
        parts += [f"{EXPONENT_SYMBOLS[n]} not determined" for n in names if n not in stated]
        sentences.append(
            f"{_cell(entry)}, {set_name(entry.get('metric'))} probe loss: the joint law "
            f"L = E + A·N^−α + B·D^−β fitted to {entry.get('n_points')} runs gives "
            f"{' and '.join(parts)}."
        )
    return sentences


def exponent_gaps(laws: Sequence[Mapping], what: str) -> list[tuple[str, str, str]]:
    """``(kind, what, why)`` for every exponent of ``laws`` that is not determined."""
    rows = []
    for entry in laws:
        for name, verdict in (entry.get("verdicts") or {}).items():
            if verdict.get("status") == "determined":
                continue
            where = set_name(entry.get("eval_set") or entry.get("metric"))
            rows.append(
                (
                    "Exponent",
                    f"{EXPONENT_SYMBOLS.get(name, name)} of the {what}, {_cell(entry)}, {where}",
                    str(verdict.get("reason") or "not determined"),
                )
            )
    return rows


def headline_exponents(joint: Sequence[Mapping], n_convention: str) -> str:
    """The ID probe loss's joint-law exponents per cell for the summary: numbers only where
    determined, the other cells named as not determined."""
    stated, not_stated = [], []
    for entry in joint:
        if entry.get("metric") != "loss:id":
            continue
        parts = [
            _exponent_text(entry, n)
            for n in ("alpha", "beta")
            if _verdict_of(entry, n).get("status") == "determined"
        ]
        (stated if parts else not_stated).append(
            f"{_cell(entry)} {', '.join(parts)}" if parts else _cell(entry)
        )
    if not stated and not not_stated:
        return "No joint law of the ID probe loss was fitted."
    text = ""
    if stated:
        text = (
            "Determined exponents of the ID probe loss's joint law (N = "
            f"{N_WORDS.get(n_convention, n_convention)}): {'; '.join(stated)}."
        )
    if not_stated:
        text += (
            f" For {', '.join(not_stated)} these runs determine neither exponent (reasons in "
            "the table of what could not be determined)."
        )
    return text.strip()


BOTTLENECK_WORDS = {
    "data": "data-bottlenecked (doubling D lowers the loss more than doubling N)",
    "model": "model-bottlenecked (doubling N lowers the loss more than doubling D)",
    "both": "limited by both N and D about equally",
}


def _corner_at(corner: Mapping) -> str:
    return f"N = {compact(corner.get('n'))}, D = {compact(corner.get('d'))}"


def _corner_words(corner: Mapping) -> str:
    return (
        f"at {_corner_at(corner)}: g_D/g_N = {significant(corner.get('ratio'))} "
        f"[{significant(corner.get('ratio_lo'))}, {significant(corner.get('ratio_hi'))}]"
    )


def _grid_words(entry: Mapping, n_convention: str) -> str:
    n_lo, n_hi = entry.get("n_range") or (None, None)
    d_lo, d_hi = entry.get("d_range") or (None, None)
    return (
        f"N = {compact(n_lo)}–{compact(n_hi)} {N_WORDS.get(n_convention, '')}, "
        f"D = {compact(d_lo)}–{compact(d_hi)}"
    )


def bottleneck_findings(bottlenecks: Sequence[Mapping], n_convention: str) -> list[str]:
    """One sentence per cell and loss set with a corner whose interval decides its bottleneck:
    the whole grid's when all four agree, else each decided corner with its interval, naming
    the corners left undecided (which the report's list of gaps explains)."""
    sentences = []
    for entry in bottlenecks:
        verdict, corners = entry.get("verdict"), entry.get("corners") or []
        where = f"{_cell(entry)} on the {set_name(entry.get('metric'))} probe loss"
        if verdict in BOTTLENECK_WORDS:
            largest = next((c for c in corners if c.get("n_at") == c.get("d_at") == "max"), None)
            tail = f"; {_corner_words(largest)}" if largest else ""
            sentences.append(
                f"{where} is {BOTTLENECK_WORDS[verdict]} over the whole grid "
                f"({_grid_words(entry, n_convention)}){tail}."
            )
            continue
        decided = [c for c in corners if c.get("label") in BOTTLENECK_WORDS]
        if not decided:
            continue
        rest = [_corner_at(c) for c in corners if c.get("label") not in BOTTLENECK_WORDS]
        tail = f"; not determined at {' and '.join(rest)}" if rest else ""
        if verdict == "mixed" or len({c.get("label") for c in decided}) > 1:
            # decided corners of more than one kind, also where another gap (an exponent on a
            # bound) leaves the whole verdict undetermined: each corner with its own label
            parts = "; ".join(f"{c.get('label')} {_corner_words(c)}" for c in decided)
            sentences.append(f"{where} changes bottleneck across the grid: {parts}{tail}.")
        else:
            words = BOTTLENECK_WORDS[decided[0]["label"]]
            parts = "; ".join(_corner_words(c) for c in decided)
            sentences.append(
                f"{where} is {words} at {len(decided)} of the grid's {len(corners)} corners: "
                f"{parts}{tail}."
            )
    return sentences


def crossover_findings(crossovers: Sequence[Mapping], n_convention: str) -> list[str]:
    """One sentence per determined crossover inside the observed range (never extrapolated)."""
    sentences = []
    for entry in crossovers:
        if entry.get("verdict") != "crossover":
            continue
        axis = str(entry.get("axis"))
        fixed = (
            f"D = {compact(entry.get('at'))}"
            if axis == "n"
            else (f"N = {compact(entry.get('at'))} {N_WORDS.get(n_convention, '')}")
        )
        names = {"a": entry.get("a"), "b": entry.get("b")}
        lo, hi = entry.get("range") or (None, None)
        for c in entry.get("crossings") or []:
            if not c.get("determined"):
                continue
            winner = names.get(c.get("lower_after"))
            loser = names["b" if c.get("lower_after") == "a" else "a"]
            unit = "" if axis == "d" else f" {N_WORDS.get(n_convention, '')}"
            sentences.append(
                f"On the {set_name(entry.get('metric'))} probe loss at {fixed}, {winner} "
                f"overtakes {loser} at {axis.upper()} ≈ {compact(c.get('x'))}{unit} "
                f"(95% CI {compact(c.get('x_lo'))}–{compact(c.get('x_hi'))}), inside "
                f"the observed {compact(lo)}–{compact(hi)}."
            )
    return sentences


def winner_findings(winners: Sequence[Mapping]) -> list[str]:
    """Per loss set: which cell has the lowest loss at how many grid points, and how clearly."""
    sentences = []
    by_set: dict[str, list[Mapping]] = {}
    for row in winners:
        by_set.setdefault(str(row.get("metric")), []).append(row)
    for metric, rows in by_set.items():
        counts: dict[str, list[int]] = {}
        for row in rows:
            tally = counts.setdefault(str(row.get("winner")), [0, 0])
            tally[0] += 1
            tally[1] += row.get("status") == "clear"
        parts = [
            f"{cell} at {won} of {len(rows)} (clearly at {clear})"
            for cell, (won, clear) in sorted(counts.items(), key=lambda kv: -kv[1][0])
        ]
        sentences.append(
            f"Lowest {set_name(metric)} probe loss per grid point (N, D): {'; '.join(parts)} "
            "(clearly: its 95% interval lies below every other cell's)."
        )
    return sentences


def comparison_gaps(comparisons: Mapping) -> list[tuple[str, str, str]]:
    """``(kind, what, why)`` for bottlenecks and crossovers the runs do not determine."""
    rows = []
    for entry in comparisons.get("bottlenecks") or []:
        if entry.get("verdict") == "not determined":
            what = f"{_cell(entry)}, {set_name(entry.get('metric'))}"
            rows.append(("Bottleneck", what, str(entry.get("reason") or "not determined")))
    for entry in comparisons.get("crossovers") or []:
        if entry.get("verdict") == "not determined":
            what = (
                f"{entry.get('a')} vs {entry.get('b')}, {set_name(entry.get('metric'))}, along "
                f"{str(entry.get('axis')).upper()}"
            )
            rows.append(("Crossover", what, str(entry.get("reason") or "not determined")))
    return rows


def crossover_table(crossovers: Sequence[Mapping]) -> dict:
    """Every pair of cells along N and D: who is lower at each end, crossings, extrapolations."""
    rows = []
    for e in crossovers:
        names = {"a": e.get("a"), "b": e.get("b"), "equal": "equal"}
        lo, hi = e.get("range") or (None, None)
        crossings = "; ".join(
            f"{compact(c.get('x'))} [{compact(c.get('x_lo'))}, "
            f"{compact(c.get('x_hi'))}] → {names.get(c.get('lower_after'))} lower"
            + ("" if c.get("determined") else " (not determined)")
            for c in e.get("crossings") or []
        )
        outside = "; ".join(
            f"{compact(c.get('extrapolated_x'))} ({c.get('side')} the range)"
            for c in e.get("extrapolated") or []
        )
        fixed = "D" if e.get("axis") == "n" else "N"
        rows.append(
            [
                set_name(e.get("metric")),
                f"{e.get('a')} vs {e.get('b')}",
                f"along {str(e.get('axis')).upper()} at {fixed} = {compact(e.get('at'))}",
                f"{compact(lo)}–{compact(hi)}",
                str(names.get(e.get("lower_at_lo"))),
                str(names.get(e.get("lower_at_hi"))),
                crossings or "none",
                outside or "none",
                str(e.get("verdict")),
            ]
        )
    headers = ["loss on", "cells", "where", "observed range", "lower at start"]
    headers += ["lower at end", "crossings inside (95% CI)", "extrapolated crossings", "verdict"]
    caption = (
        "Crossovers of the fitted joint laws of two cells. Crossings outside the observed range "
        "are extrapolations, shown for reference and never stated as findings."
    )
    return {"caption": caption, "headers": headers, "rows": rows}


def bottleneck_table(bottlenecks: Sequence[Mapping]) -> dict:
    """Per cell and loss set: the gain ratio g_D / g_N at the grid's four corners."""
    rows = []
    for e in bottlenecks:
        corners = {(c.get("n_at"), c.get("d_at")): c for c in e.get("corners") or []}
        cells = []
        for key in (("min", "min"), ("min", "max"), ("max", "min"), ("max", "max")):
            c = corners.get(key) or {}
            cells.append(
                f"{significant(c.get('ratio'))} [{significant(c.get('ratio_lo'))}, "
                f"{significant(c.get('ratio_hi'))}] {c.get('label', '')}"
            )
        rows.append([_cell(e), set_name(e.get("metric")), *cells, str(e.get("verdict"))])
    headers = ["cell", "loss on", "small N, small D", "small N, large D", "large N, small D"]
    headers += ["large N, large D", "verdict"]
    caption = (
        "Bottlenecks: g_D / g_N, the loss gained by doubling D over that gained by doubling N "
        "(joint law, 95% bootstrap intervals), at the corners of the grid; above 1: data-limited."
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
                    compact(inputs.get("n")),
                    compact(inputs.get("d")),
                    significant(point.get("truth")),
                    significant(point.get("prediction")),
                    f"[{significant(interval[0])}, {significant(interval[1])}]",
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
