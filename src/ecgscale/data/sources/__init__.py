"""Readers of ECG datasets in their publishers' formats (one module per format)."""

from ecgscale.data.sources import (  # noqa: F401  (importing a reader registers it)
    cinc,
    code15,
    codetest,
    hdf5,
    ptbxl,
    synthetic,
    wfdb_folder,
)
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
