"""The objective interface shared by the paradigms."""

from __future__ import annotations

import torch
from torch import nn

from ecgscale.models import Encoder


class Objective(nn.Module):
    """An encoder plus a head; ``loss`` is what pre-training minimises."""

    paradigm: str = ""

    def __init__(self, encoder: Encoder) -> None:
        super().__init__()
        self.encoder = encoder

    def loss(
        self, x: torch.Tensor, y: torch.Tensor, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        """Mean loss of batch ``x`` (B, 12, T) with labels ``y`` (B, n_labels)."""
        raise NotImplementedError


def create_objective(paradigm: str, encoder: Encoder, *, fs: float, **kw: float) -> Objective:
    """The objective of a paradigm: 'sl' (multi-label BCE) or 'ssl' (masked reconstruction)."""
    from ecgscale.objectives.masked import MaskedReconstruction
    from ecgscale.objectives.supervised import Supervised

    if paradigm == "sl":
        return Supervised(encoder)
    if paradigm == "ssl":
        return MaskedReconstruction(
            encoder, patch=max(1, round(kw["mask_patch_s"] * fs)), mask_ratio=kw["mask_ratio"]
        )
    raise ValueError(f"unknown paradigm {paradigm!r} (known: sl, ssl)")
