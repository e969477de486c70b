"""Typed study specification: validated, frozen pydantic models, at the top of the flow.

Every field has a default except where a study must say what it wants; unknown fields are
errors. ``SpecError`` carries a one-line message naming the field. Every stage imports these
types and they import nothing of ecgscale: reading a spec file, with command-line overrides
and the names of source readers, model families and synthetic sites checked against their
registries, is :mod:`ecgscale.study.specfile`.
"""

from ecgscale.spec.base import PARADIGMS, Registries, SpecError, Strict, registered
from ecgscale.spec.execution import ExecutorSpec, MonitorSpec, SlurmSpec
from ecgscale.spec.sections import (
    N_COLUMNS,
    N_WORDS,
    SCRATCH_POINTS,
    SCRATCH_REACH,
    DataSpec,
    EvalSpec,
    LawsSpec,
    ModelsSpec,
    NConvention,
    SourceSpec,
    SSLSpec,
    TaskKind,
    TaskSpec,
    TrainSpec,
    TransferSpec,
)
from ecgscale.spec.study import StudySpec

__all__ = [
    "N_COLUMNS",
    "N_WORDS",
    "PARADIGMS",
    "Registries",
    "SCRATCH_POINTS",
    "SCRATCH_REACH",
    "DataSpec",
    "EvalSpec",
    "ExecutorSpec",
    "LawsSpec",
    "ModelsSpec",
    "MonitorSpec",
    "NConvention",
    "SSLSpec",
    "SlurmSpec",
    "SourceSpec",
    "SpecError",
    "Strict",
    "StudySpec",
    "TaskKind",
    "TaskSpec",
    "TrainSpec",
    "TransferSpec",
    "registered",
]
