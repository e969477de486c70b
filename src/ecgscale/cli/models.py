"""``ecgscale models``: size ladders, shapes, parameter counts and FLOPs."""

from __future__ import annotations

import json
from pathlib import Path

import click

from ecgscale.cli.common import friendly_errors
from ecgscale.numformat import compact_caps
from ecgscale.study.specfile import load_spec


@click.group()
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
    if value < 1000:  # as a spec's models.sizes: no family reaches a smaller target
        raise ValueError(f"rung {text!r}: a model size is at least 1000 parameters")
    return round(value)


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
                f"{family:<12} {compact_caps(target):>6} {stats.n_params:>12,} "
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
    click.echo(f"{family} {compact_caps(target)} at 12 leads x {input_len} samples @ {fs:g} Hz")
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
