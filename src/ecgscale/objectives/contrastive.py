"""SSL: contrastive learning across time segments of one recording, for any encoder family.

Each record gives two views: two time segments of ``crop`` samples at independent random
offsets (CLOCS's idea, Kiyasseh et al. 2021: the segments of one recording share its patient's
rhythm and morphology, not its instant), each scaled by a random gain and given Gaussian noise.
Both views go through the encoder, are mean-pooled and projected by a small MLP head; the loss
is NT-Xent (SimCLR, Chen et al. 2020): each view must pick its partner out of the batch's
other 2B - 2 views, at temperature ``temperature``. Rhythm (rate, regularity, absent P waves)
and conduction (PR, QRS width and shape) are properties of the whole recording, which is what
the views share and what the probe's labels are about; the projection head is discarded.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ecgscale.models import Encoder
from ecgscale.objectives.base import Objective, register_objective

GAIN_RANGE = (0.8, 1.25)
"""Each view's amplitude is multiplied by a factor drawn log-uniformly from this range."""
NOISE_MV = 0.02
"""Standard deviation of the white noise added to each view (mV)."""


@register_objective("contrastive")
class Contrastive(Objective):
    paradigm = "ssl"

    def __init__(self, encoder: Encoder, *, crop: int, temperature: float = 0.1) -> None:
        super().__init__(encoder)
        self.crop = crop
        self.temperature = temperature
        self.projector = nn.Sequential(
            nn.Linear(encoder.dim, encoder.dim), nn.ReLU(), nn.Linear(encoder.dim, encoder.dim)
        )

    @classmethod
    def from_settings(
        cls, encoder: Encoder, *, fs: float, crop_s: float, temperature: float, **_: object
    ) -> Contrastive:
        return cls(encoder, crop=max(1, round(crop_s * fs)), temperature=temperature)

    def draw(self, n: int, length: int, generator: torch.Generator | None) -> torch.Tensor:
        """Per record and view: a crop offset in [0, 1), a log-gain, then ``crop`` noise
        samples × 12 leads for each view, on the CPU: ``(n, 2, 2 + 12 * crop)``."""
        offsets = torch.rand(n, 2, 1, generator=generator)
        lo, hi = (torch.log(torch.tensor(g)) for g in GAIN_RANGE)
        log_gain = lo + (hi - lo) * torch.rand(n, 2, 1, generator=generator)
        noise = NOISE_MV * torch.randn(n, 2, 12 * self.crop, generator=generator)
        return torch.cat([offsets, log_gain, noise], dim=-1)

    def views(self, x: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        """The two views of each record of ``x`` (B, 12, T): ``(2B, 12, crop)``, view a of every
        record first, then view b."""
        b, leads, length = x.shape
        crop = min(self.crop, length)
        start = (noise[..., 0] * (length - crop + 1)).long().clamp_max(length - crop)  # (B, 2)
        index = start[..., None] + torch.arange(crop, device=x.device)  # (B, 2, crop)
        segments = torch.gather(
            x[:, None].expand(b, 2, leads, length), 3, index[:, :, None].expand(b, 2, leads, crop)
        )
        gain = noise[..., 1].exp()[..., None, None]
        jitter = noise[..., 2 : 2 + leads * crop].reshape(b, 2, leads, crop)
        out = segments * gain + jitter
        return out.transpose(0, 1).reshape(2 * b, leads, crop)

    def loss(
        self,
        x: torch.Tensor,
        y: torch.Tensor | None = None,
        generator: torch.Generator | None = None,
        noise: torch.Tensor | None = None,
    ) -> torch.Tensor:
        if noise is None:
            noise = self.draw(x.shape[0], x.shape[-1], generator)
        noise = noise.to(x.device, x.dtype)
        z = F.normalize(self.projector(self.encoder.features(self.views(x, noise))).float(), dim=1)
        b = x.shape[0]
        sim = z @ z.T / self.temperature
        sim.fill_diagonal_(float("-inf"))
        partner = torch.cat([torch.arange(b, 2 * b), torch.arange(b)]).to(x.device)
        return F.cross_entropy(sim, partner)
