"""``ecgscale fit``: laws fitted to a study folder or to a results table."""

from __future__ import annotations

import json
from pathlib import Path

import click
from click.core import ParameterSource

from ecgscale.cli.common import friendly_errors

LAW_FORMS = ("power", "joint", "kaplan", "loss_to_loss", "transfer")
"""The forms `ecgscale fit` fits to a results table (ecgscale.laws.table.ROLES)."""
TABLE_SUFFIXES = (".csv", ".parquet")
COLUMN_OPTIONS = {
    "loss": "Loss column (power, joint, kaplan).",
    "n": "Model-size column (joint, kaplan, transfer; or power's size).",
    "d": "Data-size column (joint, kaplan; or power's size).",
    "x": "Power: size column. Loss-to-loss: the source loss column.",
    "y": "Loss-to-loss: the target loss column.",
    "d_f": "Transfer: fine-tuning data column.",
    "d_t": "Transfer: transferred-data column.",
    "size": "Loss-to-loss with --irreducible power: the size each loss is fitted against.",
}


def _column_options(func):
    """--loss, --n, --d, --x, --y, --d-f, --d-t, --size: the table column of each role."""
    for role, text in reversed(COLUMN_OPTIONS.items()):
        flag = "--" + role.replace("_", "-")
        func = click.option(flag, role, metavar="COL", help=f"{text} Default: {role}.")(func)
    return func


@click.command()
@click.argument("target", type=click.Path(path_type=Path))
@click.option("--form", type=click.Choice(LAW_FORMS), help="Law to fit to a results table.")
@_column_options
@click.option("--group", metavar="COL,COL", help="Fit each combination of these columns apart.")
@click.option(
    "--irreducible",
    type=click.Choice(["fit", "power"]),
    default="fit",
    show_default=True,
    help="Loss-to-loss: fit E_x and E_y, or hold them at the E of power fits of each loss "
    "against --size, per group.",
)
@click.option(
    "--boot",
    type=click.IntRange(min=0),
    default=200,
    show_default=True,
    help="Bootstrap resamples for the intervals (0: none).",
)
@click.option(
    "--delta",
    type=click.FloatRange(min=0, min_open=True),
    default=1e-3,
    show_default=True,
    help="Huber threshold on log residuals.",
)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option(
    "--out",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Fits JSON (default: <table>.fits.json beside the table).",
)
@click.option(
    "--plot",
    type=click.Path(file_okay=False, path_type=Path),
    help="Folder for the figure (<table>.<form>.png).",
)
@friendly_errors
def fit(target, form, group, irreducible, boot, delta, seed, out, plot, **columns) -> None:
    """Fit laws to TARGET: a study folder (writes fits.json), or a results table (.csv or
    .parquet; writes <table>.fits.json), one fit per --group. For example:

    \b
    ecgscale fit studies/demo
    ecgscale fit runs.csv --form joint --n N --d D --loss L --group arch
    """
    if target.suffix.lower() in TABLE_SUFFIXES:
        names = {k: v for k, v in columns.items() if v is not None}
        _fit_table(target, form, names, group, irreducible, boot, delta, seed, out, plot)
        return
    if target.is_file():
        raise ValueError(f"{target}: fit a study folder or a .csv or .parquet table")
    ctx = click.get_current_context()
    given = [
        p.opts[0]
        for p in ctx.command.params
        if p.name != "target" and ctx.get_parameter_source(p.name) is not ParameterSource.DEFAULT
    ]
    if given:
        raise click.UsageError(
            f"{', '.join(given)}: options for a results table (.csv or .parquet),"
            " not a study folder"
        )
    _fit_study(target)


def _fit_table(
    path: Path,
    form: str | None,
    columns: dict[str, str],
    group: str | None,
    irreducible: str,
    boot: int,
    delta: float,
    seed: int,
    out: Path | None,
    plot: Path | None,
) -> None:
    """``ecgscale fit`` on a results table: print a row per group, write JSON (and a figure)."""
    from ecgscale.laws.table import fit_table, format_fits

    if form is None:
        raise click.UsageError(f"a results table needs --form ({', '.join(LAW_FORMS)})")
    groups = [c.strip() for c in (group or "").split(",") if c.strip()]
    out = out or path.with_name(f"{path.stem}.fits.json")
    if out.resolve() == path.resolve():
        raise click.BadParameter(f"{out} is the table being fitted", param_hint="--out")
    fits = fit_table(
        path,
        form=form,
        columns=columns,
        group=groups,
        irreducible=irreducible,
        delta=delta,
        n_boot=boot,
        seed=seed,
    )
    click.echo(format_fits(fits))
    content = {
        "table": str(path),
        "form": form,
        "group": groups,
        "irreducible": irreducible,
        "delta": delta,
        "n_boot": boot,
        "seed": seed,
        "fits": [f.to_dict() for f in fits],
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(content, indent=1))
    click.echo(f"fits: {out}")
    if plot is not None:
        from ecgscale.report.law_figures import plot_fits, save_figure

        figure = save_figure(plot_fits(fits), plot / f"{path.stem}.{form}.png")
        click.echo(f"figure: {figure}")


def _fit_study(study_dir: Path) -> None:
    """``ecgscale fit`` on a study folder: fit its laws into fits.json and list them, each
    exponent with its interval (where bootstrapped) and whether it is determined."""
    from ecgscale.laws.verdicts import exponent_words
    from ecgscale.study.runner import fit_laws

    path = fit_laws(study_dir, progress=True)
    content = json.loads(path.read_text())
    for f in content["fits"]:
        p, law = f["params"], f"L({f['x']}) {json.dumps(f['slice'])}"
        click.echo(
            f"{f['family']:>12} {f['paradigm']:>4} {f['metric']:<22} {law}: E={p['E']:.4g} "
            f"A={p['A']:.4g} {exponent_words(f, values=True)}"
        )
    for f in content.get("joint") or []:
        click.echo(
            f"{f['family']:>12} {f['paradigm']:>4} {f['metric']:<22} L(N, D) joint: "
            f"{exponent_words(f, values=True)}"
        )
    for f in content.get("loss_to_loss") or []:
        click.echo(
            f"{f['family']:>12} {f['paradigm']:>4} {f['metric']:<22} against loss:id, "
            f"loss-to-loss: {exponent_words(f, values=True)}"
        )
    for g in content["gaps"]:
        click.echo(
            f"not fitted: {g['family']} {g['paradigm']} {g['metric']} L({g['x']}) "
            f"{json.dumps(g['slice'])}: {g['reason']}"
        )
    click.echo(f"fits: {path}")
