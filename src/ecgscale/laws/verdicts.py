"""What a fitted number may be stated as: the verdicts that findings are made of.

An **exponent** (α, β, κ …) is *determined* only when its fit and its 95% interval stay clear
of the fitter's box: not on a bound or within :data:`NEAR_BOUND` of one (a law pushed against
its box says the data do not constrain it, e.g. α = 5 with an amplitude of 1e19), its interval
neither reaches the lower bound (for α, β: contains 0, "no detectable scaling") nor the upper
one (open-ended), its amplitude not on a bound either (the term is degenerate then), and an
interval exists at all (it needs bootstrap refits and two degrees of freedom).

A **ratio** (efficiency N_B/N_A, D_B/D_A, transfer D_E(SSL)/D_E(SL)) has one of three
verdicts from its 95% interval: ``"direction"`` when the interval excludes 1 (B needs more,
or fewer, than A), ``"no_difference"`` when it contains 1 and spans at most
:data:`MAX_SPREAD` (no detectable difference over the losses compared), and
``"not_determined"`` when it is missing, open-ended, not positive or wider than that. Where
the data are censored (transfer efficiency beyond the from-scratch range), an interval open on
the side away from 1 still gives a direction, stated as a bound ("at least 1.4×").

A ratio of two fitted curves varies with the loss, so its geometric mean over the losses
compared does not speak for every loss: :func:`curve_ratio_verdict` keeps the geometric mean's
verdict only where the ratio's interval at each loss agrees with it, and otherwise gives a
fourth verdict, ``"varies"``: B needs more than A at some losses, fewer at others, or differs
from A at some losses only (the spans where the interval at each loss excludes 1 are named).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

NEAR_BOUND = 0.01
"""An exponent within this share of its box's width from a bound counts as on it."""
MAX_SPREAD = 100.0
"""A ratio whose interval spans more than this factor (hi / lo) is not determined."""
AMPLITUDES = {
    "power": {"alpha": "A"},
    "joint": {"alpha": "A", "beta": "B"},
    "loss_to_loss": {"kappa": "K"},
}
"""The amplitude whose term an exponent scales, per form (a bound amplitude degenerates it)."""
RATIO_VERDICTS = ("direction", "no_difference", "varies", "not_determined")


def _number(value: object) -> float | None:
    try:
        number = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def exponent_verdict(fit: Mapping[str, Any], name: str) -> dict[str, str]:
    """``{"status": "determined" | "not_determined", "reason": …}`` for exponent ``name`` of a
    fit given as :meth:`ecgscale.laws.FitResult.to_dict` (as in ``fits.json``)."""
    value = _number((fit.get("params") or {}).get(name))
    bounds = (fit.get("exponent_bounds") or {}).get(name)
    at_bound = set(fit.get("at_bound") or ())
    amplitude = AMPLITUDES.get(str(fit.get("form")), {}).get(name)
    interval = (fit.get("intervals") or {}).get(name)

    def undetermined(reason: str) -> dict[str, str]:
        return {"status": "not_determined", "reason": reason}

    if value is None:
        return undetermined("no fitted value")
    if bounds is None:
        return undetermined("the fit does not record the fitter's bounds")
    lo, hi = (float(b) for b in bounds)
    slack = NEAR_BOUND * (hi - lo)
    if name in at_bound or value <= lo + slack or value >= hi - slack:
        edge = lo if value - lo <= hi - value else hi
        return undetermined(f"{name} = {value:.3g} sits on the fitter's bound {edge:g}")
    if amplitude is not None and amplitude in at_bound:
        return undetermined(f"its amplitude {amplitude} sits on the fitter's bound")
    if interval is None:
        return undetermined("no interval (no bootstrap, or fewer than 2 degrees of freedom)")
    i_lo, i_hi = (_number(v) for v in interval)
    if i_lo is None or i_hi is None:
        return undetermined("its interval is undefined")
    if i_lo <= lo + slack:
        return undetermined(f"its 95% interval [{i_lo:.3g}, {i_hi:.3g}] reaches {lo:g}")
    if i_hi >= hi - slack:
        return undetermined(
            f"its 95% interval [{i_lo:.3g}, {i_hi:.3g}] reaches the fitter's bound {hi:g}"
        )
    return {"status": "determined", "reason": ""}


def exponent_verdicts(fit: Mapping[str, Any]) -> dict[str, dict[str, str]]:
    """:func:`exponent_verdict` of every exponent the fit records bounds for."""
    return {name: exponent_verdict(fit, name) for name in fit.get("exponent_bounds") or {}}


def exponent_words(fit: Mapping[str, Any], *, values: bool = False) -> str:
    """Each exponent's verdict in words, ``alpha determined; beta not determined (beta = 0 sits
    on the fitter's bound 0)``, each after its value and interval (``alpha=0.56 [0.14, 0.66]``)
    with ``values``; ``fit`` as fits.json holds it (its ``verdicts``, else worked out here)."""
    parts = []
    for name, verdict in (fit.get("verdicts") or exponent_verdicts(fit)).items():
        words = name
        if values:
            words += f"={float(fit['params'][name]):.3g}"
            interval = (fit.get("intervals") or {}).get(name)
            if interval is not None:
                words += f" [{float(interval[0]):.3g}, {float(interval[1]):.3g}]"
        reason = verdict.get("reason")
        parts.append(f"{words} " + (f"not determined ({reason})" if reason else "determined"))
    return "; ".join(parts)


def is_determined(fit: Mapping[str, Any], name: str) -> bool:
    """Whether exponent ``name`` of ``fit`` may be stated as a number (see the module)."""
    verdicts = fit.get("verdicts") or exponent_verdicts(fit)
    return (verdicts.get(name) or {}).get("status") == "determined"


def box_shaped(fit: Mapping[str, Any]) -> str:
    """Why the fitter's box, not the data, shapes a term of ``fit`` (an exponent on or near its
    upper bound, where the amplitude runs off to its own bound too), or ``""``.

    An exponent at its *lower* bound (0) is a flat term, a finding in itself (no detectable
    scaling); one at the upper bound is a step the data cannot resolve, so comparisons built on
    the law (bottlenecks, crossovers) are not made from it."""
    for name, bounds in (fit.get("exponent_bounds") or {}).items():
        value = _number((fit.get("params") or {}).get(name))
        lo, hi = (float(b) for b in bounds)
        if value is not None and value >= hi - NEAR_BOUND * (hi - lo):
            return f"{name} = {value:.3g} sits on the fitter's upper bound {hi:g}"
    return ""


def ratio_verdict(lo: object, hi: object, *, open_ended: bool = False) -> dict[str, str | None]:
    """``{"verdict": …, "direction": "more" | "fewer" | None}`` of a ratio's interval.

    ``open_ended``: the interval may be open on the side away from 1 and still give a direction
    (``[1.4, inf]``: at least 1.4×), as for censored data, where a bound is all that a ratio
    beyond the measured range can have (transfer efficiency); otherwise an open interval is
    not determined, as is one wider than :data:`MAX_SPREAD`."""
    try:
        a, b = float(lo), float(hi)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return {"verdict": "not_determined", "direction": None}
    if open_ended and (1 < a < math.inf or 0 < b < 1):
        return {"verdict": "direction", "direction": "more" if a > 1 else "fewer"}
    if not (math.isfinite(a) and math.isfinite(b)) or not 0 < a <= b or b / a > MAX_SPREAD:
        return {"verdict": "not_determined", "direction": None}
    if a <= 1 <= b:
        return {"verdict": "no_difference", "direction": None}
    return {"verdict": "direction", "direction": "more" if a > 1 else "fewer"}


def ratio_spans(losses: Sequence[float], lo: Sequence[float], hi: Sequence[float]) -> dict:
    """``{"more_at": [[l0, l1], …], "fewer_at": […]}``: the runs of consecutive losses (in
    the order given) where a ratio's interval is finite, positive and wholly above 1 or wholly
    below 1 (an open interval, as from a bootstrap curve that never reaches the loss, counts
    as neither)."""
    spans: dict[str, list[list[float]]] = {"more_at": [], "fewer_at": []}
    previous = None
    for loss, a, b in zip(losses, lo, hi, strict=True):
        a_num, b_num = _number(a), _number(b)
        side = None
        if a_num is not None and b_num is not None and 0 < a_num <= b_num:
            side = "more_at" if a_num > 1 else "fewer_at" if b_num < 1 else None
        if side is not None:
            if side == previous:
                spans[side][-1][1] = float(loss)
            else:
                spans[side].append([float(loss), float(loss)])
        previous = side
    return spans


def curve_ratio_verdict(entry: Mapping[str, Any]) -> dict[str, Any]:
    """The verdict of an efficiency ratio over a loss range, from the interval of its geometric
    mean (:func:`ratio_verdict`) and its interval at each loss (``losses``, ``ratio_lo``,
    ``ratio_hi``): ``verdict``, ``direction``, ``more_at`` and ``fewer_at``
    (:func:`ratio_spans`). A direction stands only where no loss shows the other one, and no
    detectable difference only where no loss shows one; otherwise ``"varies"``."""
    verdict: dict[str, Any] = dict(ratio_verdict(entry.get("geomean_lo"), entry.get("geomean_hi")))
    lo, hi = entry.get("ratio_lo"), entry.get("ratio_hi")
    losses = entry.get("losses") or []
    spans = ratio_spans(losses, lo, hi) if lo is not None and hi is not None else {}
    verdict |= {"more_at": spans.get("more_at", []), "fewer_at": spans.get("fewer_at", [])}
    if verdict["verdict"] == "not_determined":
        return verdict
    shown = {side for side in ("more", "fewer") if verdict[f"{side}_at"]}
    agrees = shown == set() if verdict["direction"] is None else shown <= {verdict["direction"]}
    if not agrees:
        verdict |= {"verdict": "varies", "direction": None}
    return verdict
