"""Pre-training objectives: each wraps an encoder with the head its loss needs."""

from ecgscale.objectives.base import Objective, create_objective
from ecgscale.objectives.masked import MaskedReconstruction
from ecgscale.objectives.supervised import Supervised
from ecgscale.objectives.task import TaskModel

__all__ = ["MaskedReconstruction", "Objective", "Supervised", "TaskModel", "create_objective"]
