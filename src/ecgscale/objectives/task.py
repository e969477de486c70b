"""A task model: an encoder plus a linear head trained on one task's targets.

Used for the from-scratch models of the transfer curves and for fine-tuning a pre-trained
encoder. Classification minimises binary cross-entropy over the annotated entries (targets
-1 are not annotated); regression minimises the squared error of standardised targets.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from ecgscale.models import Encoder
from ecgscale.objectives.base import ReadFn, predict_rows
from ecgscale.objectives.supervised import Supervised


class TaskModel(Supervised):
    """A new linear head over pooled features (the SL model's), with the task's loss."""

    paradigm = "task"

    def __init__(self, encoder: Encoder, n_outputs: int, *, regression: bool) -> None:
        super().__init__(encoder, n_outputs)
        self.regression = regression

    def loss(
        self,
        x: torch.Tensor,
        y: torch.Tensor,
        generator: torch.Generator | None = None,
        noise: torch.Tensor | None = None,
    ) -> torch.Tensor:
        out = self.logits(x).float()
        if self.regression:
            return F.mse_loss(out, y.float())
        known = y >= 0
        target = y.float().clamp(min=0)
        per_entry = F.binary_cross_entropy_with_logits(out, target, reduction="none")
        return (per_entry * known).sum() / known.sum().clamp(min=1)

    def predict(self, read: ReadFn, rows: np.ndarray) -> np.ndarray:
        """Probabilities (classification) or standardised values (regression) of ``rows``."""
        if self.regression:
            return predict_rows(self, self.logits, read, rows)
        return super().predict(read, rows)
