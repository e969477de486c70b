"""Pre-training objectives: each wraps an encoder with the head its loss needs, registered by
name (importing a module registers its objectives)."""

from ecgscale.objectives.base import (
    Objective,
    create_objective,
    get_objective,
    list_objectives,
    register_objective,
)
from ecgscale.objectives.contrastive import Contrastive
from ecgscale.objectives.masked import MaskedReconstruction
from ecgscale.objectives.supervised import Supervised
from ecgscale.objectives.task import TaskModel

__all__ = [
    "Contrastive",
    "MaskedReconstruction",
    "Objective",
    "Supervised",
    "TaskModel",
    "create_objective",
    "get_objective",
    "list_objectives",
    "register_objective",
]
