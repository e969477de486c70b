"""ecgscale.numformat, the one number formatter: each function gives what the formatter it
replaced gave (copied below as it was), run-id sizes above all, since run ids are stable."""

from __future__ import annotations

import ast
import math
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import ecgscale.numformat
from ecgscale.numformat import (
    MISSING,
    amount,
    compact,
    compact_caps,
    duration,
    run_size,
    significant,
)


def old_short(n: int) -> str:
    """study/runs.py ``_short``: sizes in run ids."""
    for unit, div in (("M", 1_000_000), ("k", 1_000)):
        if n >= div and n % (div // 10) == 0:
            return f"{n / div:g}{unit}"
    return str(n)


def old_compact_count(value: object) -> str:
    """report/figures.py ``compact_count``."""
    number = float(value)
    if not np.isfinite(number):
        return "?"
    for scale, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(number) >= scale:
            return f"{number / scale:.3g}{suffix}"
    return f"{number:.3g}"


def old_human(x: float) -> str:
    """study/plan.py ``human``."""
    for unit, size in (("E", 1e18), ("P", 1e15), ("T", 1e12), ("G", 1e9), ("M", 1e6), ("K", 1e3)):
        if abs(x) >= size:
            return f"{x / size:.3g}{unit}"
    return f"{x:.3g}"


def old_card_count(n: int) -> str:
    """card.py ``_count``."""
    for unit, size in (("G", 1e9), ("M", 1e6), ("K", 1e3)):
        if n >= size:
            return f"{n / size:.3g}{unit}"
    return str(n)


def old_format_number(value: object) -> str:
    """report/tasks.py ``format_number``."""
    try:
        number = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return "—"
    if np.isnan(number):
        return "—"
    if np.isinf(number):
        return "∞"
    if number.is_integer() and 1000 <= abs(number) < 1e9:
        return f"{int(number):,}"
    return f"{number:.3g}"


def old_plan_duration(hours: float) -> str:
    """study/plan.py ``duration``."""
    seconds = hours * 3600
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 90 * 60:
        return f"{seconds / 60:.1f} min"
    if hours < 48:
        return f"{hours:.1f} h"
    return f"{hours / 24:.1f} days"


ROUND_SIZES = sorted(
    {m * 10**e for m in (1, 2, 3, 5, 8, 10, 12, 15, 25, 64, 125, 333) for e in range(0, 10)}
    | {0, 1, 7, 50, 99, 100, 999, 1000, 1001, 1050, 1100, 12345, 20480, 99_999, 100_000}
    | {999_999, 1_000_000, 1_050_000, 1_100_000, 1_234_567, 2**20, 2**24, 10**12 + 10**11}
)


@pytest.mark.parametrize("n", ROUND_SIZES)
def test_run_sizes_are_unchanged(n):
    assert run_size(n) == old_short(n)


@given(st.integers(min_value=0, max_value=10**13))
def test_run_sizes_are_unchanged_for_any_size(n):
    assert run_size(n) == old_short(n)


def test_run_sizes_of_known_ids():
    assert [run_size(n) for n in (500, 20_000, 200_000, 1_500_000, 12_345, 2_000_000_000)] == [
        "500",
        "20k",
        "200k",
        "1.5M",
        "12345",
        "2000M",
    ]


@given(st.floats(min_value=-1e12, max_value=1e12, exclude_min=True, exclude_max=True))
def test_compact_is_the_reports_compact_count_below_a_trillion(x):
    assert compact(x) == old_compact_count(x)


@given(st.floats(min_value=-1e21, max_value=1e21, allow_nan=False, allow_infinity=False))
def test_compact_caps_is_the_plans_human(x):
    assert compact_caps(x) == old_human(x)


@given(st.integers(min_value=0, max_value=10**12 - 1))
def test_compact_caps_is_the_model_cards_count(n):
    assert compact_caps(n) == old_card_count(n)


def test_compact_examples_and_missing_values():
    assert [compact(v) for v in (30_000, 1_234_567, 2.5e14, 100_000, 50, 0.5)] == [
        "30k",
        "1.23M",
        "250T",
        "100k",
        "50",
        "0.5",
    ]
    assert [compact_caps(v) for v in (20_000, 20_480, 200_000_000)] == ["20K", "20.5K", "200M"]
    for missing in (None, float("nan"), float("inf"), "n/a"):
        assert compact(missing) == MISSING


@given(
    st.one_of(
        st.floats(allow_nan=True, allow_infinity=False),
        st.integers(min_value=-(10**15), max_value=10**15),
    )
)
def test_significant_is_the_reports_format_number(x):
    assert significant(x) == old_format_number(x)


def test_significant_examples():
    assert significant(2.59e37) == "2.59e+37"
    assert significant(12345.0) == "12,345"
    assert significant(0.000123) == "0.000123"
    assert significant(0.81234, 4) == "0.8123"
    assert [significant(v) for v in (float("inf"), float("-inf"), None, "x")] == [
        "∞",
        "-∞",
        MISSING,
        MISSING,
    ]


@given(st.floats(min_value=0, max_value=1e6, allow_nan=False))
def test_duration_is_the_plans_duration(hours):
    assert duration(hours) == old_plan_duration(hours)


def test_duration_and_amount_examples():
    assert [duration(h) for h in (-1.0, 45 / 3600, 0.2, 3.2, 60)] == [
        "0 s",
        "45 s",
        "12.0 min",
        "3.2 h",
        "2.5 days",
    ]
    assert [amount(x) for x in (12_345.4, 12.3, 0.0123, 0.0, 0.0001)] == [
        "12,345",
        "12.3",
        "0.0123",
        "0",
        "<0.001",
    ]


def test_numformat_imports_nothing_from_ecgscale():
    tree = ast.parse(Path(ecgscale.numformat.__file__).read_text())
    imported = [
        name
        for node in ast.walk(tree)
        if isinstance(node, (ast.Import, ast.ImportFrom))
        for name in (
            [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module or ""]
        )
    ]
    assert not [m for m in imported if m.split(".")[0] == "ecgscale"], imported
    assert math.isnan(ecgscale.numformat.as_float("x"))
