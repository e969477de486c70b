"""SSL: masked reconstruction of time patches, for any encoder family.

The signal is cut into patches of ``patch`` samples. ``mask="time"`` hides the same patches in
all twelve leads: the limb leads are exact linear combinations of each other and all twelve
are close to rank 3, so a sample hidden in one lead but visible in the others at the same
instant could be recovered by cross-lead interpolation, which teaches nothing about rhythm or
morphology; a span hidden in every lead must be inferred from the beats around it.
``mask="lead"`` masks each lead independently (the older recipe, for comparison).

Hidden samples are zeroed at the input (SimMIM-style, so convolutional and attention encoders
take the same input); a linear head maps every output token back to the ``token_span``
samples × 12 leads it covers. With ``decoder_depth`` > 0, that head reads the output of
``decoder_depth`` pre-LN Transformer blocks over the encoder's tokens, projected to half the
encoder's width (at least 16; ~16 dimensions per head) with a sine-cosine position code added,
all discarded after pre-training: MAE's lightweight decoder (He et al. 2022, Table 1a: a decoder
lets the encoder's last layer hold more abstract features, and its linear probe gains most).
Its compute is the objective's, like the head's: a run's training FLOPs (and the plan's) count
the encoder only; one block adds 2-5% of the encoder's at the demo's 200K rungs (14% at the
20K Transformer), at most 3% at 10M and 1.4% for a 200M Transformer at 400 Hz x 4096.

With ``norm_target`` the target of every lead's patch is that patch standardised (MAE's
normalised-pixel loss: the patch mean removed, divided by its standard deviation, floored at
:data:`STD_FLOOR_MV` so that a flat patch's noise is not blown up), so baseline wander, gain
and noise do not dominate the loss. The loss is the mean squared error over hidden samples
only.

A BatchNorm encoder sees half-zeroed inputs while it pre-trains, but the probe reads it on
whole signals: :meth:`MaskedReconstruction.settle` recomputes its BatchNorm statistics on
unmasked pre-training records afterwards, so the probe's features use statistics of what it
sees.
"""

from __future__ import annotations

import torch
from torch import nn

from ecgscale.models import Encoder
from ecgscale.models.base import pad_time
from ecgscale.models.transformer import Block, sincos_positions
from ecgscale.objectives.base import Objective, ReadFn, reestimate_batchnorm, register_objective

STD_FLOOR_MV = 0.05
"""Smallest standard deviation (mV) a target patch is divided by: about the noise floor of a
12-lead recording, so a flat stretch of baseline keeps its small scale."""

DECODER_MIN_WIDTH = 16
"""Narrowest decoder: half the encoder's width, but no fewer dimensions than one head's."""


def decoder_heads(dim: int) -> int:
    """Attention heads of a decoder block of width ``dim``: the most heads of ~16 dimensions
    or more that divide ``dim`` (at least one)."""
    return max(h for h in range(1, max(1, dim // 16) + 1) if dim % h == 0)


@register_objective("masked")
class MaskedReconstruction(Objective):
    paradigm = "ssl"

    def __init__(
        self,
        encoder: Encoder,
        *,
        patch: int,
        mask_ratio: float,
        mask: str = "time",
        norm_target: bool = True,
        decoder_depth: int = 0,
    ) -> None:
        super().__init__(encoder)
        if mask not in ("time", "lead"):
            raise ValueError(f"mask must be 'time' or 'lead', got {mask!r}")
        self.patch = patch
        self.mask_ratio = mask_ratio
        self.mask = mask
        self.norm_target = norm_target
        self.n_leads = 12
        width = max(DECODER_MIN_WIDTH, encoder.dim // 2) if decoder_depth else encoder.dim
        self.decoder_in = nn.Linear(encoder.dim, width) if decoder_depth else nn.Identity()
        self.decoder_blocks = nn.ModuleList(
            Block(width, decoder_heads(width), 0.0) for _ in range(decoder_depth)
        )
        self.decoder_norm = nn.LayerNorm(width) if decoder_depth else nn.Identity()
        self.decoder = nn.Linear(width, self.n_leads * encoder.token_span)

    @classmethod
    def from_settings(
        cls,
        encoder: Encoder,
        *,
        fs: float,
        mask_ratio: float,
        mask_patch_s: float,
        mask: str,
        norm_target: bool,
        decoder_depth: int = 0,
        **_: object,
    ) -> MaskedReconstruction:
        return cls(
            encoder,
            patch=max(1, round(mask_patch_s * fs)),
            mask_ratio=mask_ratio,
            mask=mask,
            norm_target=norm_target,
            decoder_depth=decoder_depth,
        )

    def sample_mask(self, x: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
        """Boolean (B, 12, T) mask, True where a sample is hidden; at least one patch per record."""
        return self.draw(x.shape[0], x.shape[-1], generator).to(x.device)

    def draw(self, n: int, length: int, generator: torch.Generator | None) -> torch.Tensor:
        """The mask of ``n`` records of ``length`` samples (see ``sample_mask``), on the CPU."""
        n_patches = -(-length // self.patch)
        rows = 1 if self.mask == "time" else self.n_leads
        patches = torch.rand(n, rows, n_patches, generator=generator) < self.mask_ratio
        empty = ~patches.flatten(1).any(1)
        patches[empty, 0, 0] = True
        patches = patches.expand(n, self.n_leads, n_patches)
        return patches.repeat_interleave(self.patch, dim=2)[:, :, :length]

    def weights(self, noise: torch.Tensor | None, n: int) -> torch.Tensor:
        """Masked samples per record: the loss is a mean over the masked samples of the batch."""
        return noise.flatten(1).sum(1)

    def reconstruct(self, x_masked: torch.Tensor) -> torch.Tensor:
        tokens = self.encoder(x_masked)
        if len(self.decoder_blocks):
            tokens = self.decoder_in(tokens)
            tokens = tokens + sincos_positions(*tokens.shape[1:], tokens.device).to(tokens.dtype)
            for block in self.decoder_blocks:
                tokens = block(tokens)
            tokens = self.decoder_norm(tokens)
        b, n_tok, _ = tokens.shape
        span = self.encoder.token_span
        out = self.decoder(tokens).view(b, n_tok, self.n_leads, span)
        out = out.permute(0, 2, 1, 3).reshape(b, self.n_leads, n_tok * span)
        return out[:, :, : x_masked.shape[-1]]

    def target(self, x: torch.Tensor) -> torch.Tensor:
        """What the hidden samples are compared with: ``x``, or each lead's patch standardised."""
        x = x.float()
        if not self.norm_target:
            return x
        length = x.shape[-1]
        padded = pad_time(x, self.patch)
        patches = padded.unflatten(-1, (-1, self.patch))  # (B, 12, P, patch)
        if x.device.type == "cpu":
            # a patch's mean and variance as products with a column of 1/patch: 3.6x faster
            # than mean() over a last dimension of a few samples (bench_ssl_target.py); in fp32
            # also under bf16 autocast. Elsewhere reductions, which TF32 matmuls cannot round.
            average = torch.full((self.patch, 1), 1.0 / self.patch)
            with torch.autocast("cpu", enabled=False):
                deviation = patches - patches @ average
                variance = (deviation * deviation) @ average
        else:
            deviation = patches - patches.mean(-1, keepdim=True)
            variance = deviation.square().mean(-1, keepdim=True)
        return (deviation / variance.sqrt().clamp_min(STD_FLOOR_MV)).flatten(-2)[..., :length]

    def loss(
        self,
        x: torch.Tensor,
        y: torch.Tensor | None = None,
        generator: torch.Generator | None = None,
        noise: torch.Tensor | None = None,
    ) -> torch.Tensor:
        mask = self.sample_mask(x, generator) if noise is None else noise.to(x.device)
        recon = self.reconstruct(x.masked_fill(mask, 0.0))
        err = (recon.float() - self.target(x)).square()
        return (err * mask).sum() / mask.sum()

    def settle(self, read: ReadFn, rows, batch_size: int = 128) -> None:
        """Recompute the encoder's BatchNorm statistics on unmasked records at ``rows``."""
        reestimate_batchnorm(self.encoder, read, rows, batch_size)
