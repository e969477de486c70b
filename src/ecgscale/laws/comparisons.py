"""Comparative findings from fitted joint laws ``L(N, D) = E + A·N^−α + B·D^−β`` and from runs.

Every finding comes with a percentile interval from the fits' bootstrap samples and may be
"not determined"; nothing is claimed from point estimates alone.

*Bottleneck of one cell.* Doubling the model size gains ``g_N = L(N, D) − L(2N, D) =
A·N^−α·(1 − 2^−α)``, doubling the data ``g_D = B·D^−β·(1 − 2^−β)``. Their ratio
``g_D / g_N`` is increasing in N and decreasing in D (for α, β > 0), so over a rectangle of
sizes it is extreme at the corners, and the four corners of the observed grid bound it
everywhere inside. A corner is "data" (data-bottlenecked: more data helps more) when the
interval of ``g_D / g_N`` lies above 1 and g_D's lower bound exceeds :data:`GAIN_FLOOR` of the
loss there, "model" when it lies below 1 and g_N's does, "both" when each gain's lower bound
exceeds the floor, and otherwise "not determined" (e.g. neither doubling helps measurably).
The cell's verdict is the label of all four corners, "mixed" when determined corners disagree,
and "not determined" otherwise.

*Crossover of two cells.* Along N at fixed D (or along D at fixed N) each joint law is a power
law ``c + A·x^−α``; the crossings are the sign changes of ``L_a − L_b``. A difference of two
such curves has at most one extremum in ``log x``, so it changes sign at most twice, in
alternating directions. Crossings inside the observed range ``[lo, hi]`` get a percentile
interval from index-paired samples (:data:`~ecgscale.laws.efficiency.PAIRING`) and are
determined when at least :data:`MIN_SHARE` of the samples cross in the same direction inside
the range and the whole interval lies inside the range (samples that never cross that way make
it open-ended; an interval reaching past the range is in part an extrapolation); crossings
outside it are reported as extrapolations, never as findings.

*Who wins where.* Per grid point (n, d) the cell with the lowest observed loss wins; the win is
"clear" when the winner's 95% interval lies entirely below every other cell's interval.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike

from ecgscale.laws.compute import positive_array
from ecgscale.laws.efficiency import PAIRING, percentile_band
from ecgscale.laws.fit import FitResult
from ecgscale.laws.forms import Array, get_form
from ecgscale.numformat import compact

GAIN_FLOOR = 1e-3
"""A doubling counts as detectably helping (for the "both" label) when the lower end of its
gain's interval exceeds this share of the point-estimate loss at that corner. A loss measured
on a finite test set after training with one seed is rarely repeatable to 0.1%, so a smaller
gain could not be told apart in any comparison of runs; the floor separates "both help" (which
helps more unresolved) from "neither helps measurably" (a law flat in both directions, near
E). It is a practical-significance cut chosen by judgement, not a statistical test."""
MIN_SHARE = 0.5
"""A crossover inside the range is determined only when at least this share of the paired
samples cross in the same direction inside the range too (and its 95% interval lies inside the
range, which needs most of them there)."""
EXTRAPOLATION_FACTOR = 1e3
"""Crossings are also searched from ``lo`` / this to ``hi`` · this; those outside
``[lo, hi]`` are extrapolations."""
GRID_PER_DECADE = 100
"""Search grid points per decade of x; a sign change between neighbours is then bisected."""
BISECT_STEPS = 60
"""Bisection halvings of a grid step in log x: beyond double precision."""
NOT_DETERMINED = "not determined"
NO_CROSSOVER = "no crossover within the observed range"
_JOINT = get_form("joint").param_names
_CORNERS = (("min", "min"), ("min", "max"), ("max", "min"), ("max", "max"))
_POINT_COLUMNS = ("cell", "n", "d", "loss", "loss_lo", "loss_hi")


def _level(level: float) -> float:
    """``level`` as a float in (0, 1), or a one-line ValueError."""
    if not 0 < level < 1:
        raise ValueError(f"level must be in (0, 1), got {level}")
    return float(level)


def _joint(law: FitResult, name: str) -> tuple[dict[str, Array], Array | None]:
    """The point parameters of a joint-law fit and its samples (None when it has none)."""
    if not isinstance(law, FitResult) or law.form != "joint":
        got = law.form if isinstance(law, FitResult) else type(law).__name__
        raise ValueError(f"{name} must be a joint-law FitResult, got {got!r}")
    point = {p: np.asarray(law.params[p], dtype=float) for p in _JOINT}
    samples = law.samples
    return point, None if samples is None or len(samples) == 0 else np.asarray(samples, float)


def _columns(samples: Array) -> dict[str, Array]:
    """Joint-law parameters as columns (S, 1) of the samples."""
    return {p: samples[:, j, None] for j, p in enumerate(_JOINT)}


def _gains(p: Mapping[str, Array], n: Array, d: Array) -> tuple[Array, Array]:
    """``g_N = A·N^−α·(1 − 2^−α)`` and ``g_D = B·D^−β·(1 − 2^−β)``, broadcast."""
    g_n = p["A"] * n ** -p["alpha"] * -np.expm1(-p["alpha"] * np.log(2.0))
    g_d = p["B"] * d ** -p["beta"] * -np.expm1(-p["beta"] * np.log(2.0))
    return g_n, g_d


def _corner_label(c: dict[str, Any]) -> tuple[str, str | None]:
    """Label and reason of one corner from its intervals (all present)."""
    lo, hi = c["ratio_lo"], c["ratio_hi"]
    floor = GAIN_FLOOR * c["loss"]
    if lo > 1 and c["gain_d_lo"] > floor:
        return "data", None
    if hi < 1 and c["gain_n_lo"] > floor:
        return "model", None
    if c["gain_n_lo"] > floor and c["gain_d_lo"] > floor:
        return "both", None
    if lo > 1 or hi < 1:
        more = "D" if lo > 1 else "N"
        return NOT_DETERMINED, (
            f"doubling {more} gains more than doubling the other (g_D/g_N in [{lo:.4g}, "
            f"{hi:.4g}]) but its own gain is not detectable (lower bound at most {GAIN_FLOOR:g} "
            f"of the loss {c['loss']:.4g}): neither helps measurably"
        )
    weak = [x for x in ("n", "d") if not c[f"gain_{x}_lo"] > floor]
    return NOT_DETERMINED, (
        f"the interval of g_D/g_N [{lo:.4g}, {hi:.4g}] contains 1 and the gain from doubling"
        f" {' and '.join(x.upper() for x in weak)} is not detectable (lower bound at most"
        f" {GAIN_FLOOR:g} of the loss {c['loss']:.4g})"
    )


def bottleneck(
    law: FitResult, n_grid: ArrayLike, d_grid: ArrayLike, *, level: float = 0.95
) -> dict[str, Any]:
    """Whether doubling D or doubling N lowers a joint law's loss more, at the grid's corners.

    ``n_grid`` and ``d_grid`` are the sizes observed (only their extremes are used). Returns a
    JSON-serialisable dict: ``definition``, ``n_range``, ``d_range``, ``level``, ``n_samples``,
    ``gain_floor``, ``params``, ``corners`` (four dicts: ``n_at``, ``d_at`` ("min"/"max"),
    ``n``, ``d``, ``loss``, ``gain_n``, ``gain_d``, ``ratio`` each with ``_lo``/``_hi`` (None
    without samples), ``label``, ``reason``), ``verdict`` and ``reason`` (None when determined).
    """
    point, samples = _joint(law, "law")
    n_arr, d_arr = positive_array("n_grid", n_grid), positive_array("d_grid", d_grid)
    lev = _level(level)
    n_c = np.array([n_arr.min() if a == "min" else n_arr.max() for a, _ in _CORNERS])
    d_c = np.array([d_arr.min() if b == "min" else d_arr.max() for _, b in _CORNERS])
    loss = get_form("joint").evaluate(point, n=n_c, d=d_c)
    values: dict[str, Array] = {}
    bands: dict[str, tuple[Array, Array]] = {}
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        values["gain_n"], values["gain_d"] = _gains(point, n_c, d_c)
        values["ratio"] = values["gain_d"] / values["gain_n"]
        if samples is not None:
            g_n, g_d = _gains(_columns(samples), n_c[None, :], d_c[None, :])
            for name, draws in (("gain_n", g_n), ("gain_d", g_d), ("ratio", g_d / g_n)):
                bands[name] = percentile_band(draws, lev)
    corners = []
    for i, (n_at, d_at) in enumerate(_CORNERS):
        c: dict[str, Any] = {
            "n_at": n_at,
            "d_at": d_at,
            "n": float(n_c[i]),
            "d": float(d_c[i]),
            "loss": float(loss[i]),
        }
        for name, value in values.items():
            c[name] = float(value[i])
            lo, hi = bands.get(name, (None, None))
            c[f"{name}_lo"] = None if lo is None else float(lo[i])
            c[f"{name}_hi"] = None if hi is None else float(hi[i])
        if samples is None:
            c["label"], c["reason"] = NOT_DETERMINED, "the fit has no bootstrap samples"
        else:
            c["label"], c["reason"] = _corner_label(c)
        corners.append(c)
    labels = [c["label"] for c in corners]
    determined = sorted({label for label in labels if label != NOT_DETERMINED})
    verdict, reason = NOT_DETERMINED, None
    if samples is None:
        reason = "the fit has no bootstrap samples, so no gain has an interval"
    elif len(determined) > 1:
        verdict = "mixed"
    elif not determined:
        reason = "no corner is determined"
    elif len(set(labels)) == 1:
        verdict = determined[0]
    else:
        k = len(labels) - labels.count(NOT_DETERMINED)
        reason = f"only {k} of 4 corners are determined (all {determined[0]!r})"
    return {
        "definition": (
            "g_N = L(N, D) - L(2N, D) = A*N^-alpha*(1 - 2^-alpha);"
            " g_D = L(N, D) - L(N, 2D) = B*D^-beta*(1 - 2^-beta); ratio = g_D / g_N"
        ),
        "n_range": [float(n_arr.min()), float(n_arr.max())],
        "d_range": [float(d_arr.min()), float(d_arr.max())],
        "level": lev,
        "n_samples": 0 if samples is None else len(samples),
        "gain_floor": GAIN_FLOOR,
        "params": {p: float(v) for p, v in point.items()},
        "corners": corners,
        "verdict": verdict,
        "reason": reason,
    }


def _curve(p: Mapping[str, Array], axis: str, at: float) -> tuple[Array, Array, Array]:
    """``(c, amplitude, exponent)`` of the joint law along ``axis`` at the other size ``at``."""
    if axis == "n":
        return p["E"] + p["B"] * at ** -p["beta"], p["A"], p["alpha"]
    return p["E"] + p["A"] * at ** -p["alpha"], p["B"], p["beta"]


def _difference(ca: tuple[Array, Array, Array], cb: tuple[Array, Array, Array], u: Array) -> Array:
    """``L_a − L_b`` at ``x = exp(u)``, broadcast."""
    with np.errstate(over="ignore", invalid="ignore"):
        return (ca[0] - cb[0]) + ca[1] * np.exp(-ca[2] * u) - cb[1] * np.exp(-cb[2] * u)


def _bisect(
    ca: tuple[Array, Array, Array], cb: tuple[Array, Array, Array], u0: Array, u1: Array
) -> Array:
    """The log x where ``L_a − L_b`` changes sign in each bracket ``[u0, u1]`` (vectorised)."""
    below0 = _difference(ca, cb, u0) < 0
    for _ in range(BISECT_STEPS):
        mid = (u0 + u1) / 2
        same = (_difference(ca, cb, mid) < 0) == below0
        u0, u1 = np.where(same, mid, u0), np.where(same, u1, mid)
    return (u0 + u1) / 2


def _log_grid(lo: float, hi: float) -> Array:
    """log x from ``lo / F`` to ``hi · F`` (F = :data:`EXTRAPOLATION_FACTOR`), with ``lo`` and
    ``hi`` as nodes, :data:`GRID_PER_DECADE` points per decade."""
    edges = np.log([lo / EXTRAPOLATION_FACTOR, lo, hi, hi * EXTRAPOLATION_FACTOR])
    parts = [
        np.linspace(a, b, max(2, int(np.ceil((b - a) / np.log(10) * GRID_PER_DECADE)) + 1))
        for a, b in zip(edges[:-1], edges[1:], strict=True)
    ]
    return np.unique(np.concatenate(parts))


def _lower(diff: float) -> str:
    """Which cell is lower where ``L_a − L_b = diff``."""
    return "a" if diff < 0 else "b" if diff > 0 else "equal"


def crossover(
    law_a: FitResult,
    law_b: FitResult,
    *,
    axis: str,
    at: float,
    lo: float,
    hi: float,
    level: float = 0.95,
) -> dict[str, Any]:
    """Where two joint laws cross along N at D = ``at`` (``axis="n"``) or along D at N = ``at``.

    ``[lo, hi]`` is the range of x observed for both cells. Returns a JSON-serialisable dict:
    ``axis``, ``at``, ``definition``, ``range``, ``search_range``, ``level``, ``n_samples``,
    ``pairing``, ``lower_at_lo``, ``lower_at_hi`` ("a", "b" or "equal"), ``inside`` (the
    point-estimate curves cross in the range), ``crossings`` (those inside, in order: ``x``,
    ``x_lo``, ``x_hi``, ``lower_after``, ``share_inside``, ``determined``, ``reason``),
    ``share_crossing_inside`` (of samples crossing anywhere inside), ``extrapolated`` (point
    crossings outside the range, in order: ``extrapolated_x``, ``side``, ``lower_after``),
    ``verdict`` ("crossover", :data:`NO_CROSSOVER` or :data:`NOT_DETERMINED`) and ``reason``.
    A sample that never crosses in a crossing's direction within the search range counts as
    crossing before it (x = 0) when that direction's lower cell is already lower at its start,
    otherwise after it (x = inf).
    """
    if axis not in ("n", "d"):
        raise ValueError(f"axis must be 'n' or 'd', got {axis!r}")
    for name, value in (("at", at), ("lo", lo), ("hi", hi)):
        if not (np.isfinite(value) and value > 0):
            raise ValueError(f"{name} must be finite and > 0, got {value}")
    if not lo < hi:
        raise ValueError(f"lo must be below hi, got [{lo}, {hi}]")
    lev = _level(level)
    (pa, sa), (pb, sb) = _joint(law_a, "law_a"), _joint(law_b, "law_b")
    u = _log_grid(lo, hi)
    u_lo, u_hi = np.log(lo), np.log(hi)
    inside_step = (u[:-1] >= u_lo) & (u[1:] <= u_hi)
    ca, cb = _curve(pa, axis, at), _curve(pb, axis, at)
    below = _difference(ca, cb, u) < 0
    steps = np.flatnonzero(below[1:] != below[:-1])
    roots = _bisect(ca, cb, u[steps], u[steps + 1])
    n_samples = 0 if sa is None or sb is None else min(len(sa), len(sb))
    share_any = 0.0
    if n_samples:
        assert sa is not None and sb is not None
        sca = _curve(_columns(sa[:n_samples]), axis, at)
        scb = _curve(_columns(sb[:n_samples]), axis, at)
        s_below = _difference(sca, scb, u[None, :]) < 0  # (S, G)
        s_change = s_below[:, 1:] != s_below[:, :-1]
        share_any = float((s_change & inside_step).any(axis=1).mean())
    crossings, extrapolated = [], []
    for step, root in zip(steps, roots, strict=True):
        lower_after = "a" if below[step + 1] else "b"
        if not inside_step[step]:
            side = "below" if root < u_lo else "above"
            extrapolated.append(
                {"extrapolated_x": float(np.exp(root)), "side": side, "lower_after": lower_after}
            )
            continue
        c: dict[str, Any] = {"x": float(np.exp(root)), "lower_after": lower_after}
        if not n_samples:
            c.update(x_lo=None, x_hi=None, share_inside=None, determined=False)
            c["reason"] = "the fits have no bootstrap samples"
            crossings.append(c)
            continue
        # each sample's crossing in the same direction nearest to the point estimate's
        same = s_change & (s_below[:, 1:] == below[step + 1])
        mids = (u[:-1] + u[1:]) / 2
        nearest = np.argmin(np.where(same, np.abs(mids - root), np.inf), axis=1)
        rows = np.arange(n_samples)
        found = same[rows, nearest]
        log_x = np.where(s_below[:, 0] == below[step + 1], -np.inf, np.inf)
        if found.any():
            k, r = nearest[found], rows[found]
            log_x[found] = _bisect(
                tuple(v[r, 0] for v in sca), tuple(v[r, 0] for v in scb), u[k], u[k + 1]
            )
        x_lo, x_hi = np.exp(percentile_band(log_x, lev))
        share = float(((log_x >= u_lo) & (log_x <= u_hi)).mean())
        c.update(x_lo=float(x_lo), x_hi=float(x_hi), share_inside=share)
        c["determined"] = bool(share >= MIN_SHARE and lo <= x_lo and x_hi <= hi)
        c["reason"] = (
            None
            if c["determined"]
            else f"only {share:.0%} of the samples cross this way inside the range"
            if share < MIN_SHARE
            else "its interval is open-ended (some samples never cross this way)"
            if not (x_lo > 0 and x_hi < np.inf)
            else f"its 95% interval [{compact(x_lo)}, {compact(x_hi)}] reaches outside the"
            f" observed range [{compact(lo)}, {compact(hi)}]: in part an extrapolation"
        )
        crossings.append(c)
    inside = bool(crossings)
    verdict, reason = NOT_DETERMINED, None
    if not n_samples:
        reason = "the fits have no bootstrap samples, so nothing has an interval"
    elif inside and any(c["determined"] for c in crossings):
        verdict = "crossover"
    elif inside:  # each crossing says why it is not determined
        reason = "no crossing is determined: " + "; ".join(
            dict.fromkeys(str(c["reason"]) for c in crossings)
        )
    elif share_any < MIN_SHARE:
        verdict = NO_CROSSOVER
    else:
        reason = f"the curves do not cross inside the range, but {share_any:.0%} of samples do"
    fixed = "D" if axis == "n" else "N"
    return {
        "axis": axis,
        "at": float(at),
        "definition": f"L_a - L_b along {axis.upper()} at {fixed} = {at:g}",
        "range": [float(lo), float(hi)],
        "search_range": [float(np.exp(u[0])), float(np.exp(u[-1]))],
        "level": lev,
        "n_samples": n_samples,
        "pairing": PAIRING,
        "lower_at_lo": _lower(float(_difference(ca, cb, u_lo))),
        "lower_at_hi": _lower(float(_difference(ca, cb, u_hi))),
        "inside": inside,
        "crossings": crossings,
        "share_crossing_inside": share_any if n_samples else None,
        "extrapolated": extrapolated,
        "verdict": verdict,
        "reason": reason,
    }


def winners(points: pd.DataFrame) -> list[dict[str, Any]]:
    """Per grid point (n, d), and per ``loss_set`` when that column is there: who has the lowest
    loss, the runner-up, and whether the win is clear.

    ``points`` has one row per cell and grid point with columns ``cell``, ``n``, ``d``,
    ``loss``, ``loss_lo``, ``loss_hi`` (the observed loss and its 95% interval). A win is
    "clear" when the winner's interval lies entirely below every other cell's (non-overlapping
    95% intervals: conservative, as intervals can overlap while the difference is still
    significant), "tied" otherwise, "uncontested" with one cell. Returns dicts with keys
    ``loss_set`` (when given), ``n``, ``d``, ``n_cells``, ``winner``, ``winner_loss``,
    ``winner_lo``, ``winner_hi``, ``runner_up``, ``runner_up_loss``, ``runner_up_lo``,
    ``runner_up_hi`` (None without one), ``status`` and ``tied_with`` (cells whose interval
    overlaps the winner's), sorted by loss set, n, d. A NaN bound counts as overlapping.
    """
    missing = [c for c in _POINT_COLUMNS if c not in points.columns]
    if missing:
        raise ValueError(f"points lacks columns {missing}")
    keys = (["loss_set"] if "loss_set" in points.columns else []) + ["n", "d"]
    duplicated = points.duplicated([*keys, "cell"])
    if duplicated.any():
        first = points[duplicated].iloc[0]
        where = ", ".join(f"{k}={first[k]}" for k in [*keys, "cell"])
        raise ValueError(f"points has more than one row per cell and grid point (first: {where})")
    if not np.isfinite(points["loss"].to_numpy(float)).all():
        raise ValueError("points has non-finite losses")
    out = []
    for key, group in points.groupby(keys, sort=True):
        ranked = group.sort_values("loss", kind="stable")
        best, rest = ranked.iloc[0], ranked.iloc[1:]
        row: dict[str, Any] = dict(zip(keys, key, strict=True))
        if "loss_set" in row:
            row["loss_set"] = str(row["loss_set"])
        row.update(n=float(row["n"]), d=float(row["d"]), n_cells=len(ranked))
        row.update(winner=str(best["cell"]), **_cell_values("winner", best))
        second = rest.iloc[0] if len(rest) else None
        row["runner_up"] = None if second is None else str(second["cell"])
        row.update(_cell_values("runner_up", second))
        separated = rest["loss_lo"].to_numpy(float) > float(best["loss_hi"])
        row["tied_with"] = [str(c) for c in rest["cell"][~separated]]
        row["status"] = "uncontested" if second is None else "tied" if row["tied_with"] else "clear"
        out.append(row)
    return out


def _cell_values(prefix: str, row: pd.Series | None) -> dict[str, float | None]:
    """``<prefix>_loss``, ``_lo``, ``_hi`` of one point's row (None without a row)."""
    names = {"loss": f"{prefix}_loss", "loss_lo": f"{prefix}_lo", "loss_hi": f"{prefix}_hi"}
    return {v: None if row is None else float(row[k]) for k, v in names.items()}


def win_counts(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per loss set (None when the points had none): grid points, clear wins per cell, ties and
    uncontested points, from :func:`winners`' rows."""
    summary: dict[Any, dict[str, Any]] = {}
    for row in rows:
        loss_set = row.get("loss_set")
        s = summary.setdefault(
            loss_set,
            {"loss_set": loss_set, "n_points": 0, "clear": {}, "tied": 0, "uncontested": 0},
        )
        s["n_points"] += 1
        if row["status"] == "clear":
            s["clear"][row["winner"]] = s["clear"].get(row["winner"], 0) + 1
        else:
            s[row["status"]] += 1
    return list(summary.values())
