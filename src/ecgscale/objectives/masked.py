"""SSL: masked reconstruction of time patches per lead, for any encoder family.

Patches of ``patch`` samples are masked independently in each lead (zeroed at the input,
SimMIM-style, so convolutional and attention encoders take the same input); a linear head
maps every output token back to the ``token_span`` samples × 12 leads it covers; the loss is
the mean squared error over masked samples only.
"""

from __future__ import annotations

import torch
from torch import nn

from ecgscale.models import Encoder
from ecgscale.objectives.base import Objective


class MaskedReconstruction(Objective):
    paradigm = "ssl"

    def __init__(self, encoder: Encoder, *, patch: int, mask_ratio: float) -> None:
        super().__init__(encoder)
        self.patch = patch
        self.mask_ratio = mask_ratio
        self.n_leads = 12
        self.decoder = nn.Linear(encoder.dim, self.n_leads * encoder.token_span)

    def sample_mask(self, x: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
        """Boolean (B, 12, T) mask, True where a sample is hidden; at least one patch per record."""
        b, leads, t = x.shape
        n_patches = -(-t // self.patch)
        u = torch.rand(b, leads, n_patches, generator=generator, device="cpu").to(x.device)
        patches = u < self.mask_ratio
        empty = ~patches.flatten(1).any(1)
        patches[empty, 0, 0] = True
        return patches.repeat_interleave(self.patch, dim=2)[:, :, :t]

    def reconstruct(self, x_masked: torch.Tensor) -> torch.Tensor:
        tokens = self.encoder(x_masked)
        b, n_tok, _ = tokens.shape
        span = self.encoder.token_span
        out = self.decoder(tokens).view(b, n_tok, self.n_leads, span)
        out = out.permute(0, 2, 1, 3).reshape(b, self.n_leads, n_tok * span)
        return out[:, :, : x_masked.shape[-1]]

    def loss(
        self,
        x: torch.Tensor,
        y: torch.Tensor | None = None,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        mask = self.sample_mask(x, generator)
        recon = self.reconstruct(x.masked_fill(mask, 0.0))
        err = (recon.float() - x.float()).square()
        return (err * mask).sum() / mask.sum()
