"""SL: multi-label binary cross-entropy on the six pre-training labels."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ecgscale.data.schema import LABELS
from ecgscale.models import Encoder
from ecgscale.objectives.base import Objective, ReadFn, predict_rows, register_objective


@register_objective("supervised")
class Supervised(Objective):
    paradigm = "sl"

    def __init__(self, encoder: Encoder, n_labels: int = len(LABELS)) -> None:
        super().__init__(encoder)
        self.head = nn.Linear(encoder.dim, n_labels)

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.encoder.features(x))

    def loss(
        self,
        x: torch.Tensor,
        y: torch.Tensor,
        generator: torch.Generator | None = None,
        noise: torch.Tensor | None = None,
    ) -> torch.Tensor:
        return F.binary_cross_entropy_with_logits(self.logits(x), y.float())

    def predict(self, read: ReadFn, rows: np.ndarray) -> np.ndarray:
        """Label probabilities (n, 6) of the records at ``rows`` from the model's own head."""
        return predict_rows(self, lambda x: torch.sigmoid(self.logits(x)), read, rows)
