"""What every spec type shares: the error a bad spec raises, the strict base model, and the
names of the registries a spec's names are checked against."""

from __future__ import annotations

from collections.abc import Callable, Iterable

from pydantic import BaseModel, ConfigDict, ValidationInfo

PARADIGMS = ("sl", "ssl")

Registries = dict[str, Callable[[], Iterable[str]]]
"""A validation context: for ``"sources"`` (source reader kinds), ``"families"`` (model
families) and ``"sites"`` (synthetic sites), a function giving the registered names."""


class SpecError(ValueError):
    """A study spec is invalid; the message is one line naming the field."""


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def registered(info: ValidationInfo, registry: str) -> list[str] | None:
    """The names in ``registry`` of the validation context (:data:`Registries`), or None when
    the spec is validated without one: the spec types import no registry, so these names are
    checked only when a spec is read by :func:`ecgscale.study.specfile.parse_spec`."""
    names = (info.context or {}).get(registry)
    return None if names is None else list(names())


def distinct(values: list, what: str) -> list:
    """``values`` when no value repeats; a ValueError naming the first repeat otherwise (a
    grid axis listed twice would train and count the same runs twice)."""
    seen = set()
    for i, value in enumerate(values):
        if value in seen:
            raise ValueError(f"[{i}]: {what} {value!r} is listed twice")
        seen.add(value)
    return values
