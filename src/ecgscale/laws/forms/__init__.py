"""Scaling-law forms: closed forms, and the log-space parameterisation each is fitted in.

:mod:`~ecgscale.laws.forms.base` says what a form is (:class:`Form`) and how forms are fitted
in log space; the forms themselves are in :mod:`~ecgscale.laws.forms.size` (power, joint,
Kaplan), :mod:`~ecgscale.laws.forms.loss_to_loss` and :mod:`~ecgscale.laws.forms.transfer`.
This module registers them by name (:data:`FORMS`).
"""

from __future__ import annotations

from collections.abc import Mapping

from numpy.typing import ArrayLike

from ecgscale.laws.forms.base import Array, FitData, Form, Kernel, log_sum_exp
from ecgscale.laws.forms.loss_to_loss import HeldLossToLossForm, LossToLossForm
from ecgscale.laws.forms.size import JointForm, KaplanForm, PowerForm
from ecgscale.laws.forms.transfer import TransferForm

__all__ = [
    "FORMS",
    "Array",
    "FitData",
    "Form",
    "HeldLossToLossForm",
    "JointForm",
    "KaplanForm",
    "Kernel",
    "LossToLossForm",
    "PowerForm",
    "TransferForm",
    "evaluate_form",
    "get_form",
    "log_sum_exp",
]

FORMS: dict[str, Form] = {
    f.name: f for f in (PowerForm(), JointForm(), LossToLossForm(), KaplanForm(), TransferForm())
}
"""Registry of the scaling-law forms, by name."""


def get_form(form: str | Form) -> Form:
    """The registered form of that name (a :class:`Form` passes through)."""
    if isinstance(form, Form):
        return form
    if form not in FORMS:
        raise ValueError(f"unknown form {form!r}; choose from {sorted(FORMS)}")
    return FORMS[form]


def evaluate_form(form: str, params: Mapping[str, ArrayLike], **inputs: ArrayLike) -> Array:
    """Evaluate the named form's closed form at ``inputs`` (e.g. to draw a fitted curve)."""
    return get_form(form).evaluate(params, **inputs)
