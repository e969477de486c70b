"""``ecgscale study`` (run, plan, status) and ``ecgscale train``."""

from __future__ import annotations

from pathlib import Path

import click

from ecgscale.cli.common import (
    OUT_OPT,
    RETRY_OPT,
    SET_OPT,
    SPEC_ARG,
    friendly_errors,
    load_study,
    stops_on_ctrl_c,
    study_folder,
)


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


@click.group(cls=DefaultGroup, default="run")
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

    parsed = load_study(spec, overrides)
    study_dir = study_folder(parsed, out)
    with stops_on_ctrl_c(parsed, study_dir):
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

    parsed = load_study(spec, overrides)
    plan = plan_study(parsed, study_folder(parsed, out), tflops=tflops, slots=slots)
    click.echo(plan.format(fmt), nl=fmt != "csv")


@study.command("status", short_help="Jobs by state, progress, failures and ETA of a study.")
@click.argument("study_dir", type=click.Path(file_okay=False, path_type=Path))
@friendly_errors
def study_status(study_dir) -> None:
    """What the study in STUDY_DIR is doing (also while it runs): jobs by state, running jobs
    with their progress and heartbeat, failures with reasons, and an ETA."""
    from ecgscale.study.status import study_status as status_of

    click.echo(status_of(study_dir).format())


@click.command()
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
    from ecgscale.study.runs import expand, expand_references, expand_scratch

    parsed = load_study(spec, overrides)
    if list_runs:
        for run in [*expand(parsed), *expand_references(parsed)]:
            click.echo(run.run_id)
        for job in expand_scratch(parsed):
            click.echo(f"scratch {job.scratch_id}")
        return
    study_dir = study_folder(parsed, out)
    with stops_on_ctrl_c(parsed, study_dir):
        prepare_data(parsed, study_dir)
        s = train_runs(parsed, study_dir, retry_failed=retry_failed, only=list(only) or None)
    click.echo(
        f"{s.total} jobs: {s.skipped} already recorded, {s.done} done, {s.failed} failed"
        + (f", {s.reevaluated} runs evaluated again" if s.reevaluated else "")
        + (f", {s.elsewhere} running under another worker" if s.elsewhere else "")
        + (f", {s.other_code} finished by other code (kept)" if s.other_code else "")
    )
