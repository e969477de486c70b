"""Numbers as text, in the few forms the project prints: run-id sizes, compact counts,
significant digits, amounts and durations. Imports nothing from ecgscale.

- :func:`run_size`: the size in a run id (``n20k``, ``d1.5M``). Run ids are stable: never
  change what it returns.
- :func:`compact`: a count with an SI suffix (``30k``, ``1.23M``, ``250T``): sizes in figures
  and reports; :func:`compact_caps` the same with ``K`` (``20K``): the command line, plans and
  model cards.
- :func:`significant`: a value to a few significant digits, whole numbers in full
  (``0.812``, ``12,345``, ``∞``): values in reports.
- :func:`amount`: a positive amount without exponents (``12,345``, ``0.0123``, ``<0.001``).
- :func:`duration`: hours as s, min, h or days.
"""

from __future__ import annotations

import math

MISSING = "—"
"""The text of a missing value (None, NaN, or not a number)."""

SI_UNITS = (("E", 1e18), ("P", 1e15), ("T", 1e12), ("G", 1e9), ("M", 1e6), ("k", 1e3))


def as_float(value: object) -> float:
    """``float(value)`` (``"inf"`` as JSON files write it included), or NaN when that is not
    possible."""
    try:
        return float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return math.nan


def run_size(n: int) -> str:
    """A size in a run id: 20000 -> ``20k``, 1500000 -> ``1.5M``, 12345 -> ``12345`` (k or M
    only where one decimal says it exactly; else the whole number)."""
    for unit, div in (("M", 1_000_000), ("k", 1_000)):
        if n >= div and n % (div // 10) == 0:
            return f"{n / div:g}{unit}"
    return str(n)


def compact(value: object, digits: int = 3, *, kilo: str = "k") -> str:
    """A count with an SI suffix to ``digits`` significant digits: 30000 -> ``30k``, 1234567 ->
    ``1.23M``, 2.5e14 -> ``250T``; below 1000 without one (``50``, ``0.5``); :data:`MISSING`
    for what is not a finite number. ``kilo`` is the thousands suffix (see :func:`compact_caps`)."""
    number = as_float(value)
    if not math.isfinite(number):
        return MISSING
    for unit, size in SI_UNITS:
        if abs(number) >= size:
            return f"{number / size:.{digits}g}{kilo if unit == 'k' else unit}"
    return f"{number:.{digits}g}"


def compact_caps(value: object, digits: int = 3) -> str:
    """:func:`compact` with a capital K, as the command line, plans and model cards write
    parameter counts and FLOPs: ``20K``, ``1.5M``, ``250T``."""
    return compact(value, digits, kilo="K")


def significant(value: object, digits: int = 3) -> str:
    """``value`` to ``digits`` significant digits, whole numbers from 1,000 up to 1e9 in full
    with thousands separators (``12,345``), ``∞`` and ``-∞``; :data:`MISSING` for NaN, None
    or what is not a number."""
    number = as_float(value)
    if math.isnan(number):
        return MISSING
    if math.isinf(number):
        return "∞" if number > 0 else "-∞"
    if number.is_integer() and 1000 <= abs(number) < 1e9:
        return f"{int(number):,}"
    return f"{number:.{digits}g}"


def amount(x: float) -> str:
    """A positive amount to about 3 figures, without exponents: 12,345, 12.3, 0.0123."""
    if x >= 100:
        return f"{x:,.0f}"
    if x >= 0.001 or x == 0:
        return f"{x:.3g}"
    return "<0.001"


def duration(hours: float) -> str:
    """Hours (at least 0) as s, min, h or days: ``45 s``, ``12.5 min``, ``3.2 h``,
    ``2.5 days``."""
    hours = max(0.0, float(hours))
    seconds = hours * 3600
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 90 * 60:
        return f"{seconds / 60:.1f} min"
    if hours < 48:
        return f"{hours:.1f} h"
    return f"{hours / 24:.1f} days"
