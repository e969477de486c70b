"""Pre-training: the loop, its schedule, checkpoints and multi-process (DDP) plumbing."""

from ecgscale.train.checkpoint import load_weights, save_weights
from ecgscale.train.loop import TrainingDiverged, TrainResult, pretrain
from ecgscale.train.schedule import warmup_cosine

__all__ = [
    "TrainResult",
    "TrainingDiverged",
    "load_weights",
    "pretrain",
    "save_weights",
    "warmup_cosine",
]
