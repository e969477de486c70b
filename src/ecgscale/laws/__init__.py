"""Scaling laws: functional forms, Huber-in-log-space fitting and bootstrap intervals, and what
fitted laws imply (efficiency ratios, backtests, compute-optimal sizes)."""

from ecgscale.laws.backtest import backtest
from ecgscale.laws.compute import compute, compute_optimal
from ecgscale.laws.efficiency import (
    data_efficiency,
    efficiency_ratio,
    parameter_efficiency,
    size_for_loss,
)
from ecgscale.laws.fit import (
    FitError,
    FitResult,
    bootstrap,
    fit,
    fit_with_intervals,
    predict_interval,
)
from ecgscale.laws.forms import FORMS, Form, HeldLossToLossForm, evaluate_form, get_form
from ecgscale.laws.table import GroupFit, fit_table, format_fits
from ecgscale.laws.verdicts import ratio_verdict

__all__ = [
    "FORMS",
    "FitError",
    "FitResult",
    "Form",
    "GroupFit",
    "HeldLossToLossForm",
    "backtest",
    "bootstrap",
    "compute",
    "compute_optimal",
    "data_efficiency",
    "efficiency_ratio",
    "evaluate_form",
    "fit",
    "fit_table",
    "fit_with_intervals",
    "format_fits",
    "get_form",
    "parameter_efficiency",
    "predict_interval",
    "ratio_verdict",
    "size_for_loss",
]
