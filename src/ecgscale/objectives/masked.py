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
        return self.draw(x.shape[0], x.shape[-1], generator).to(x.device)

    def draw(self, n: int, length: int, generator: torch.Generator | None) -> torch.Tensor:
        """The mask of ``n`` records of ``length`` samples (see ``sample_mask``), on the CPU."""
        n_patches = -(-length // self.patch)
        patches = torch.rand(n, self.n_leads, n_patches, generator=generator) < self.mask_ratio
        empty = ~patches.flatten(1).any(1)
        patches[empty, 0, 0] = True
        return patches.repeat_interleave(self.patch, dim=2)[:, :, :length]

    def weights(self, noise: torch.Tensor | None, n: int) -> torch.Tensor:
        """Masked samples per record: the loss is a mean over the masked samples of the batch."""
        return noise.flatten(1).sum(1)

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
        noise: torch.Tensor | None = None,
    ) -> torch.Tensor:
        mask = self.sample_mask(x, generator) if noise is None else noise.to(x.device)
        recon = self.reconstruct(x.masked_fill(mask, 0.0))
        err = (recon.float() - x.float()).square()
        return (err * mask).sum() / mask.sum()
