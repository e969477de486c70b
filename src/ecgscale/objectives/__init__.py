"""Pre-training objectives: each wraps an encoder with the head its loss needs."""

from ecgscale.objectives.base import Objective, create_objective
from ecgscale.objectives.masked import MaskedReconstruction
from ecgscale.objectives.supervised import Supervised

__all__ = ["MaskedReconstruction", "Objective", "Supervised", "create_objective"]
