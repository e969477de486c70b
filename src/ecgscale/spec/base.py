"""What every spec type shares: the error a bad spec raises, and the strict base model."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict

PARADIGMS = ("sl", "ssl")


class SpecError(ValueError):
    """A study spec is invalid; the message is one line naming the field."""


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
