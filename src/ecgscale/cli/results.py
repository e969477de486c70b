"""``ecgscale results`` and ``ecgscale report``: a study's tables and its HTML report."""

from __future__ import annotations

from pathlib import Path

import click

from ecgscale.cli.common import friendly_errors


@click.command()
@click.argument("study_dir", type=click.Path(file_okay=False, path_type=Path))
@friendly_errors
def report(study_dir) -> None:
    """Write the study's HTML report (needs fits.json: run `ecgscale fit` first)."""
    from ecgscale.study.runner import write_report

    click.echo(f"report: {write_report(study_dir)}")


TABLES = ("runs", "sweep", "labels", "tasks", "scratch", "effective", "roles")


@click.command()
@click.argument("study_dir", type=click.Path(file_okay=False, path_type=Path))
@click.option(
    "--table",
    type=click.Choice(TABLES),
    default="runs",
    show_default=True,
    help="runs: one row per run, a loss (and interval) per evaluation set; sweep: the "
    "learning-rate sweep's runs, each rung's choice marked; labels: per run, "
    "set, method and label with AUROC/F1/BCE intervals; tasks: unseen-task results; scratch: "
    "from-scratch task models; effective: task results with effective data D_E, D_T; roles: "
    "the audit of roles (records, patients, overlap with every pre-training subset).",
)
@click.option(
    "--out", type=click.Path(dir_okay=False, path_type=Path), help="Write .csv or .parquet."
)
@friendly_errors
def results(study_dir, table, out) -> None:
    """Print or export a study's results tables."""
    import pandas as pd

    from ecgscale.study.results import Results, read_fits
    from ecgscale.study.runner import study_roles, study_tables

    if table == "roles":
        _write_frame(study_roles(study_dir), table, out)
        return
    tables = study_tables(study_dir)
    if table == "runs":
        frame = tables["runs"]
    elif table == "labels":
        long = Results(Path(study_dir) / "results.sqlite").long()
        frame = long[long["run_id"].isin(tables["runs"]["run_id"])]
    elif table == "effective":
        transfer = read_fits(study_dir).get("transfer")
        if not transfer:
            raise FileNotFoundError(f"{study_dir}/fits.json: no transfer analysis")
        frame = pd.DataFrame(transfer["effective"])
    else:
        frame = tables[table]
    _write_frame(frame, table, out)


def _write_frame(frame, table: str, out: Path | None) -> None:
    """Print ``frame``, or write it to ``out`` (.csv or .parquet)."""
    import pandas as pd

    if out is None:
        with pd.option_context("display.width", 200, "display.max_columns", 30):
            click.echo(frame.to_string(index=False, max_rows=200, float_format="{:.4g}".format))
        return
    if out.suffix not in (".csv", ".parquet"):
        raise ValueError(f"{out}: write .csv or .parquet")
    out.parent.mkdir(parents=True, exist_ok=True)
    frame.to_csv(out, index=False) if out.suffix == ".csv" else frame.to_parquet(out, index=False)
    click.echo(f"{table}: {len(frame)} rows → {out}")
