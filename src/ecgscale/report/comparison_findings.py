"""Report pieces for the comparisons of cells, read from ``fits.json``'s ``comparisons``:
bottlenecks (does N or D limit a cell), winners (the lowest loss per grid point) and crossovers
of two cells' fitted laws, stated as sentences where the intervals support them, with their
tables and the rows of what the runs could not decide."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from ecgscale.numformat import compact, significant
from ecgscale.report.findings import cell_name, set_name
from ecgscale.spec import N_WORDS

BOTTLENECK_WORDS = {
    "data": "data-bottlenecked (doubling D lowers the loss more than doubling N)",
    "model": "model-bottlenecked (doubling N lowers the loss more than doubling D)",
    "both": "limited by both N and D (doubling either lowers the loss; which lowers it more is "
    "not resolved)",
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
        where = f"{cell_name(entry)} on the {set_name(entry.get('metric'))} probe loss"
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
            what = f"{cell_name(entry)}, {set_name(entry.get('metric'))}"
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
                _runs_lower(e.get("runs_at_lo"), names),
                str(names.get(e.get("lower_at_hi"))),
                _runs_lower(e.get("runs_at_hi"), names),
                crossings or "none",
                outside or "none",
                str(e.get("verdict")),
            ]
        )
    headers = ["loss on", "cells", "where", "observed range", "laws: lower at start"]
    headers += ["runs: lower at start", "laws: lower at end", "runs: lower at end"]
    headers += ["crossings inside (95% CI)", "extrapolated crossings", "verdict"]
    caption = (
        "Crossovers of the fitted joint laws of two cells. Crossings outside the observed range "
        "are extrapolations, shown for reference and never stated as findings. Beside the laws, "
        "the runs at each end of the range (each cell's grid point there; clearly: the two 95% "
        "intervals do not overlap); where the runs clearly order the cells against the laws, "
        "the laws do not describe the comparison and its verdict is not determined."
    )
    return {"caption": caption, "headers": headers, "rows": rows}


def _runs_lower(runs: Mapping | None, names: Mapping) -> str:
    """Which cell the runs put lower at one end of a crossover's range, and how clearly."""
    if not runs:
        return "—"
    if runs.get("lower") == "equal":
        return "equal"
    return f"{names.get(runs.get('lower'))} ({'clearly' if runs.get('clear') else 'overlapping'})"


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
        rows.append([cell_name(e), set_name(e.get("metric")), *cells, str(e.get("verdict"))])
    headers = ["cell", "loss on", "small N, small D", "small N, large D", "large N, small D"]
    headers += ["large N, large D", "verdict"]
    caption = (
        "Bottlenecks: g_D / g_N, the loss gained by doubling D over that gained by doubling N "
        "(joint law, 95% bootstrap intervals), at the corners of the grid. data: the interval "
        "lies above 1 (data-limited); model: below 1; both: it holds 1 and each doubling "
        "detectably lowers the loss; not determined otherwise, or where the law is shaped by "
        "the fitter's box."
    )
    return {"caption": caption, "headers": headers, "rows": rows}
