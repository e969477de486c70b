"""Report pieces for what the fitted laws imply, read from ``fits.json``: the findings the
intervals support (exponents, efficiency ratios, backtests) stated as sentences, and the rows of
what the runs could not determine, with the reason (see :mod:`ecgscale.laws.verdicts`)."""

from __future__ import annotations

import math
import statistics
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence

from ecgscale.laws.verdicts import MAX_SPREAD
from ecgscale.numformat import MISSING, as_float, compact, significant
from ecgscale.report.tasks import bounded_ratio, interval_text, transfer_sentence, with_interval
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
    "varies": "depends on the loss",
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
    if verdict == "varies":
        return f"{VERDICT_WORDS[verdict]}: {_spans_words(entry)}"
    return VERDICT_WORDS[verdict]


def _spans(entry: Mapping, side: str) -> str:
    """``"0.12–0.135 and 0.14"``: the losses where the ratio's interval lies on one side of 1."""
    spans = [[significant(x) for x in span] for span in entry.get(f"{side}_at") or []]
    return " and ".join(a if a == b else f"{a}–{b}" for a, b in spans)


def _spans_words(entry: Mapping) -> str:
    """``"more at losses 0.12–0.13, fewer at 0.14–0.15"``, and where neither holds."""
    parts = [f"more at losses {_spans(entry, 'more')}"] if entry.get("more_at") else []
    if entry.get("fewer_at"):
        parts.append(f"fewer at {'losses ' * (not parts)}{_spans(entry, 'fewer')}")
    spans = [*(entry.get("more_at") or []), *(entry.get("fewer_at") or [])]
    covered = sum(any(a <= x <= b for a, b in spans) for x in entry.get("losses") or [])
    if covered < len(entry.get("losses") or []):
        parts.append("no detectable difference at the other losses compared")
    return ", ".join(parts)


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
    return [e for e in entries if e.get("verdict") in ("direction", "no_difference", "varies")]


def _n_words(entry: Mapping) -> str:
    return N_WORDS.get(str(entry.get("n")), "parameters")


def _geomean_words(entry: Mapping) -> str:
    """``"1.6× (95% CI 1.2–2.3)"``: the geometric mean over the loss range, with its interval."""
    level = float(entry.get("level") or 0.95)
    return f"{_times(entry.get('geomean'))} ({_ci(entry, 'geomean', level)})"


def _range_words(entry: Mapping) -> str:
    """``"95% intervals at each loss; 0.54×–2.5×"``: what a varying ratio's parts rest on."""
    level = float(entry.get("level") or 0.95)
    return (
        f"{level:.0%} intervals at each loss; {_times(entry.get('min'))}–{_times(entry.get('max'))}"
    )


def _parameter_sentence(entry: Mapping) -> str:
    a, b, metric = entry.get("a"), entry.get("b"), set_name(entry.get("metric"))
    where = (
        f"Under {str(entry.get('paradigm')).upper()} pre-training at {_slice_words(entry)} "
        f"(N = {_n_words(entry)})"
    )
    tail = f"over {metric} probe losses {_loss_range(entry)}"
    if entry.get("verdict") == "varies":
        return (
            f"{where}, whether {b} models need more or fewer parameters than {a} models for the "
            f"same {metric} probe loss depends on the loss: "
            f"{_spans_words(entry)} ({_range_words(entry)} {tail})."
        )
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
    if entry.get("verdict") == "varies":
        return (
            f"{where}, whether {b} pre-training needs more or fewer pre-training records than "
            f"{a} for the same {metric} probe loss depends on the loss: "
            f"{_spans_words(entry)} ({_range_words(entry)} {tail})."
        )
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
    headers += ["min", "max", "geometric mean (transfer: median)", "stated", "curves"]
    caption = (
        "Efficiency ratios at equal loss (above 1: the numerator needs more), each summarised "
        "over the losses both curves were observed at, with 95% bootstrap intervals in brackets "
        "(transfer: over the matched pairs). Stated: a direction when the interval of the "
        "geometric mean excludes 1 and no loss's interval lies on the other side of 1, no "
        "detectable difference when it contains 1 and so does every loss's; where the "
        "intervals at single losses disagree with the geometric mean's, the losses where the "
        "ratio lies above or below 1 (depends on the loss); not determined when it is "
        f"open-ended or wider than a factor {MAX_SPREAD:g}. The findings give each comparison "
        "at its largest slice with a statement; the other slices are only here."
    )
    return {"caption": caption, "headers": headers, "rows": rows}


EXPONENT_SYMBOLS = {"alpha": "α", "beta": "β", "kappa": "κ"}


def cell_name(entry: Mapping) -> str:
    """``"resnet / SSL"``."""
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
            f"{cell_name(entry)}, {set_name(entry.get('metric'))} probe loss: the joint law "
            f"L = E + A·N^−α + B·D^−β fitted to {entry.get('n_points')} runs gives "
            f"{' and '.join(parts)}."
        )
    return sentences


def loss_to_loss_findings(laws: Sequence[Mapping]) -> list[str]:
    """One sentence per loss-to-loss law (an OOD set's probe loss against the ID one) whose κ is
    determined; an E_x pinned at the lowest ID loss observed (its bound) is said, since the
    law's curvature then rests on the best run alone."""
    sentences = []
    for entry in laws:
        if _verdict_of(entry, "kappa").get("status") != "determined":
            continue
        params = entry.get("params") or {}
        pinned = "E_x" in (entry.get("at_bound") or []) and float(params.get("E_x", 0)) > 0
        note = (
            f" (E_x = {significant(params.get('E_x'))} is the lowest ID loss observed, its bound)"
        )
        sentences.append(
            f"{cell_name(entry)}, {set_name(entry.get('metric'))} probe loss against the ID one: "
            f"the law L_OOD = K·(L_ID − E_x)^κ + E_y fitted to {entry.get('n_points')} runs gives "
            f"{_exponent_text(entry, 'kappa')}{note if pinned else ''}."
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
            symbol = EXPONENT_SYMBOLS.get(name, name)
            what_cell = f"{symbol} of the {what}, {cell_name(entry)}, {where}"
            rows.append(("Exponent", what_cell, str(verdict.get("reason") or "not determined")))
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
            f"{cell_name(entry)} {', '.join(parts)}" if parts else cell_name(entry)
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
    ends = [[as_float(v) for v in (p.get("interval") or [])[:2]] for p in points]
    spans = [e[1] / e[0] for e in ends if len(e) == 2 and 0 < e[0] <= e[1] < math.inf]
    width = (
        f" (an interval's upper end is a median {statistics.median(spans):.2g}× its lower one: "
        "inside a wide one is a weak test)"
        if spans
        else ""
    )
    runs = {
        (bt.get("family"), bt.get("paradigm"), *sorted((p.get("inputs") or {}).items()))
        for bt in backtests
        for p in bt.get("points") or []
    }
    sets = len({bt.get("metric") for bt in backtests})
    dof = sorted({(bt.get("fit") or {}).get("dof") for bt in backtests} - {None})
    spread = f"{dof[0]}–{dof[-1]}" if len(dof) > 1 else str(dof[0]) if dof else ""
    fitted = f", each law with {spread} degree(s) of freedom left," if dof else ""
    return [
        f"Fitted without the largest models, the laws predicted {len(points)} held-out losses "
        f"({len(runs)} held-out run(s) on {sets} loss set(s)){fitted} with a mean absolute "
        f"error of {100 * sum(errors) / len(errors):.1f}% (at most {100 * max(errors):.1f}%); "
        f"{inside} of {len(points)} lie inside their 95% prediction interval{width}."
    ]


def best_run_sentence(scored: Sequence[Mapping], label: str) -> str:
    """Which run reached the lowest loss (``scored``: one row per run with ``family``,
    ``paradigm``, ``n_params``, ``data_size``, ``loss``, ``loss_lo``, ``loss_hi``, ``auroc``),
    and whether it is clearly the lowest: its 95% interval below every other run's, else how
    many runs' intervals overlap it and which is next."""
    if not scored:
        return f"No {label} is available."
    ranked = sorted(scored, key=lambda r: as_float(r.get("loss")))
    best, rest = ranked[0], ranked[1:]

    def where(r: Mapping, words: str = " (total parameters)") -> str:
        return (
            f"{r.get('family')} / {r.get('paradigm')} at N = {compact(r.get('n_params'))}{words}, "
            f"D = {compact(r.get('data_size'))}"
        )

    def value(r: Mapping) -> str:
        return with_interval(r.get("loss"), r.get("loss_lo"), r.get("loss_hi"), digits=4)

    sentence = (
        f"The lowest {label} ({value(best)}, AUROC {significant(best.get('auroc'), 4)}) was "
        f"reached by {where(best)}"
    )
    top = as_float(best.get("loss_hi"))
    overlapping = [r for r in rest if not as_float(r.get("loss_lo")) > top]  # NaN: overlaps
    if not rest or not math.isfinite(top + as_float(best.get("loss_lo"))):
        return sentence + "."
    if not overlapping:
        return sentence + ", clearly: its 95% interval lies below every other run's."
    return (
        f"{sentence}, not clearly: the 95% intervals of {len(overlapping)} other run(s) overlap "
        f"its (the next lowest: {where(rest[0], '')}, {value(rest[0])})."
    )


def precision_note(precisions: Iterable[object]) -> list[str]:
    """A warning when the runs trained in more than one precision (``train.precision: auto``
    picks by the machine, and the run ids do not say which), else nothing."""
    counts = Counter(str(p) for p in precisions if isinstance(p, str) and p)
    if len(counts) < 2:
        return []
    parts = ", ".join(f"{p}: {n}" for p, n in sorted(counts.items()))
    return [
        f"The runs trained in more than one precision ({parts} runs; train.precision: auto "
        "picks bf16 or fp32 by the machine, and a run id does not say which): their losses "
        "differ by the kernels' rounding, so laws fitted across them mix the two."
    ]
