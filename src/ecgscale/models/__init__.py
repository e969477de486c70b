"""Model families behind one encoder interface, their size ladders and measured stats."""

from ecgscale.models.base import Encoder, create_model, get_family, list_families, register_family
from ecgscale.models.ladder import (
    DEFAULT_RUNGS,
    ModelStats,
    build,
    count_params,
    default_ladder,
    measure,
    shape_for,
)
from ecgscale.models.resnet1d import ResNet1d
from ecgscale.models.transformer import Transformer

__all__ = [
    "DEFAULT_RUNGS",
    "Encoder",
    "ModelStats",
    "ResNet1d",
    "Transformer",
    "build",
    "count_params",
    "create_model",
    "default_ladder",
    "get_family",
    "list_families",
    "measure",
    "register_family",
    "shape_for",
]
