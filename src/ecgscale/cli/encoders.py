"""``ecgscale export``, ``embed`` and ``predict``: exported encoders and what they compute."""

from __future__ import annotations

import functools
from pathlib import Path

import click

from ecgscale.cli.common import QUIET_OPT, fail, friendly_errors, parse_options, reader_options

RECORDINGS_ARG = click.argument("recordings", type=click.Path(exists=True, path_type=Path))
KIND_OPT = click.option(
    "--kind",
    help="Reader of RECORDINGS (`ecgscale data sources`; default: wfdb for a folder of *.hea "
    "files, hdf5 for a .h5/.hdf5 file).",
)
READER_OPT = reader_options(
    "-o fs=400 for an HDF5 file (`ecgscale data sources` lists each reader's)"
)


def encoder_errors(func):
    """An unusable run folder, exported encoder or set of recordings: one line, exit status 2."""

    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        from ecgscale.models.exported import EncoderError

        try:
            return func(*args, **kwargs)
        except EncoderError as err:
            fail(str(err), 2)

    return wrapper


@click.command("export")
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
    from ecgscale.export import export_run
    from ecgscale.models.exported import read_config

    config = read_config(export_run(run, out, force=force, license=license_))
    predictors = " and ".join(config["predictors"])
    click.echo(
        f"{config['family']} {config['paradigm']} encoder ({config['n_params']:,} parameters) "
        f"with its {predictors}: {out}"
    )


@click.command("embed")
@click.argument("encoder_dir", metavar="DIR", type=click.Path(exists=True, path_type=Path))
@RECORDINGS_ARG
@click.option(
    "--out",
    type=click.Path(dir_okay=False, path_type=Path),
    required=True,
    help="Features file: .parquet, .csv or .npy (record ids in <name>.ids.txt beside it).",
)
@KIND_OPT
@READER_OPT
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
@QUIET_OPT
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
        options=parse_options(opts),
        batch_size=batch_size,
        device=device,
        precision=precision,
        progress=not quiet,
    )
    _report_rejected(frame.attrs["rejected"])
    write_features(frame, out)
    ids = f" (ids: {ids_path(out)})" if out.suffix.lower() == ".npy" else ""
    click.echo(f"{_records(len(frame))} x {frame.shape[1] - 1} features: {out}{ids}")


@click.command("predict")
@click.argument("export_dir", metavar="EXPORT", type=click.Path(exists=True, path_type=Path))
@RECORDINGS_ARG
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
@KIND_OPT
@READER_OPT
@click.option("--batch-size", type=click.IntRange(min=1), default=64, show_default=True)
@QUIET_OPT
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
        options=parse_options(opts),
        batch_size=batch_size,
        progress=not quiet,
    )
    _report_rejected(frame.attrs["rejected"])
    write_predictions(frame, out)
    labels = (frame.shape[1] - 1) // 2
    click.echo(
        f"{_records(len(frame))} x {labels} label probabilities from the "
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


def _records(n: int) -> str:
    """``1 record``, ``3 records``."""
    return f"{n} record" if n == 1 else f"{n} records"
