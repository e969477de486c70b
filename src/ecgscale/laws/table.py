"""Fitting a table of results: one law per group of rows, with columns named by their role.

Every form reads a target column and one or two input columns, named by *role*:

============  ======  ============================================================
form          target  inputs
============  ======  ============================================================
power         loss    x (or n, or d): ``L = E + A·x^−α``
joint         loss    n, d: ``L = E + A·N^−α + B·D^−β``
kaplan        loss    n, d: ``L = [(N_c/N)^(α_N/α_D) + D_c/D]^α_D``
loss_to_loss  y       x: ``L_y = K·(L_x − E_x)^κ + E_y``; with ``irreducible="power"`` also
                      size: E_x and E_y are held at the E of power-law fits of each loss
                      against the size, in the group
transfer      d_t     d_f, n: ``D_T = k·D_F^α·N^β``
============  ======  ============================================================

A role whose column is not named reads the column of the role's own name. Inputs that cannot
be fitted (a missing column, NaN, a non-positive value, fewer rows than parameters, a single
distinct size, inputs that vary together) stop everything before any fit, with a one-line
:class:`FitError` naming the column and the group.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ecgscale.laws.fit import (
    DEFAULT_DELTA,
    MIN_BOOT_DOF,
    FitError,
    FitResult,
    fit,
    fit_with_intervals,
)
from ecgscale.laws.forms import Array, Form, HeldLossToLossForm, get_form
from ecgscale.laws.verdicts import exponent_verdicts, exponent_words

ROLES: dict[str, tuple[str, tuple[str, ...]]] = {
    "power": ("loss", ("x",)),
    "joint": ("loss", ("n", "d")),
    "kaplan": ("loss", ("n", "d")),
    "loss_to_loss": ("y", ("x",)),
    "transfer": ("d_t", ("d_f", "n")),
}
"""Target role and input roles of each form; input roles are the form's input names."""
IRREDUCIBLE = ("fit", "power")
"""How a loss-to-loss fit gets E_x and E_y: fitted with it, or held at power-law fits' E."""
_WHAT = {"loss": "losses", "y": "losses", "x": "sizes and losses", "d_t": "D_T values"}


@dataclass(frozen=True)
class GroupFit:
    """The law fitted to one group of rows: the fit, the data it saw and how it was read."""

    group: dict[str, Any]
    """Group column → value (empty when the table is not grouped)."""
    result: FitResult
    columns: dict[str, str]
    """Role → table column, including the target."""
    y: Array = field(repr=False, compare=False)
    inputs: dict[str, Array] = field(repr=False, compare=False)
    """Input name → values, as fitted."""
    irreducible_fits: dict[str, FitResult] = field(default_factory=dict)
    """Loss-to-loss with ``irreducible="power"``: the power fits E_x (``"x"``), E_y (``"y"``)
    were taken from."""
    notes: tuple[str, ...] = ()

    @property
    def label(self) -> str:
        """``col=value, ...`` of the group, or ``all rows``."""
        return _group_label(self.group) or "all rows"

    def summary(self) -> str:
        """The group's label, its fit's summary and any notes."""
        lines = [f"[{self.label}] {self.result.summary()}"]
        for role, sub in self.irreducible_fits.items():
            lines.append(
                f"  E_{role} from power fit of {self.columns[role]!r} against"
                f" {self.columns['size']!r}: E = {sub.params['E']:.6g}"
            )
        lines += [f"  note: {note}" for note in self.notes]
        return "\n".join(lines)

    def to_dict(self, include_samples: bool = False) -> dict[str, Any]:
        """JSON-serialisable: group, columns, the fit's dict and its exponents' ``verdicts`` (as
        in a study's fits.json), power fits held E came from, notes."""
        fit = self.result.to_dict(include_samples=include_samples)
        out: dict[str, Any] = {
            "group": {k: _plain_value(v) for k, v in self.group.items()},
            "columns": dict(self.columns),
            **fit,
            "verdicts": exponent_verdicts(fit),
        }
        if self.irreducible_fits:
            out["irreducible_fits"] = {k: v.to_dict() for k, v in self.irreducible_fits.items()}
        out["notes"] = list(self.notes)
        return out


def read_table(path: str | Path) -> pd.DataFrame:
    """A ``.csv`` or ``.parquet`` table."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such results table")
    if path.suffix.lower() == ".csv":
        return pd.read_csv(path)
    if path.suffix.lower() == ".parquet":
        return pd.read_parquet(path)
    raise FitError(f"{path}: a results table is a .csv or .parquet file")


def resolve_columns(form: str, columns: Mapping[str, str] | None = None) -> dict[str, str]:
    """Role → column for ``form``: the given names, the role's own name for the others.

    A power fit's ``x`` may be given as ``n`` or ``d``; a loss-to-loss fit also reads ``size``
    when its irreducible losses come from power fits (the caller adds that role).
    """
    if form not in ROLES:
        raise FitError(f"unknown form {form!r}; choose from {sorted(ROLES)}")
    target, inputs = ROLES[form]
    given = dict(columns or {})
    if form == "power" and "x" not in given:
        sizes = [r for r in ("n", "d") if r in given]
        if len(sizes) > 1:
            raise FitError("a power fit has one size: name x, n or d, not both n and d")
        if sizes:
            given["x"] = given.pop(sizes[0])
    allowed = {target, *inputs} | ({"size"} if form == "loss_to_loss" else set())
    unused = sorted(set(given) - allowed)
    if unused:
        raise FitError(
            f"a {form} fit reads columns for {', '.join(sorted(allowed))};"
            f" {', '.join(unused)} is not one of them"
        )
    resolved = {role: given.get(role, role) for role in (target, *inputs)}
    if "size" in given:
        resolved["size"] = given["size"]
    return resolved


def fit_table(
    table: pd.DataFrame | str | Path,
    *,
    form: str,
    columns: Mapping[str, str] | None = None,
    group: Sequence[str] | None = None,
    irreducible: str = "fit",
    delta: float = DEFAULT_DELTA,
    n_boot: int = 0,
    ci: float = 0.95,
    seed: int = 0,
) -> list[GroupFit]:
    """Fit ``form`` to every group of rows of ``table`` (a DataFrame, or a .csv/.parquet path).

    ``columns`` maps roles to column names (e.g. ``{"n": "N", "d": "D", "loss": "L"}``, see
    the module docstring); ``group`` lists columns whose value combinations are fitted apart.
    ``n_boot > 0`` adds percentile bootstrap intervals (level ``ci``) to fits with at least
    :data:`MIN_BOOT_DOF` degrees of freedom. Every group is checked before any is fitted; a
    problem raises a one-line :class:`FitError` naming the column and the group.
    """
    if isinstance(table, pd.DataFrame):
        return _fit_frame(table, form, columns, group, irreducible, delta, n_boot, ci, seed)
    frame = read_table(table)
    try:
        return _fit_frame(frame, form, columns, group, irreducible, delta, n_boot, ci, seed)
    except FitError as error:  # say which file
        raise FitError(f"{table}: {error}") from None


def _fit_frame(
    frame: pd.DataFrame,
    form: str,
    columns: Mapping[str, str] | None,
    group: Sequence[str] | None,
    irreducible: str,
    delta: float,
    n_boot: int,
    ci: float,
    seed: int,
) -> list[GroupFit]:
    """:func:`fit_table` of a table in memory."""
    if irreducible not in IRREDUCIBLE:
        raise FitError(f"irreducible must be one of {list(IRREDUCIBLE)}, got {irreducible!r}")
    roles = resolve_columns(form, columns)
    if form != "loss_to_loss" and irreducible != "fit":
        raise FitError(f"irreducible={irreducible!r} applies to loss_to_loss fits only")
    if irreducible == "power" and "size" not in roles:
        roles["size"] = "size"
    if irreducible == "fit" and "size" in roles:
        raise FitError("a size column is read only with irreducible='power'")
    group = list(group or [])
    values = _checked_values(frame, roles, group)
    parts = (
        list(frame.groupby(group, sort=True).indices.items())
        if group
        else [((), np.arange(len(frame)))]
    )
    inputs = ROLES[form][1]
    n_free = 2 if irreducible == "power" else get_form(form).n_params
    plans = []
    for key, rows in parts:
        labels = dict(zip(group, key if isinstance(key, tuple) else (key,), strict=True))
        data = {role: v[rows] for role, v in values.items()}
        plans.append((labels, data))
        _check_group(form, n_free, inputs, data, roles, labels)
        if irreducible == "power":  # the power fits of each loss against the size
            _check_group("power", get_form("power").n_params, ("size",), data, roles, labels)
    return [
        _fit_group(form, labels, data, roles, irreducible, delta, n_boot, ci, seed)
        for labels, data in plans
    ]


def _group_label(group: Mapping[str, Any]) -> str:
    """``col=value, ...``, numbers in their shortest form (``D=1e+06``)."""
    return ", ".join(
        f"{k}={v:g}" if isinstance(v, (float, np.floating)) else f"{k}={v}"
        for k, v in group.items()
    )


def _label(labels: Mapping[str, Any]) -> str:
    """The prefix of an error in a group: ``group col=value, ...: `` (none if ungrouped)."""
    return f"group {_group_label(labels)}: " if labels else ""


def _plain_value(value: Any) -> Any:
    """A numpy scalar as the Python value JSON can hold."""
    return value.item() if isinstance(value, np.generic) else value


def _checked_values(
    frame: pd.DataFrame, roles: Mapping[str, str], group: Sequence[str]
) -> dict[str, Array]:
    """Each role's column as floats: present, numeric, finite and > 0, or a FitError."""
    if frame.empty:
        raise FitError("the table has no rows")
    names = ", ".join(map(str, frame.columns))
    for col in group:
        if col not in frame.columns:
            raise FitError(f"group column {col!r} is not in the table (columns: {names})")
        missing = frame[col].isna().to_numpy()
        if missing.any():
            first = frame.index[int(np.flatnonzero(missing)[0])]
            raise FitError(
                f"group column {col!r} has {int(missing.sum())} empty value(s)"
                f" (first at row {first})"
            )
    values = {}
    for role, col in roles.items():
        if col not in frame.columns:
            raise FitError(f"column {col!r} ({role}) is not in the table (columns: {names})")
        raw = frame[col]
        numeric = pd.to_numeric(raw, errors="coerce").to_numpy(dtype=float)
        where = f"column {col!r} ({role})"
        _check_column(where, frame.index, raw.notna().to_numpy() & np.isnan(numeric), "non-numeric")
        _check_column(where, frame.index, ~np.isfinite(numeric), "NaN/inf")
        what = _WHAT.get(role, "sizes")
        _check_column(where, frame.index, numeric <= 0, "non-positive", f"; {what} must be > 0")
        values[role] = numeric
    return values


def _check_column(where: str, index: pd.Index, bad: Array, kind: str, tail: str = "") -> None:
    """Raise a FitError counting the ``bad`` rows, naming the first."""
    if bad.any():
        first = int(np.flatnonzero(bad)[0])
        raise FitError(
            f"{where} has {int(bad.sum())} {kind} value(s) (first at row {index[first]}){tail}"
        )


def _check_group(
    form: str,
    n_free: int,
    inputs: Sequence[str],
    data: Mapping[str, Array],
    roles: Mapping[str, str],
    labels: Mapping[str, Any],
) -> None:
    """Enough rows, distinct sizes and independent ``inputs`` for ``n_free`` parameters."""
    where = _label(labels)
    n_rows = data[inputs[0]].size
    if n_rows < n_free:
        raise FitError(f"{where}{n_rows} row(s) for the {n_free} parameters of a {form} fit")
    for role in inputs:
        distinct = np.unique(data[role])
        if distinct.size < 2:
            raise FitError(
                f"{where}column {roles[role]!r} ({role}) has a single value ({distinct[0]:g});"
                f" a {form} fit needs at least 2"
            )
    n_points = len(np.unique(np.column_stack([data[r] for r in inputs]), axis=0))
    if n_points < n_free:
        cols = ", ".join(roles[r] for r in inputs)
        raise FitError(
            f"{where}only {n_points} distinct ({cols}) point(s) for the {n_free} parameters"
            f" of a {form} fit"
        )
    if len(inputs) > 1:
        design = np.column_stack([np.ones(n_rows)] + [np.log(data[r]) for r in inputs])
        if np.linalg.matrix_rank(design) < design.shape[1]:
            a, b = (roles[r] for r in inputs)
            raise FitError(
                f"{where}log {a!r} and log {b!r} vary together (one is a linear function of"
                f" the other); a {form} fit cannot separate them"
            )


def _fit_group(
    form: str,
    labels: dict[str, Any],
    data: dict[str, Array],
    roles: dict[str, str],
    irreducible: str,
    delta: float,
    n_boot: int,
    ci: float,
    seed: int,
) -> GroupFit:
    """Fit one group (and the power fits a held E comes from), with intervals when asked."""
    where = _label(labels)
    target, input_roles = ROLES[form]
    inputs = {r: data[r] for r in input_roles}
    law: str | Form = form
    sub_fits: dict[str, FitResult] = {}
    notes: list[str] = []
    try:
        if irreducible == "power":
            law, sub_fits = _held_form(data, roles, delta, seed)
            notes.append(
                "E_x and E_y are held at the power fits' E: their uncertainty is not in the"
                " intervals"
            )
        result = fit_with_intervals(
            law, data[target], n_boot=n_boot, seed=seed, ci=ci, delta=delta, **inputs
        )
        if n_boot and result.intervals is None:
            notes.append(
                f"no intervals: {result.dof} degree(s) of freedom, bootstrap needs {MIN_BOOT_DOF}"
            )
    except FitError as err:
        raise FitError(f"{where}{err}") from None
    if not result.converged:
        notes.append(f"not converged: {result.message}")
    return GroupFit(
        group=labels,
        result=result,
        columns=dict(roles),
        y=data[target],
        inputs=inputs,
        irreducible_fits=sub_fits,
        notes=tuple(notes),
    )


def _held_form(
    data: Mapping[str, Array], roles: Mapping[str, str], delta: float, seed: int
) -> tuple[Form, dict[str, FitResult]]:
    """Loss-to-loss with E_x, E_y held at the E of power fits of each loss against the size."""
    fits, held = {}, {}
    for role in ("x", "y"):
        try:
            fits[role] = fit("power", data[role], x=data["size"], delta=delta, seed=seed)
        except FitError as err:
            raise FitError(
                f"power fit of {roles[role]!r} against {roles['size']!r}: {err}"
            ) from None
        held[role] = fits[role].params["E"]
        smallest = float(data[role].min())
        if held[role] >= smallest:
            raise FitError(
                f"E = {held[role]:.6g} of the power fit of {roles[role]!r} against"
                f" {roles['size']!r} is not below its smallest value ({smallest:.6g});"
                " fit E_x and E_y instead (irreducible='fit')"
            )
    return HeldLossToLossForm(e_x=held["x"], e_y=held["y"]), fits


def format_fits(fits: Sequence[GroupFit]) -> str:
    """A text table of fits of one form: a row per group with points, convergence and each
    parameter with its interval (held parameters marked), then each group's exponent verdicts
    (:func:`ecgscale.laws.verdicts.exponent_verdict`) and notes."""
    if not fits:
        return "no fits"
    form = get_form(fits[0].result.form)
    columns = ", ".join(f"{role}={col}" for role, col in fits[0].columns.items())
    head = f"{form.name}: {form.formula}  (columns: {columns})"
    booted = [f.result for f in fits if f.result.intervals is not None]
    if booted:
        head += f"; {100 * booted[0].ci:g}% bootstrap intervals, {booted[0].n_boot} resamples"
    rows = [["group", "points", "converged", *form.param_names]]
    for f in fits:
        r = f.result
        held = {f"E_{role}" for role in f.irreducible_fits}
        cells = [f.label, str(r.n_points), "yes" if r.converged else "NO"]
        for p in form.param_names:
            cell = f"{r.params[p]:.4g}"
            if p in held:
                cell += " (held)"
            elif r.intervals is not None:
                lo, hi = r.intervals[p]
                cell += f" [{lo:.3g}, {hi:.3g}]"
            cells.append(cell)
        rows.append(cells)
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = [head]
    for row in rows:
        cells = [c.ljust(w) for c, w in zip(row, widths, strict=True)]
        cells[1] = row[1].rjust(widths[1])  # the point counts, right-aligned
        lines.append("  ".join(cells).rstrip())
    lines += [  # what of the table may be stated as a finding
        f"{f.label}: {exponent_words(f.result.to_dict())}" for f in fits if f.result.exponent_bounds
    ]
    lines += [f"{f.label}: {note}" for f in fits for note in f.notes]
    return "\n".join(lines)
