"""What the commands of ``ecgscale`` share: their error handling (one line on stderr and an
exit status), the clean stop on Ctrl-C, the spec arguments and options, and reading a spec."""

from __future__ import annotations

import contextlib
import functools
import sys
from collections.abc import Iterator
from pathlib import Path

import click

from ecgscale.data.store import StoreError
from ecgscale.spec import SpecError, StudySpec
from ecgscale.study.specfile import load_spec

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
QUIET_OPT = click.option("--quiet", is_flag=True, help="No progress bar.")


def reader_options(example: str):
    """``-o/--option KEY=VALUE`` (repeatable, into the parameter ``opts``): options of a
    dataset reader, read by :func:`parse_options`; ``example`` in its help."""
    return click.option(
        "-o",
        "--option",
        "opts",
        multiple=True,
        metavar="KEY=VALUE",
        help=f"Reader option, e.g. {example} (repeatable).",
    )


def fail(message: str, code: int) -> None:
    click.echo(f"ecgscale: error: {message}", err=True)
    sys.exit(code)


def friendly_errors(func):
    """Turn expected failures into one line on stderr: exit 2 for a bad spec, 1 otherwise."""

    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        try:
            return func(*args, **kwargs)
        except SpecError as err:
            fail(str(err), 2)
        except KeyError as err:  # its text is the key's repr
            fail(str(err.args[0]) if err.args else "missing key", 1)
        except (StoreError, OSError, ValueError) as err:
            fail(str(err), 1)

    return wrapper


@contextlib.contextmanager
def stops_on_ctrl_c(spec: StudySpec, study_dir: Path) -> Iterator[None]:
    """Ctrl-C (or SIGTERM) stops the work inside cleanly, says how far the study got and exits
    with status 130 (143); a second one exits at once
    (:func:`ecgscale.interrupts.interruptible`)."""
    from ecgscale.interrupts import INTERRUPTED, interruptible
    from ecgscale.study.runner import jobs_done

    with interruptible():
        try:
            yield
        except KeyboardInterrupt as stop:
            done, total = jobs_done(spec, study_dir)
            click.echo(
                f"Interrupted: {done} of {total} jobs done; run the same command again to "
                "continue.",
                err=True,
            )
            sys.exit(getattr(stop, "status", INTERRUPTED))


def load_study(spec: Path | None, overrides: tuple[str, ...]) -> StudySpec:
    return load_spec(spec, list(overrides))


def study_folder(spec: StudySpec, out: Path | None) -> Path:
    return out if out is not None else Path("studies") / spec.name


def parse_options(pairs: tuple[str, ...]) -> dict:
    """``key=value`` pairs, values read as YAML (numbers, lists, mappings, strings)."""
    import yaml

    options = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise click.BadParameter(f"{pair!r}: expected KEY=VALUE", param_hint="-o/--option")
        try:
            options[key.strip()] = yaml.safe_load(value)
        except yaml.YAMLError:
            raise click.BadParameter(
                f"{pair!r}: {value!r} is not a valid YAML value", param_hint="-o/--option"
            ) from None
    return options
