"""Figures of the study report, drawn on standalone Agg figures (global pyplot state is untouched).

Every builder returns a :class:`ReportFigure`: the figure, or ``None`` with a sentence saying why
nothing could be drawn. Values that cannot be shown on a log axis (non-positive, NaN) are left out
and counted in a note.
"""

from __future__ import annotations

import io
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib import colormaps
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch
from matplotlib.ticker import FuncFormatter, LogFormatter

from ecgscale.laws.verdicts import is_determined
from ecgscale.numformat import as_float, compact

MARKERS: tuple[str, ...] = ("o", "s", "^", "D", "v", "P", "X", "*")
"""Marker cycle for the data sizes D of a loss-vs-N figure."""

PRETRAIN_UNITS: dict[str, str] = {"sl": "BCE", "ssl": "masked-reconstruction MSE"}
"""Unit of the pre-training loss per paradigm (the panels of that figure do not share y)."""

PANEL_SIZE: tuple[float, float] = (4.2, 3.3)
LEGEND_WIDTH = 1.9
FIGURE_DPI = 110


class PlainLogFormatter(LogFormatter):
    """Log-axis tick labels as plain numbers (``0.6``, ``2``) rather than ``6e-01`` or ``2×10^0``.

    Which ticks get a label is still decided by :class:`~matplotlib.ticker.LogFormatter`.
    """

    def __call__(self, x: float, pos: int | None = None) -> str:
        """The label of the tick at ``x`` (empty when the tick is not labelled)."""
        return f"{x:.3g}" if super().__call__(x, pos) else ""


@dataclass
class ReportFigure:
    """One figure of the report, or the reason it could not be drawn (``figure is None``)."""

    name: str
    caption: str
    figure: Figure | None
    notes: list[str] = field(default_factory=list)


def power_law(params: Mapping[str, object], x: np.ndarray) -> np.ndarray:
    """Evaluate ``L(x) = E + A * x**(-alpha)``; missing or non-numeric parameters give NaN."""
    e, a, alpha = (as_float(params.get(key)) for key in ("E", "A", "alpha"))
    return e + a * np.power(np.asarray(x, dtype=float), -alpha)


def slug(name: str) -> str:
    """A file-name-safe version of ``name`` (for figure names built from evaluation-set names)."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name).strip("._") or "set"


def png_bytes(fig: Figure) -> bytes:
    """Render ``fig`` to PNG bytes, then clear it to release its artists."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=FIGURE_DPI)
    fig.clear()
    return buffer.getvalue()


def write_svg_and_png(fig: Figure, stem: Path) -> bytes:
    """Write ``stem.svg`` and ``stem.png``; return the PNG bytes (the figure is cleared)."""
    fig.savefig(stem.with_suffix(".svg"), format="svg")
    data = png_bytes(fig)
    stem.with_suffix(".png").write_bytes(data)
    return data


def pretrain_points(runs: pd.DataFrame) -> pd.DataFrame:
    """The runs with their best validation pre-training loss as ``y``."""
    return runs.assign(y=runs["pretrain_loss"])


def probe_points(runs: pd.DataFrame, evals: pd.DataFrame, eval_set: str) -> pd.DataFrame:
    """The runs joined with their probe loss on ``eval_set`` as ``y`` (runs without it dropped)."""
    losses = evals.loc[evals["eval_set"] == eval_set, ["run_id", "loss"]]
    return runs.merge(losses.rename(columns={"loss": "y"}), on="run_id", how="inner")


def loss_vs_n(
    points: pd.DataFrame,
    fits: Sequence[Mapping],
    families: Sequence[str],
    *,
    name: str,
    caption: str,
    quantity: str,
    metric: str,
    ylabel: Mapping[str, str] | str,
    n_col: str = "n_params",
    n_label: str = "N (total parameters)",
) -> ReportFigure:
    """Loss vs measured N (the results column ``n_col``), one panel per paradigm, colour per
    family, marker per D.

    ``ylabel`` is one label for all panels (then they share y) or one per paradigm. Fits with
    ``metric`` and ``x == "N"`` are drawn dashed (dotted if not converged) over the N range
    observed for their family, paradigm and D.
    """
    points, notes = _log_safe(points, [n_col, "y"], quantity)
    if points.empty:
        return ReportFigure(name, caption, None, notes)
    colors = family_colors(families)
    sizes = sorted(points["data_size"].unique())
    markers = {size: MARKERS[i % len(MARKERS)] for i, size in enumerate(sizes)}
    curves = _select_fits(fits, metric, "N", notes)
    paradigms = sorted(points["paradigm"].unique())
    fig, axes = panel_grid(1, len(paradigms), sharey=isinstance(ylabel, str))
    for ax, paradigm in zip(axes[0], paradigms, strict=True):
        panel = points[points["paradigm"] == paradigm]
        for (family, size), group in panel.groupby(["family", "data_size"]):
            means = group.groupby("target_params")[[n_col, "y"]].mean().sort_values(n_col)
            style = {"color": colors[family], "marker": markers[size]}
            ax.scatter(group[n_col], group["y"], s=12, alpha=0.35, **style)
            ax.plot(means[n_col], means["y"], lw=1, ms=5, **style)
        for fit in _matching(curves, paradigm):
            family = fit.get("family")
            family_points = panel[panel["family"] == family]
            _draw_fit(ax, fit, family_points, n_col, "data_size", colors.get(family))
        label = ylabel if isinstance(ylabel, str) else ylabel.get(paradigm, "pre-training loss")
        style_axes(ax, paradigm, n_label, label)
    handles = _family_handles(colors, points["family"].unique())
    handles += [_marker_handle(markers[s], f"D = {compact(s)}") for s in sizes]
    add_legend(fig, handles + _fit_handles(curves))
    return ReportFigure(name, caption, fig, notes)


def loss_vs_d(
    points: pd.DataFrame,
    fits: Sequence[Mapping],
    *,
    name: str,
    caption: str,
    quantity: str,
    metric: str,
    references: pd.DataFrame | None = None,
) -> ReportFigure:
    """Loss vs D, one panel per paradigm (rows) and family (columns), one line per target N.

    Fits with ``metric`` and ``x == "D"`` are drawn dashed in the colour of their N slice;
    ``references`` (``family``, ``target_params``, ``y``: the untrained encoders' losses) are
    drawn dash-dotted across every panel of their family, in the colour of their N.
    """
    points, notes = _log_safe(points, ["data_size", "y"], quantity)
    if points.empty:
        return ReportFigure(name, caption, None, notes)
    sizes = sorted(points["target_params"].unique())
    cmap = colormaps["viridis"]
    colors = {n: cmap(0.9 * i / max(len(sizes) - 1, 1)) for i, n in enumerate(sizes)}
    curves = _select_fits(fits, metric, "D", notes)
    paradigms = sorted(points["paradigm"].unique())
    families = sorted(points["family"].unique())
    untrained: dict[str, dict[int, float]] = {}
    if references is not None and not references.empty:
        means = references.groupby(["family", "target_params"])["y"].mean()
        for (family, n), y in means.items():
            untrained.setdefault(str(family), {})[n] = float(y)
    fig, axes = panel_grid(len(paradigms), len(families), sharey=True)
    for row, paradigm in zip(axes, paradigms, strict=True):
        for ax, family in zip(row, families, strict=True):
            panel = points[(points["paradigm"] == paradigm) & (points["family"] == family)]
            for n, group in panel.groupby("target_params"):
                means = group.groupby("data_size")["y"].mean()
                ax.scatter(group["data_size"], group["y"], s=12, alpha=0.35, color=colors[n])
                ax.plot(means.index, means.to_numpy(), marker="o", lw=1, ms=5, color=colors[n])
            for fit in _matching(curves, paradigm, family):
                n = (fit.get("slice") or {}).get("target_params")
                _draw_fit(ax, fit, panel, "data_size", "target_params", colors.get(n, "black"))
            for n, y in untrained.get(family, {}).items():
                if n in colors:
                    ax.axhline(y, ls="-.", lw=1.2, color=colors[n])
            style_axes(ax, f"{family} / {paradigm}", "D (pre-training records)", quantity)
    handles = [line_handle(colors[n], f"N = {compact(n)}") for n in sizes]
    if untrained:
        handles.append(line_handle("grey", "untrained encoder (D = 0)", ls="-."))
    add_legend(fig, handles + _fit_handles(curves))
    return ReportFigure(name, caption, fig, notes)


def loss_to_loss(
    runs: pd.DataFrame,
    evals: pd.DataFrame,
    ood_sets: Sequence[str],
    *,
    name: str,
    caption: str,
    laws: Sequence[Mapping] = (),
) -> ReportFigure:
    """OOD vs ID probe loss per run, one panel per OOD set, colour per family × paradigm.

    ``laws`` (fits.json ``loss_to_loss``) are drawn dashed with their bootstrap bands where
    their κ is determined, dash-dotted without a band where it is not."""
    ident = probe_points(runs, evals, "id").rename(columns={"y": "id_loss"})
    panels = {}
    notes: list[str] = []
    for ood_set in ood_sets:
        pairs = probe_points(ident, evals, ood_set)
        quantity = f"pair of ID and {ood_set} probe losses"
        pairs, set_notes = _log_safe(pairs, ["id_loss", "y"], quantity)
        notes += set_notes
        if not pairs.empty:
            panels[ood_set] = pairs
    if not panels:
        return ReportFigure(name, caption, None, notes)
    all_pairs = pd.concat(panels.values())
    combos = sorted(set(zip(all_pairs["family"], all_pairs["paradigm"], strict=True)))
    cmap = colormaps["tab10"]
    colors = {combo: cmap(i % cmap.N) for i, combo in enumerate(combos)}
    fig, axes = panel_grid(1, len(panels), sharey=False)
    shown = {True: False, False: False}  # laws drawn, by whether κ is determined
    for ax, (ood_set, pairs) in zip(axes[0], panels.items(), strict=True):
        for combo, group in pairs.groupby(["family", "paradigm"]):
            ax.scatter(group["id_loss"], group["y"], s=18, alpha=0.8, color=colors[combo])
        for law in laws:
            combo = (law.get("family"), law.get("paradigm"))
            if law.get("eval_set") != ood_set or combo not in colors:
                continue
            curve = law.get("curve") or {}
            x, y = (np.asarray(curve.get(k) or [], dtype=float) for k in ("x", "y"))
            keep = np.isfinite(y) & (y > 0) if x.size == y.size else np.zeros(0, bool)
            determined = is_determined(law, "kappa")
            shown[determined] = True
            style = {"ls": "--", "lw": 1.3} if determined else {"ls": "-.", "lw": 0.9}
            ax.plot(x[keep], y[keep], color=colors[combo], **style)
            if determined:
                _draw_band(ax, law.get("band"), colors[combo])
        low = min(pairs["id_loss"].min(), pairs["y"].min())
        high = max(pairs["id_loss"].max(), pairs["y"].max())
        ax.plot([low, high], [low, high], color="grey", lw=0.8, ls=":")
        style_axes(ax, ood_set, "ID probe loss", f"probe loss on {ood_set}", plain_x=True)
    handles = [_marker_handle("o", f"{f} / {p}", colors[(f, p)]) for f, p in combos]
    if shown[True]:
        handles.append(line_handle("black", "fitted law, κ determined", ls="--"))
    if shown[False]:
        handles.append(line_handle("black", "fitted law, κ not determined", ls="-."))
    add_legend(fig, [*handles, line_handle("grey", "y = x", ls=":")])
    return ReportFigure(name, caption, fig, notes)


def lr_sweep(sweep: pd.DataFrame, *, name: str, caption: str) -> ReportFigure:
    """Validation pre-training loss vs learning rate of the sweep's runs, one panel per family
    × paradigm, one line per target N; the rate each rung chose is ringed."""
    points, notes = _log_safe(sweep, ["lr", "pretrain_loss"], "sweep run")
    if points.empty:
        return ReportFigure(name, caption, None, notes or ["No sweep run has finished."])
    sizes = sorted(points["target_params"].unique())
    cmap = colormaps["viridis"]
    colors = {n: cmap(0.9 * i / max(len(sizes) - 1, 1)) for i, n in enumerate(sizes)}
    cells = sorted(set(zip(points["family"], points["paradigm"], strict=True)))
    fig, axes = panel_grid(1, len(cells), sharey=False)
    for ax, (family, paradigm) in zip(axes[0], cells, strict=True):
        panel = points[(points["family"] == family) & (points["paradigm"] == paradigm)]
        for n, group in panel.groupby("target_params"):
            means = group.groupby("lr")["pretrain_loss"].mean()
            ax.plot(means.index, means.to_numpy(), marker="o", lw=1, ms=4, color=colors[n])
            best = group[group["chosen"]]
            ax.scatter(best["lr"], best["pretrain_loss"], s=90, facecolors="none", color=colors[n])
        unit = PRETRAIN_UNITS.get(str(paradigm), "pre-training loss")
        style_axes(ax, f"{family} / {paradigm}", "peak learning rate", f"validation {unit}")
    handles = [line_handle(colors[n], f"N = {compact(n)}") for n in sizes]
    handles.append(_marker_handle("o", "chosen rate", "black"))
    add_legend(fig, handles)
    return ReportFigure(name, caption, fig, notes)


def family_colors(families: Sequence[str]) -> dict[str, tuple]:
    """A stable colour per family (tab10, in sorted order) shared by every figure."""
    cmap = colormaps["tab10"]
    return {family: cmap(i % cmap.N) for i, family in enumerate(sorted(set(families)))}


def _log_safe(
    points: pd.DataFrame, columns: list[str], quantity: str
) -> tuple[pd.DataFrame, list[str]]:
    """Keep the rows whose ``columns`` are finite and positive; notes say what was left out."""
    values = points[columns].apply(pd.to_numeric, errors="coerce").to_numpy(dtype=float)
    keep = (np.isfinite(values) & (values > 0)).all(axis=1)
    dropped = int((~keep).sum())
    notes = []
    if not keep.any():
        notes.append(f"Nothing to plot: no run has a positive, finite {quantity}.")
    elif dropped:
        notes.append(f"{dropped} run(s) without a positive, finite {quantity} are left out.")
    return points[keep], notes


def _select_fits(fits: Sequence[Mapping], metric: str, x: str, notes: list[str]) -> list[Mapping]:
    """The fits of ``metric`` against ``x``; appends a note when there are none."""
    selected = [fit for fit in fits if fit.get("metric") == metric and fit.get("x") == x]
    if not selected:
        notes.append(f"No fitted L({x}) curve for metric '{metric}' is available.")
    return selected


def _matching(fits: Sequence[Mapping], paradigm: str, family: str | None = None) -> list[Mapping]:
    """The fits of ``paradigm`` (and ``family`` when given)."""
    return [
        fit
        for fit in fits
        if fit.get("paradigm") == paradigm and family in (None, fit.get("family"))
    ]


def _draw_fit(
    ax: Axes, fit: Mapping, points: pd.DataFrame, x_col: str, slice_col: str, color: object
) -> None:
    """Draw ``fit`` over the ``x_col`` range of ``points`` in its slice (``slice_col`` value)."""
    fit_slice = fit.get("slice") or {}
    if slice_col in fit_slice:
        points = points[points[slice_col] == fit_slice[slice_col]]
    if points.empty:
        return
    x = np.geomspace(points[x_col].min(), points[x_col].max(), 100)
    y = power_law(fit.get("params") or {}, x)
    keep = np.isfinite(y) & (y > 0)
    linestyle = "--" if fit.get("converged", True) else ":"
    ax.plot(x[keep], y[keep], ls=linestyle, lw=1.3, color=color or "black")
    _draw_band(ax, fit.get("band"), color)


def _draw_band(ax: Axes, band: Mapping | None, color: object) -> None:
    """Shade a fit's bootstrap band ``{"x", "lo", "hi"}`` (positive, finite parts only)."""
    if not band:
        return
    x, lo, hi = (np.asarray(band.get(k) or [], dtype=float) for k in ("x", "lo", "hi"))
    if not (x.size and x.size == lo.size == hi.size):
        return
    keep = np.isfinite(lo) & np.isfinite(hi) & (lo > 0) & (hi > 0)
    if keep.any():
        ax.fill_between(x[keep], lo[keep], hi[keep], color=color or "black", alpha=0.15, lw=0)


def panel_grid(nrows: int, ncols: int, *, sharey: bool) -> tuple[Figure, np.ndarray]:
    """A constrained-layout Agg figure with a ``(nrows, ncols)`` array of axes."""
    width, height = PANEL_SIZE
    fig = Figure(figsize=(width * ncols + LEGEND_WIDTH, height * nrows), layout="constrained")
    FigureCanvasAgg(fig)
    return fig, fig.subplots(nrows, ncols, squeeze=False, sharey=sharey)


def style_axes(ax: Axes, title: str, xlabel: str, ylabel: str, *, plain_x: bool = False) -> None:
    """Log-log axes with a title, labels and a light grid; user strings are mathtext-escaped.

    Loss axes (y, and x when ``plain_x``) span few decades and get plain-number tick labels.
    """
    ax.set_xscale("log")
    ax.set_yscale("log")
    for axis in [ax.yaxis, ax.xaxis] if plain_x else [ax.yaxis]:
        axis.set_major_formatter(PlainLogFormatter())
        axis.set_minor_formatter(PlainLogFormatter(labelOnlyBase=False))
    if not plain_x:  # sizes: 20k, 50k, 100k, ... with labels on 1-2-5 ticks only
        ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: compact(v)))
        ax.xaxis.set_minor_formatter(FuncFormatter(_size_minor_label))
    ax.set_title(escape_text(title), fontsize=10)
    ax.set_xlabel(escape_text(xlabel))
    ax.set_ylabel(escape_text(ylabel))
    ax.grid(True, which="both", alpha=0.25)


def _size_minor_label(value: float, _pos: int) -> str:
    mantissa = value / 10 ** np.floor(np.log10(value))
    return compact(value) if round(mantissa) in (2, 5) else ""


def escape_text(text: str) -> str:
    """Escape ``$`` so that matplotlib never parses user strings as mathtext."""
    return str(text).replace("$", r"\$")


def add_legend(fig: Figure, handles: list[Line2D]) -> None:
    """One legend for the whole figure, outside the panels on the right."""
    fig.legend(handles=handles, loc="outside right upper", fontsize=8, frameon=False)


def _family_handles(colors: Mapping[str, object], families: Sequence[str]) -> list[Line2D]:
    """Legend entries for the families present."""
    return [line_handle(colors[family], family) for family in sorted(families)]


def _fit_handles(curves: Sequence[Mapping]) -> list[Line2D]:
    """Legend entries for the fitted-curve line styles, when any fit is drawn."""
    if not curves:
        return []
    handles = [line_handle("black", "fit", ls="--")]
    if any(fit.get("band") for fit in curves):
        handles.append(_band_handle())
    if not all(fit.get("converged", True) for fit in curves):
        handles.append(line_handle("black", "fit (not converged)", ls=":"))
    return handles


def line_handle(color: object, label: str, ls: str = "-") -> Line2D:
    """A legend entry showing a line."""
    return Line2D([], [], color=color, ls=ls, label=escape_text(label))


def _marker_handle(marker: str, label: str, color: object = "grey") -> Line2D:
    """A legend entry showing a marker only."""
    return Line2D([], [], color=color, marker=marker, ls="", label=escape_text(label))


def _band_handle() -> Patch:
    """A legend entry for the shaded 95% bootstrap band of the fits."""
    return Patch(color="black", alpha=0.15, label="95% bootstrap band")


def backtest_figure(backtests: Sequence[Mapping], *, name: str, caption: str) -> ReportFigure:
    """Predicted vs observed loss of the held-out runs, one panel per metric, error bars for
    the prediction intervals, colour per family × paradigm; the dotted line is y = x."""
    rows = []
    for bt in backtests:
        for point in bt.get("points") or []:
            interval = point.get("interval") or [np.nan, np.nan]
            rows.append(
                {
                    "metric": str(bt.get("metric")),
                    "combo": (str(bt.get("family")), str(bt.get("paradigm"))),
                    "truth": as_float(point.get("truth")),
                    "prediction": as_float(point.get("prediction")),
                    "lo": as_float(interval[0]),
                    "hi": as_float(interval[1]),
                }
            )
    frame = pd.DataFrame(rows)
    if frame.empty:
        return ReportFigure(name, caption, None, ["No backtest could be made."])
    frame, notes = _log_safe(frame, ["truth", "prediction"], "backtest prediction")
    if frame.empty:
        return ReportFigure(name, caption, None, notes)
    combos = sorted(set(frame["combo"]))
    cmap = colormaps["tab10"]
    colors = {combo: cmap(i % cmap.N) for i, combo in enumerate(combos)}
    metrics = sorted(frame["metric"].unique(), key=lambda m: m != "loss:id")
    fig, axes = panel_grid(1, len(metrics), sharey=False)
    for ax, metric in zip(axes[0], metrics, strict=True):
        panel = frame[frame["metric"] == metric]
        for combo, group in panel.groupby("combo"):
            lo = np.clip(group["prediction"] - group["lo"], 0, None).fillna(0)
            hi = np.clip(group["hi"] - group["prediction"], 0, None).fillna(0)
            ax.errorbar(
                group["truth"],
                group["prediction"],
                yerr=[lo.to_numpy(), hi.to_numpy()],
                fmt="o",
                ms=5,
                capsize=2,
                color=colors[combo],
            )
        low = min(panel["truth"].min(), panel["prediction"].min())
        high = max(panel["truth"].max(), panel["prediction"].max())
        ax.plot([low, high], [low, high], color="grey", lw=0.8, ls=":")
        label = metric.removeprefix("loss:")
        style_axes(ax, label, "observed loss", "predicted loss", plain_x=True)
    handles = [_marker_handle("o", f"{f} / {p}", colors[(f, p)]) for f, p in combos]
    add_legend(fig, [*handles, line_handle("grey", "y = x", ls=":")])
    return ReportFigure(name, caption, fig, notes)


CURVE_POINTS = 400
"""Most training-loss points drawn per run (longer curves are thinned evenly)."""


def training_curves(
    curves: pd.DataFrame, runs: pd.DataFrame, *, family: str, paradigm: str, name: str
) -> ReportFigure:
    """Training (solid) and validation (dashed, dots) loss vs step of the runs of one cell
    (``family`` × ``paradigm``), one panel per D, colour per target N (the same N has the same
    colour in every cell). ``curves``: rows of ``run_id``, ``step``, ``train_loss``,
    ``val_loss`` (see :func:`ecgscale.train.metrics.read_metrics`)."""
    unit = PRETRAIN_UNITS.get(paradigm, "loss")
    caption = (
        f"Training curves of {family} / {paradigm}: training loss (solid, the mean since the "
        f"previous logged step) and validation loss (dashed, dots) vs step, one panel per D, "
        f"colour by N; loss: {unit}."
    )
    cell = runs[(runs["family"] == family) & (runs["paradigm"] == paradigm)]
    points = curves.merge(cell[["run_id", "target_params", "data_size"]], on="run_id")
    notes = []
    missing = sorted(set(cell["run_id"]) - set(points["run_id"]))
    if missing:
        notes.append(f"{len(missing)} run(s) of this cell have no training curve yet.")
    if points.empty:
        return ReportFigure(name, caption, None, notes)
    ladder = sorted(runs["target_params"].unique())
    cmap = colormaps["viridis"]
    colors = {n: cmap(0.9 * i / max(len(ladder) - 1, 1)) for i, n in enumerate(ladder)}
    sizes = sorted(points["data_size"].unique())
    fig, axes = panel_grid(1, len(sizes), sharey=True)
    dropped = 0
    axes[0][0].set_ylabel(escape_text(f"loss ({unit})"))
    for ax, size in zip(axes[0], sizes, strict=True):
        for _, run in points[points["data_size"] == size].groupby("run_id"):
            color = colors[run["target_params"].iloc[0]]
            train, lost = _positive(run, "train_loss")
            val, lost_val = _positive(run, "val_loss")
            dropped += lost + lost_val
            train = _thin(train, CURVE_POINTS)
            ax.plot(train["step"], train["train_loss"], lw=1, color=color)
            ax.plot(val["step"], val["val_loss"], ls="--", marker="o", ms=3, lw=1, color=color)
        ax.set_yscale("log")
        ax.yaxis.set_major_formatter(PlainLogFormatter())
        ax.yaxis.set_minor_formatter(PlainLogFormatter(labelOnlyBase=False))
        ax.set_title(escape_text(f"D = {compact(size)}"), fontsize=10)
        ax.set_xlabel("step")
        ax.grid(True, which="both", alpha=0.25)
    if dropped:
        notes.append(f"{dropped} loss value(s) not positive and finite are left out.")
    present = sorted(points["target_params"].unique())
    handles = [line_handle(colors[n], f"N = {compact(n)}") for n in present]
    handles += [line_handle("black", "training"), line_handle("black", "validation", ls="--")]
    add_legend(fig, handles)
    return ReportFigure(name, caption, fig, notes)


def _thin(rows: pd.DataFrame, most: int) -> pd.DataFrame:
    """At most ``most`` of ``rows``, evenly spaced, the first and last kept."""
    if len(rows) <= most:
        return rows
    return rows.iloc[np.unique(np.linspace(0, len(rows) - 1, most).round().astype(int))]


def _positive(run: pd.DataFrame, column: str) -> tuple[pd.DataFrame, int]:
    """The rows of ``run`` with a positive, finite ``column`` (sorted by step), and how many
    rows that have a value in it are left out."""
    values = pd.to_numeric(run[column], errors="coerce")
    keep = np.isfinite(values) & (values > 0)
    return run[keep].sort_values("step"), int((values.notna() & ~keep).sum())
