"""The ``ecgscale`` command line: a thin layer over the Python API."""

from __future__ import annotations

import functools
import json
import sys
from pathlib import Path

import click

from ecgscale.data.store import StoreError
from ecgscale.study.spec import SpecError, StudySpec, load_spec

SPEC_ARG = click.argument("spec", required=False, type=click.Path(dir_okay=False, path_type=Path))
SET_OPT = click.option(
    "--set",
    "overrides",
    multiple=True,
    metavar="KEY=VALUE",
    help="Override a spec field, e.g. --set train.max_steps=100 (repeatable).",
)
OUT_OPT = click.option(
    "--out",
    type=click.Path(file_okay=False, path_type=Path),
    help="Study folder (default: studies/<name>).",
)
RETRY_OPT = click.option("--retry-failed", is_flag=True, help="Train failed runs again.")


def _fail(message: str, code: int) -> None:
    click.echo(f"ecgscale: error: {message}", err=True)
    sys.exit(code)


def friendly_errors(func):
    """Turn expected failures into one line on stderr: exit 2 for a bad spec, 1 otherwise."""

    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        try:
            return func(*args, **kwargs)
        except SpecError as err:
            _fail(str(err), 2)
        except (StoreError, FileNotFoundError, KeyError, ValueError) as err:
            _fail(str(err).strip("'\""), 1)

    return wrapper


def _spec(spec: Path | None, overrides: tuple[str, ...]) -> StudySpec:
    return load_spec(spec, list(overrides))


def _study_dir(spec: StudySpec, out: Path | None) -> Path:
    return out if out is not None else Path("studies") / spec.name


@click.group()
@click.version_option(package_name="ecgscale")
def main() -> None:
    """Scaling-law studies of ECG models: data → training → evaluation → laws → report."""


@main.command()
@SPEC_ARG
@SET_OPT
@OUT_OPT
@RETRY_OPT
@click.option("--quiet", is_flag=True, help="No progress bars.")
@friendly_errors
def study(spec, overrides, out, retry_failed, quiet) -> None:
    """Run a whole study (default: the embedded synthetic demo) to its report."""
    from ecgscale.study.runner import run_study

    parsed = _spec(spec, overrides)
    study_dir = _study_dir(parsed, out)
    report = run_study(parsed, study_dir, progress=not quiet, retry_failed=retry_failed)
    click.echo(f"report: {report}")


@main.group()
def data() -> None:
    """Build and inspect record stores."""


@data.command("synth")
@SPEC_ARG
@SET_OPT
@click.option("--store", type=click.Path(file_okay=False, path_type=Path), required=True)
@friendly_errors
def data_synth(spec, overrides, store) -> None:
    """Generate the synthetic sites of a spec's data section into a store."""
    from ecgscale.data.ingest import ingest_synthetic

    result = ingest_synthetic(_spec(spec, overrides).data, store)
    click.echo(f"store: {store} ({len(result)} records)")


@data.command("inspect")
@click.argument("store", type=click.Path(file_okay=False, path_type=Path))
@friendly_errors
def data_inspect(store) -> None:
    """Counts, splits and label prevalence per site of a store."""
    from ecgscale.data.inspect import describe

    click.echo(describe(store))


@main.command()
@SPEC_ARG
@SET_OPT
@OUT_OPT
@click.option("--run", "only", multiple=True, help="Train only this run id (repeatable).")
@click.option("--list", "list_runs", is_flag=True, help="List the grid's run ids and stop.")
@RETRY_OPT
@friendly_errors
def train(spec, overrides, out, only, list_runs, retry_failed) -> None:
    """Pre-train and evaluate the runs of a study that are not finished yet."""
    from ecgscale.study.runner import prepare_data, train_runs
    from ecgscale.study.runs import expand

    parsed = _spec(spec, overrides)
    if list_runs:
        for run in expand(parsed):
            click.echo(run.run_id)
        return
    study_dir = _study_dir(parsed, out)
    prepare_data(parsed, study_dir)
    s = train_runs(parsed, study_dir, retry_failed=retry_failed, only=list(only) or None)
    click.echo(f"{s.total} runs: {s.skipped} already recorded, {s.done} done, {s.failed} failed")


@main.command()
@click.argument("study_dir", type=click.Path(file_okay=False, path_type=Path))
@friendly_errors
def fit(study_dir) -> None:
    """Fit the scaling laws of a study folder (writes fits.json)."""
    from ecgscale.study.runner import fit_laws

    path = fit_laws(study_dir)
    content = json.loads(path.read_text())
    for f in content["fits"]:
        p = f["params"]
        click.echo(
            f"{f['family']:>12} {f['paradigm']:>4} {f['metric']:<22} L({f['x']}) "
            f"{json.dumps(f['slice'])}: E={p['E']:.4g} A={p['A']:.4g} "
            f"alpha={p['alpha']:.3f}"
        )
    for g in content["gaps"]:
        click.echo(
            f"not fitted: {g['family']} {g['paradigm']} {g['metric']} L({g['x']}) "
            f"{json.dumps(g['slice'])}: {g['reason']}"
        )
    click.echo(f"fits: {path}")


@main.command()
@click.argument("study_dir", type=click.Path(file_okay=False, path_type=Path))
@friendly_errors
def report(study_dir) -> None:
    """Write the study's HTML report (needs fits.json: run `ecgscale fit` first)."""
    from ecgscale.study.runner import write_report

    click.echo(f"report: {write_report(study_dir)}")
