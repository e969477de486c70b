"""The ``ecgscale`` command line: a thin layer over the Python API."""

from __future__ import annotations

import contextlib
import functools
import json
import sys
import warnings
from collections.abc import Iterator
from pathlib import Path

import click
from click.core import ParameterSource

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
        except (StoreError, OSError, KeyError, ValueError) as err:
            _fail(str(err).strip("'\""), 1)

    return wrapper


@contextlib.contextmanager
def _stops_on_ctrl_c(spec: StudySpec, study_dir: Path) -> Iterator[None]:
    """Ctrl-C stops the work inside cleanly, says how far the study got and exits with status
    130; a second Ctrl-C exits at once (:func:`ecgscale.interrupts.interruptible`)."""
    from ecgscale.interrupts import INTERRUPTED, interruptible
    from ecgscale.study.runner import jobs_done

    with interruptible():
        try:
            yield
        except KeyboardInterrupt:
            done, total = jobs_done(spec, study_dir)
            click.echo(
                f"Interrupted: {done} of {total} jobs done; run the same command again to "
                "continue.",
                err=True,
            )
            sys.exit(INTERRUPTED)


def _spec(spec: Path | None, overrides: tuple[str, ...]) -> StudySpec:
    return load_spec(spec, list(overrides))


def _study_dir(spec: StudySpec, out: Path | None) -> Path:
    return out if out is not None else Path("studies") / spec.name


def _warning_line(message, category, filename, lineno, line=None) -> str:
    """A warning as one line: ``ecgscale: warning: <message>``."""
    return f"ecgscale: warning: {message}\n"


@click.group()
@click.version_option(package_name="ecgscale")
def main() -> None:
    """Scaling-law studies of ECG models: data → training → evaluation → laws → report."""
    warnings.formatwarning = _warning_line


class DefaultGroup(click.Group):
    """A group that runs its ``default`` subcommand when the first argument names none of its
    subcommands: ``ecgscale study SPEC`` is ``ecgscale study run SPEC``, ``ecgscale study`` is
    ``ecgscale study run``. ``--help`` alone still shows the group's help."""

    def __init__(self, *args, default: str, **kwargs) -> None:
        kwargs.setdefault("subcommand_metavar", "[COMMAND] [ARGS]...")
        super().__init__(*args, **kwargs)
        self.default = default

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        first = args[0] if args else None
        if first not in self.commands and first not in ctx.help_option_names:
            args = [self.default, *args]
        return super().parse_args(ctx, args)

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        rows = [
            (name, cmd.get_short_help_str(formatter.width - 6 - len(name)))
            for name, cmd in self.commands.items()
            if not cmd.hidden
        ]
        rows = [(f"{n} (default)" if n == self.default else n, h) for n, h in rows]
        if rows:
            with formatter.section("Commands"):
                formatter.write_dl(rows)


@main.group(cls=DefaultGroup, default="run")
def study() -> None:
    """Run a study to its report, or plan it first. `ecgscale study [SPEC]` is `ecgscale study
    run [SPEC]` (no SPEC: the embedded demo); `ecgscale study plan [SPEC]` prints its grid,
    FLOPs, device-hours and wall time."""


@study.command("run", short_help="Run a whole study to its report.")
@SPEC_ARG
@SET_OPT
@OUT_OPT
@RETRY_OPT
@click.option("--quiet", is_flag=True, help="No progress bars.")
@friendly_errors
def study_run(spec, overrides, out, retry_failed, quiet) -> None:
    """Run a whole study (default: the embedded synthetic demo) to its report."""
    from ecgscale.study.runner import run_study

    parsed = _spec(spec, overrides)
    study_dir = _study_dir(parsed, out)
    with _stops_on_ctrl_c(parsed, study_dir):
        report = run_study(parsed, study_dir, progress=not quiet, retry_failed=retry_failed)
    click.echo(f"report: {report}")


@study.command("plan", short_help="Grid, FLOPs, device-hours and wall time, before running.")
@SPEC_ARG
@SET_OPT
@OUT_OPT
@click.option(
    "--tflops",
    type=click.FloatRange(min=0, min_open=True),
    help="Sustained TFLOP/s of one job (default: 125 per GPU; on CPUs, calibrated on the study "
    "folder's finished runs, else a brief benchmark of this CPU x 0.35).",
)
@click.option(
    "--slots",
    type=click.IntRange(min=1),
    help="Jobs (groups sharing a GPU, with executor.runs_per_gpu) that run at once (default: "
    "the executor's workers, GPUs or cores / threads_per_worker, or slurm.array_parallelism; "
    "ray: 1).",
)
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["table", "csv", "json"]),
    default="table",
    show_default=True,
    help="table: runs, from-scratch summary and totals; csv: one row per job; json: all.",
)
@friendly_errors
def study_plan(spec, overrides, out, tflops, slots, fmt) -> None:
    """Before anything runs: every run's size, training and evaluation FLOPs and times,
    device-hours (packing included), and the study's totals and wall time on its executor.
    Trains nothing, writes nothing."""
    from ecgscale.study.plan import plan_study

    parsed = _spec(spec, overrides)
    plan = plan_study(parsed, _study_dir(parsed, out), tflops=tflops, slots=slots)
    click.echo(plan.format(fmt), nl=fmt != "csv")


@study.command("status", short_help="Jobs by state, progress, failures and ETA of a study.")
@click.argument("study_dir", type=click.Path(file_okay=False, path_type=Path))
@friendly_errors
def study_status(study_dir) -> None:
    """What the study in STUDY_DIR is doing (also while it runs): jobs by state, running jobs
    with their progress and heartbeat, failures with reasons, and an ETA."""
    from ecgscale.study.status import study_status as status_of

    click.echo(status_of(study_dir).format())


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
    from ecgscale.data.store import Store
    from ecgscale.study.runner import ingest_synthetic

    ingest_synthetic(_spec(spec, overrides).data, store)
    click.echo(f"store: {store} ({len(Store(store))} records)")


def _options(pairs: tuple[str, ...]) -> dict:
    """``key=value`` pairs, values read as YAML (numbers, lists, mappings, strings)."""
    import yaml

    options = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise click.BadParameter(f"{pair!r}: expected KEY=VALUE", param_hint="-o/--option")
        options[key.strip()] = yaml.safe_load(value)
    return options


@data.command("ingest")
@click.argument("kind")
@click.argument("path", type=click.Path(exists=True, path_type=Path))
@click.option("--store", type=click.Path(file_okay=False, path_type=Path), required=True)
@click.option("--name", help="Name of the source in the store (default: KIND).")
@click.option("--fs", type=float, help="Sampling rate of a new store (default 400 Hz).")
@click.option("--n-samples", type=int, help="Samples per record of a new store (default 4096).")
@click.option(
    "-o",
    "--option",
    "opts",
    multiple=True,
    metavar="KEY=VALUE",
    help="Reader option, e.g. -o rate=100, -o labels=table.csv (repeatable).",
)
@click.option("--workers", type=int, help="Worker processes (default: CPU count).")
@click.option(
    "--max-reject",
    type=float,
    default=0.05,
    show_default=True,
    help="Fail when more than this fraction of records is rejected.",
)
@click.option(
    "--val",
    type=float,
    default=0.1,
    show_default=True,
    help="Validation fraction of patients (sources without a fixed split).",
)
@click.option("--test", type=float, default=0.1, show_default=True, help="Test fraction.")
@click.option("--split-seed", type=int, default=0, show_default=True)
@click.option(
    "--align",
    type=click.Choice(["center", "start"]),
    default="center",
    show_default=True,
    help="Where records are cropped or zero-padded.",
)
@click.option(
    "--min-seconds",
    type=float,
    default=2.0,
    show_default=True,
    help="Reject records shorter than this.",
)
@click.option("--bandpass", metavar="LOW,HIGH", help="Band-pass filter in Hz, e.g. 0.5,40.")
@click.option(
    "--reject-flagged",
    is_flag=True,
    help="Reject records with a flat or saturated lead (default: keep, flag them).",
)
@click.option("--restart", is_flag=True, help="Discard an unfinished ingest of this source.")
@click.option("--quiet", is_flag=True, help="No progress bar.")
@friendly_errors
def data_ingest(
    kind,
    path,
    store,
    name,
    fs,
    n_samples,
    opts,
    workers,
    max_reject,
    val,
    test,
    split_seed,
    align,
    min_seconds,
    bandpass,
    reject_flagged,
    restart,
    quiet,
) -> None:
    """Read a dataset (KIND: see `ecgscale data sources`) at PATH into a store.

    Resumable: run the same command again after an interruption. Rejected records go to the
    source's quarantine table with their reasons (`ecgscale data inspect STORE`).
    """
    from ecgscale.data.ingest import SplitRule, ingest

    harmonize = {"align": align, "min_seconds": min_seconds, "reject_flagged": reject_flagged}
    if bandpass:
        try:
            low, high = (float(v) for v in bandpass.split(","))
        except ValueError:
            raise click.BadParameter(f"{bandpass!r}: expected LOW,HIGH in Hz") from None
        harmonize["bandpass"] = (low, high)
    report = ingest(
        kind,
        path,
        store,
        name=name,
        options=_options(opts),
        fs=fs,
        n_samples=n_samples,
        harmonize_options=harmonize,
        split=SplitRule(val=val, test=test, seed=split_seed),
        workers=workers,
        max_reject=max_reject,
        restart=restart,
        progress=not quiet,
    )
    click.echo(report.summary())


@data.command("download")
@click.argument("dataset", required=False)
@click.option("--to", type=click.Path(file_okay=False, path_type=Path), help="Target folder.")
@click.option("--mirror", help="Base URL replacing the publishers' hosts (or $ECGSCALE_MIRROR).")
@click.option(
    "--include",
    multiple=True,
    metavar="PATTERN",
    help="Only files matching this shell pattern, e.g. 'exams_part0.zip' (repeatable).",
)
@click.option("--no-extract", is_flag=True, help="Keep archives packed.")
@click.option(
    "--retries",
    type=int,
    default=5,
    show_default=True,
    help="Retries per file after a connection error (each resumes the transfer).",
)
@click.option("--list", "list_only", is_flag=True, help="List the datasets and stop.")
@friendly_errors
def data_download(dataset, to, mirror, include, no_extract, retries, list_only) -> None:
    """Fetch a public dataset (resumable, checksum-verified, safely extracted)."""
    from ecgscale.data.download import download, list_datasets

    if list_only or dataset is None:
        for info in list_datasets():
            click.echo(f"{info.name:<10} {info.title} {info.version}  <{info.home}>")
        return
    if to is None:
        raise click.UsageError("--to DIR is required")
    path = download(
        dataset, to, base_url=mirror, include=include, extract=not no_extract, retries=retries
    )
    click.echo(f"{dataset}: ready in {path}")


@data.command("sources")
def data_sources() -> None:
    """List the dataset formats `ecgscale data ingest` reads."""
    from ecgscale.data.sources.base import describe_sources

    for kind, description in describe_sources().items():
        click.echo(f"{kind:<12} {description}")


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
@click.option(
    "--run", "only", multiple=True, help="Train only this run (or from-scratch model) id."
)
@click.option("--list", "list_runs", is_flag=True, help="List the grid's job ids and stop.")
@RETRY_OPT
@friendly_errors
def train(spec, overrides, out, only, list_runs, retry_failed) -> None:
    """Pre-train and evaluate the runs of a study that are not finished yet, and train its
    from-scratch task models."""
    from ecgscale.study.runner import prepare_data, train_runs
    from ecgscale.study.runs import expand, expand_scratch

    parsed = _spec(spec, overrides)
    if list_runs:
        for run in expand(parsed):
            click.echo(run.run_id)
        for job in expand_scratch(parsed):
            click.echo(f"scratch {job.scratch_id}")
        return
    study_dir = _study_dir(parsed, out)
    with _stops_on_ctrl_c(parsed, study_dir):
        prepare_data(parsed, study_dir)
        s = train_runs(parsed, study_dir, retry_failed=retry_failed, only=list(only) or None)
    click.echo(
        f"{s.total} jobs: {s.skipped} already recorded, {s.done} done, {s.failed} failed"
        + (f", {s.reevaluated} runs evaluated again" if s.reevaluated else "")
        + (f", {s.elsewhere} running under another worker" if s.elsewhere else "")
    )


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


@main.command()
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
    out = out or path.with_name(f"{path.stem}.fits.json")
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
    out.write_text(json.dumps(content, indent=1))
    click.echo(f"fits: {out}")
    if plot is not None:
        from ecgscale.laws.plots import plot_fits, save_figure

        figure = save_figure(plot_fits(fits), plot / f"{path.stem}.{form}.png")
        click.echo(f"figure: {figure}")


def _fit_study(study_dir: Path) -> None:
    """``ecgscale fit`` on a study folder: fit its laws into fits.json and list them."""
    from ecgscale.study.runner import fit_laws

    path = fit_laws(study_dir, progress=True)
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


TABLES = ("runs", "labels", "tasks", "scratch", "effective", "roles")


@main.command()
@click.argument("study_dir", type=click.Path(file_okay=False, path_type=Path))
@click.option(
    "--table",
    type=click.Choice(TABLES),
    default="runs",
    show_default=True,
    help="runs: one row per run, a loss (and interval) per evaluation set; labels: per run, "
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

    from ecgscale.study.results import Results
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
        fits = Path(study_dir) / "fits.json"
        transfer = json.loads(fits.read_text()).get("transfer") if fits.is_file() else None
        if not transfer:
            raise FileNotFoundError(f"{fits}: no transfer analysis (run `ecgscale fit` first)")
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
    frame.to_csv(out, index=False) if out.suffix == ".csv" else frame.to_parquet(out, index=False)
    click.echo(f"{table}: {len(frame)} rows → {out}")


def encoder_errors(func):
    """An unusable run folder, exported encoder or set of recordings: one line, exit status 2."""

    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        from ecgscale.export import EncoderError

        try:
            return func(*args, **kwargs)
        except EncoderError as err:
            _fail(str(err), 2)

    return wrapper


@main.command("export")
@click.argument("run", type=click.Path(path_type=Path))
@click.option(
    "--out",
    type=click.Path(file_okay=False, path_type=Path),
    required=True,
    help="Folder for config.json, model.safetensors and the README.md model card.",
)
@click.option(
    "--license",
    "license_",
    metavar="ID",
    help="Licence of the weights in the model card, a Hugging Face Hub licence id (default: "
    "mit for a model pre-trained on synthetic data, else other).",
)
@click.option("--force", is_flag=True, help="Write into --out even if it holds files.")
@friendly_errors
@encoder_errors
def export_command(run, out, license_, force) -> None:
    """Export a finished RUN (<study>/runs/<run_id>) to the folder --out: its encoder, an SL
    run's head and the study's six-label probe, with a config and a model card."""
    from ecgscale.export import export_run, read_config

    config = read_config(export_run(run, out, force=force, license=license_))
    predictors = " and ".join(config["predictors"])
    click.echo(
        f"{config['family']} {config['paradigm']} encoder ({config['n_params']:,} parameters) "
        f"with its {predictors}: {out}"
    )


@main.command("embed")
@click.argument("encoder_dir", metavar="DIR", type=click.Path(exists=True, path_type=Path))
@click.argument("recordings", type=click.Path(exists=True, path_type=Path))
@click.option(
    "--out",
    type=click.Path(dir_okay=False, path_type=Path),
    required=True,
    help="Features file: .parquet, .csv or .npy (record ids in <name>.ids.txt beside it).",
)
@click.option(
    "--kind",
    help="Reader of RECORDINGS (`ecgscale data sources`; default: wfdb for a folder of *.hea "
    "files, hdf5 for a .h5/.hdf5 file).",
)
@click.option(
    "-o",
    "--option",
    "opts",
    multiple=True,
    metavar="KEY=VALUE",
    help="Reader option, e.g. -o fs=400, -o ids=exam_id (repeatable).",
)
@click.option(
    "--device",
    default="auto",
    show_default=True,
    help="Where the encoder runs: auto (the GPU if there is one, else the CPU), cpu, cuda, "
    "cuda:1, ...",
)
@click.option(
    "--precision",
    type=click.Choice(["fp32", "bf16"]),
    default="fp32",
    show_default=True,
    help="bf16: autocast the forward pass on a GPU (on a CPU it stays fp32).",
)
@click.option(
    "--batch-size",
    type=click.IntRange(min=1),
    help="Records per forward pass (default: 64 on a CPU; on a GPU as many as half its free "
    "memory holds, up to 4096).",
)
@click.option("--quiet", is_flag=True, help="No progress bar.")
@friendly_errors
@encoder_errors
def embed_command(
    encoder_dir, recordings, out, kind, opts, device, precision, batch_size, quiet
) -> None:
    """Features of RECORDINGS (a folder or file of ECGs) from the exported encoder in DIR."""
    from ecgscale.evaluate.embed import check_features_path, embed, ids_path, write_features

    check_features_path(out)
    frame = embed(
        encoder_dir,
        recordings,
        kind=kind,
        options=_options(opts),
        batch_size=batch_size,
        device=device,
        precision=precision,
        progress=not quiet,
    )
    _report_rejected(frame.attrs["rejected"])
    write_features(frame, out)
    ids = f" (ids: {ids_path(out)})" if out.suffix.lower() == ".npy" else ""
    click.echo(f"{len(frame)} records x {frame.shape[1] - 1} features: {out}{ids}")


@main.command("predict")
@click.argument("export_dir", metavar="EXPORT", type=click.Path(exists=True, path_type=Path))
@click.argument("recordings", type=click.Path(exists=True, path_type=Path))
@click.option(
    "--out",
    type=click.Path(dir_okay=False, path_type=Path),
    required=True,
    help="Predictions file: .csv or .parquet.",
)
@click.option(
    "--with",
    "predictor",
    type=click.Choice(["head", "probe"]),
    help="What predicts the labels (default: an SL export's own head, else the study's probe).",
)
@click.option(
    "--kind",
    help="Reader of RECORDINGS (`ecgscale data sources`; default: wfdb for a folder of *.hea "
    "files, hdf5 for a .h5/.hdf5 file).",
)
@click.option(
    "-o",
    "--option",
    "opts",
    multiple=True,
    metavar="KEY=VALUE",
    help="Reader option, e.g. -o fs=400, -o ids=exam_id (repeatable).",
)
@click.option("--batch-size", type=click.IntRange(min=1), default=64, show_default=True)
@click.option("--quiet", is_flag=True, help="No progress bar.")
@friendly_errors
@encoder_errors
def predict_command(export_dir, recordings, out, predictor, kind, opts, batch_size, quiet) -> None:
    """Probabilities of the six labels for RECORDINGS (a folder or file of ECGs) from the
    exported model in EXPORT: one row per record, its id, a probability per label and a 0/1
    call per label at the F1 threshold (<label>_call)."""
    from ecgscale.evaluate.predict import check_predictions_path, predict, write_predictions

    check_predictions_path(out)
    frame = predict(
        export_dir,
        recordings,
        predictor=predictor,
        kind=kind,
        options=_options(opts),
        batch_size=batch_size,
        progress=not quiet,
    )
    _report_rejected(frame.attrs["rejected"])
    write_predictions(frame, out)
    labels = (frame.shape[1] - 1) // 2
    click.echo(
        f"{len(frame)} records x {labels} label probabilities from the "
        f"{frame.attrs['predictor']}, calls at its F1 thresholds: {out}"
    )


def _report_rejected(rejected: list) -> None:
    """The records left out, and why, on stderr."""
    from ecgscale.evaluate.embed import describe_rejections

    if rejected:
        total, *first = describe_rejections(rejected, first=5)
        click.echo(f"ecgscale: {total}", err=True)
        for line in first:
            click.echo(f"  {line}", err=True)


@main.group()
def models() -> None:
    """Size ladders: shapes, parameter counts and training FLOPs of both families."""


def _input_options(func):
    """--input-len, --fs and --spec: the input the ladders are sized and measured for."""
    func = click.option(
        "--spec",
        type=click.Path(dir_okay=False, path_type=Path),
        help="Take the input length and rate from this spec (default: the embedded demo's).",
    )(func)
    func = click.option("--fs", type=click.FloatRange(min=0, min_open=True), help="Hz.")(func)
    return click.option("--input-len", type=click.IntRange(min=1), help="Samples per lead.")(func)


def _input(spec: Path | None, input_len: int | None, fs: float | None) -> tuple[int, float]:
    """(input length, rate): the options', else the spec's (default: the embedded demo's)."""
    data = load_spec(spec).data
    return input_len or data.n_samples, fs or data.fs


def _parse_rung(text: str) -> int:
    """A parameter count: 200000, 2e5, 200K, 2M or 0.2G."""
    scale = {"K": 10**3, "M": 10**6, "G": 10**9}.get(text[-1:].upper(), 1)
    try:
        value = float(text[:-1] if scale > 1 else text) * scale
    except ValueError:
        value = float("nan")
    if not 1 <= value < 1e12:
        raise ValueError(f"rung {text!r} is not a parameter count (e.g. 200000, 2e5, 200K, 2M)")
    return round(value)


def _rung_label(n: int) -> str:
    """200000 -> 200K."""
    for unit, size in (("G", 10**9), ("M", 10**6), ("K", 10**3)):
        if n >= size:
            return f"{n / size:g}{unit}"
    return str(n)


def _measured(family: str, target: int, input_len: int, fs: float) -> tuple:
    """(shape, model on the meta device, ModelStats) of a rung."""
    import torch

    from ecgscale.models import create_model, measure, shape_for

    shape = shape_for(family, target, input_len=input_len, fs=fs)
    with torch.device("meta"):
        model = create_model(family, **shape)
    return shape, model, measure(model, input_len)


@models.command("list")
@_input_options
@friendly_errors
def models_list(input_len, fs, spec) -> None:
    """Both ladders: measured sizes, training FLOPs per sample and shapes of every rung."""
    from ecgscale.models.ladder import default_ladder, ladder_families, shape_summary

    input_len, fs = _input(spec, input_len, fs)
    click.echo(f"input: 12 leads x {input_len} samples @ {fs:g} Hz; GFLOP: training per sample")
    click.echo(
        f"{'family':<12} {'target':>6} {'params':>12} {'non-embed':>12} {'dev':>6} "
        f"{'GFLOP':>9}  shape"
    )
    for family in ladder_families():
        for target in default_ladder(family):
            shape, _, stats = _measured(family, target, input_len, fs)
            click.echo(
                f"{family:<12} {_rung_label(target):>6} {stats.n_params:>12,} "
                f"{stats.n_params_nonembedding:>12,} {stats.n_params / target - 1:>+6.1%} "
                f"{stats.flops_per_sample / 1e9:>9.4g}  {shape_summary(family, shape)}"
            )


def _training_step(family: str, shape: dict, input_len: int, fs: float, batch: int) -> str:
    """Build the model for real (fp32, CPU) and time one supervised AdamW step on random data."""
    import resource
    import time

    import torch

    from ecgscale.models import create_model
    from ecgscale.objectives import create_objective

    torch.manual_seed(0)
    start = time.perf_counter()
    objective = create_objective("sl", create_model(family, **shape), fs=fs)
    optimizer = torch.optim.AdamW(objective.parameters())
    built = time.perf_counter()
    x = torch.randn(batch, 12, input_len)
    y = torch.randint(0, 2, (batch, objective.head.out_features))
    loss = objective.loss(x, y)
    loss.backward()
    optimizer.step()
    done = time.perf_counter()
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # KiB -> GiB
    return (
        f"one SL step (batch {batch}, fp32, {torch.get_num_threads()} threads): loss "
        f"{loss.item():.4f}; build {built - start:.1f} s, forward + backward + AdamW "
        f"{done - built:.1f} s; peak RSS {peak:.2f} GiB"
    )


@models.command("show")
@click.argument("family")
@click.argument("rung")
@_input_options
@click.option("--step", is_flag=True, help="Also build it for real and time one SL step.")
@click.option("--batch", type=click.IntRange(min=1), default=2, show_default=True)
@friendly_errors
def models_show(family, rung, input_len, fs, spec, step, batch) -> None:
    """Shape, sizes, FLOPs and module tree of FAMILY's model for RUNG parameters (e.g. 200M)."""
    from ecgscale.models.ladder import shape_summary

    target = _parse_rung(rung)
    input_len, fs = _input(spec, input_len, fs)
    shape, model, stats = _measured(family, target, input_len, fs)
    click.echo(f"{family} {_rung_label(target)} at 12 leads x {input_len} samples @ {fs:g} Hz")
    click.echo(f"shape: {shape_summary(family, shape)}")
    click.echo(f"kwargs: {json.dumps(shape)}")
    click.echo(
        f"params: {stats.n_params:,} ({stats.n_params / target - 1:+.1%} from target), "
        f"non-embedding {stats.n_params_nonembedding:,}"
    )
    click.echo(
        f"tokens: {model.n_tokens(input_len)} x {model.dim}; training FLOPs per sample: "
        f"{stats.flops_per_sample / 1e9:.4g} G"
    )
    click.echo(model)
    if step:
        click.echo(_training_step(family, shape, input_len, fs, batch))
