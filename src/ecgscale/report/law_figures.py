"""Figures of fitted laws: the points, the fitted curve and its bootstrap interval band.

One builder per form family, each taking the :class:`~ecgscale.laws.table.GroupFit` list of
one :func:`~ecgscale.laws.table.fit_table` call and returning a standalone Agg figure (global
pyplot state is untouched), in the style of the study report. Fitted curves are dashed (dotted
when the fit did not converge); bands are the percentile bootstrap band of the predictions and
are drawn only for fits with bootstrap samples.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
from matplotlib import colormaps
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from ecgscale.laws.fit import predict_interval
from ecgscale.laws.forms import Array, get_form
from ecgscale.laws.table import GroupFit
from ecgscale.numformat import compact
from ecgscale.report.figures import (
    FIGURE_DPI,
    add_legend,
    escape_text,
    line_handle,
    panel_grid,
    style_axes,
)

MAX_SLICES = 6
"""At most this many slices (curves) per panel; more distinct values are binned."""
CURVE_POINTS = 100


def _against_x(fits: Sequence[GroupFit]) -> tuple[Figure, Axes, list]:
    """One log-log panel: each group's points and fitted curve against ``x``, a colour each."""
    fig, axes = panel_grid(1, 1, sharey=False)
    ax = axes[0, 0]
    colors = _group_colors(fits)
    for f, color in zip(fits, colors, strict=True):
        ax.scatter(f.inputs["x"], f.y, s=14, color=color)
        _curve(ax, f, color, "x", {"x": _span(f.inputs["x"])})
    return fig, ax, colors


def plot_power(fits: Sequence[GroupFit]) -> Figure:
    """Loss against the size, log-log: one colour per group."""
    fig, ax, colors = _against_x(fits)
    columns = fits[0].columns
    style_axes(ax, _title(fits), columns["x"], columns["loss"])
    add_legend(fig, [line_handle(c, f.label) for f, c in zip(fits, colors, strict=True)])
    return fig


def plot_joint(fits: Sequence[GroupFit]) -> Figure:
    """Joint and Kaplan forms: per group, loss against N with a curve per D slice (left) and
    loss against D with a curve per N slice (right)."""
    fig, axes = panel_grid(len(fits), 2, sharey=False)
    for row, f in zip(axes, fits, strict=True):
        for ax, (along, across) in zip(row, (("n", "d"), ("d", "n")), strict=True):
            _sliced_panel(ax, f, along, across)
            style_axes(ax, f.label, f.columns[along], f.columns["loss"])
    fig.suptitle(escape_text(_title(fits)), fontsize=10)
    return fig


def plot_loss_to_loss(fits: Sequence[GroupFit]) -> Figure:
    """One loss against another, log-log: one colour per group, and the line y = x."""
    fig, ax, colors = _against_x(fits)
    low = min(min(f.inputs["x"].min(), f.y.min()) for f in fits)
    high = max(max(f.inputs["x"].max(), f.y.max()) for f in fits)
    ax.plot([low, high], [low, high], color="grey", lw=0.8, ls=":")
    columns = fits[0].columns
    style_axes(ax, _title(fits), columns["x"], columns["y"], plain_x=True)
    handles = [line_handle(c, f.label) for f, c in zip(fits, colors, strict=True)]
    add_legend(fig, [*handles, line_handle("grey", "y = x", ls=":")])
    return fig


def plot_transfer(fits: Sequence[GroupFit]) -> Figure:
    """Transferred data D_T against fine-tuning data D_F: per group, a curve per N slice."""
    fig, axes = panel_grid(1, len(fits), sharey=False)
    for ax, f in zip(axes[0], fits, strict=True):
        _sliced_panel(ax, f, "d_f", "n")
        style_axes(ax, f.label, f.columns["d_f"], f.columns["d_t"])
    fig.suptitle(escape_text(_title(fits)), fontsize=10)
    return fig


PLOTS: dict[str, Callable[[Sequence[GroupFit]], Figure]] = {
    "power": plot_power,
    "joint": plot_joint,
    "kaplan": plot_joint,
    "loss_to_loss": plot_loss_to_loss,
    "transfer": plot_transfer,
}
"""The figure builder of each form."""


def plot_fits(fits: Sequence[GroupFit]) -> Figure:
    """The figure of fits of one form (the builder from :data:`PLOTS`)."""
    forms = sorted({f.result.form for f in fits})
    if len(forms) != 1:
        raise ValueError(f"plot the fits of one form at a time, got {forms or 'none'}")
    if forms[0] not in PLOTS:
        raise ValueError(f"no figure for form {forms[0]!r}; forms with one: {sorted(PLOTS)}")
    return PLOTS[forms[0]](fits)


def save_figure(fig: Figure, path: str | Path) -> Path:
    """Write ``fig`` as an image (format from the suffix, e.g. .png, .pdf, .svg)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=FIGURE_DPI)
    return path


def _title(fits: Sequence[GroupFit]) -> str:
    form = get_form(fits[0].result.form)
    return f"{form.name}: {form.formula}"


def _group_colors(fits: Sequence[GroupFit]) -> list[tuple]:
    cmap = colormaps["tab10"]
    return [cmap(i % cmap.N) for i in range(len(fits))]


def _span(values: Array) -> Array:
    """A log-spaced grid over the observed range."""
    return np.geomspace(values.min(), values.max(), CURVE_POINTS)


def _slices(values: Array) -> tuple[Array, Array]:
    """Slice levels and each point's slice: the distinct values, or log-quantile bins of at
    most :data:`MAX_SLICES` (at the geometric mean of their members) when there are more."""
    distinct = np.unique(values)
    if distinct.size <= MAX_SLICES:
        return distinct, np.searchsorted(distinct, values)
    edges = np.quantile(np.log(values), np.linspace(0, 1, MAX_SLICES + 1)[1:-1])
    member = np.searchsorted(edges, np.log(values), side="right")
    used = np.unique(member)
    levels = np.array([np.exp(np.log(values[member == m]).mean()) for m in used])
    return levels, np.searchsorted(used, member)


def _sliced_panel(ax: Axes, f: GroupFit, along: str, across: str) -> None:
    """Points and fitted curves against input ``along``, one colour per slice of ``across``."""
    levels, member = _slices(f.inputs[across])
    cmap = colormaps["viridis"]
    grid = _span(f.inputs[along])
    for i, level in enumerate(levels):
        color = cmap(0.9 * i / max(len(levels) - 1, 1))
        mine = member == i
        label = f"{f.columns[across]} = {compact(level)}"
        ax.scatter(f.inputs[along][mine], f.y[mine], s=14, color=color, label=escape_text(label))
        _curve(ax, f, color, along, {along: grid, across: np.full_like(grid, level)})
    ax.legend(fontsize=7, frameon=False)


def _curve(ax: Axes, f: GroupFit, color: object, along: str, inputs: dict[str, Array]) -> None:
    """The fitted law at ``inputs`` against ``inputs[along]``, over its bootstrap band."""
    if f.result.samples is not None:
        lo, hi = predict_interval(f.result, **inputs)
        ax.fill_between(inputs[along], lo, hi, color=color, alpha=0.18, lw=0)
    style = "--" if f.result.converged else ":"
    ax.plot(inputs[along], f.result.predict(**inputs), ls=style, lw=1.3, color=color)
