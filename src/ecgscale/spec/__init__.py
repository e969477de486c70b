"""Typed study specification: YAML in, validated dataclass-like models out.

Every field has a default except where a study must say what it wants; unknown fields are
errors. ``SpecError`` carries a one-line message naming the field. Reading a spec file, with
command-line overrides, is :mod:`ecgscale.study.specfile`.
"""

from ecgscale.spec.base import PARADIGMS, SpecError, Strict
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
]
