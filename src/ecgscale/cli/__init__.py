"""The ``ecgscale`` command line: a thin layer over the Python API.

One module per group of commands: :mod:`~ecgscale.cli.study` (study run, plan, status;
train), :mod:`~ecgscale.cli.data` (data), :mod:`~ecgscale.cli.laws` (fit),
:mod:`~ecgscale.cli.results` (results, report), :mod:`~ecgscale.cli.encoders` (export, embed,
predict) and :mod:`~ecgscale.cli.models` (models); what they share (error handling, the stop
on Ctrl-C, the spec options) is in :mod:`~ecgscale.cli.common`. Heavy modules (torch, pandas'
analysis, the runner) are imported inside the commands, so that ``ecgscale --help`` starts fast.
"""

from __future__ import annotations

import warnings

import click

from ecgscale.cli import data, encoders, laws, models, results, study
from ecgscale.cli.laws import LAW_FORMS
from ecgscale.cli.models import _parse_rung

__all__ = ["LAW_FORMS", "_parse_rung", "main"]


def _warning_line(message, category, filename, lineno, line=None) -> str:
    """A warning as one line: ``ecgscale: warning: <message>``."""
    return f"ecgscale: warning: {message}\n"


@click.group()
@click.version_option(package_name="ecgscale")
def main() -> None:
    """Scaling-law studies of ECG models: data → training → evaluation → laws → report."""
    warnings.formatwarning = _warning_line


# In the order of the old single module (``ecgscale --help`` lists them sorted).
for _command in (
    study.study,
    data.data,
    study.train,
    laws.fit,
    results.report,
    results.results,
    encoders.export_command,
    encoders.embed_command,
    encoders.predict_command,
    models.models,
):
    main.add_command(_command)
