"""Scaling laws: functional forms, Huber-in-log-space fitting and bootstrap intervals."""

from ecgscale.laws.fit import FitError, FitResult, bootstrap, fit, predict_interval
from ecgscale.laws.forms import FORMS, Form, evaluate_form, get_form

__all__ = [
    "FORMS",
    "FitError",
    "FitResult",
    "Form",
    "bootstrap",
    "evaluate_form",
    "fit",
    "get_form",
    "predict_interval",
]
