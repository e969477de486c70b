"""``ecgscale data``: build and inspect record stores."""

from __future__ import annotations

from pathlib import Path

import click

from ecgscale.cli.common import (
    QUIET_OPT,
    SET_OPT,
    SPEC_ARG,
    friendly_errors,
    load_study,
    parse_options,
    reader_options,
)


@click.group()
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

    ingest_synthetic(load_study(spec, overrides).data, store)
    click.echo(f"store: {store} ({len(Store(store))} records)")


@data.command("ingest")
@click.argument("kind")
@click.argument("path", type=click.Path(exists=True, path_type=Path))
@click.option("--store", type=click.Path(file_okay=False, path_type=Path), required=True)
@click.option("--name", help="Name of the source in the store (default: KIND).")
@click.option(
    "--fs",
    type=click.FloatRange(min=0, min_open=True),
    help="Sampling rate of a new store (default 400 Hz).",
)
@click.option(
    "--n-samples",
    type=click.IntRange(min=1),
    help="Samples per record of a new store (default 4096).",
)
@reader_options("-o rate=100, -o labels=table.csv")
@click.option(
    "--workers", type=click.IntRange(min=1), help="Worker processes (default: CPU count)."
)
@click.option(
    "--max-reject",
    type=click.FloatRange(0, 1),
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
    type=click.FloatRange(min=0),
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
@QUIET_OPT
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
        options=parse_options(opts),
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
    """List the dataset formats `ecgscale data ingest` reads, and their reader options."""
    from ecgscale.data.sources.base import describe_sources, source_options

    for kind, description in describe_sources().items():
        names, _ = source_options(kind)
        click.echo(f"{kind:<12} {description}")
        takes = "any" if names is None else ", ".join(names) or "none"
        click.echo(f"{'':<12} -o options: {takes}")


@data.command("inspect")
@click.argument("store", type=click.Path(file_okay=False, path_type=Path))
@friendly_errors
def data_inspect(store) -> None:
    """Counts, splits and label prevalence per site of a store."""
    from ecgscale.data.inspect import describe

    click.echo(describe(store))
