"""Readers of ECG datasets in their publishers' formats (one module per format)."""

from ecgscale.data.sources import synthetic  # noqa: F401  (registers the reader)
from ecgscale.data.sources.base import (
    REASONS,
    RawRecord,
    Rejection,
    Source,
    SourceError,
    Unit,
    create_source,
    list_sources,
    register_source,
)

__all__ = [
    "REASONS",
    "RawRecord",
    "Rejection",
    "Source",
    "SourceError",
    "Unit",
    "create_source",
    "list_sources",
    "register_source",
]
