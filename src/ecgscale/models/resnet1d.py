"""1-D residual CNN in the style of Ribeiro et al. 2020 ("Automatic diagnosis of the 12-lead ECG
using a deep neural network", Nature Communications).

Layout: a stem conv, then stages of pre-activation residual blocks, each stage downsampling
time by its factor, then a final BatchNorm -> ReLU. A block is::

    main: BN -> ReLU -> Dropout -> Conv(k, stride 1, c_in -> c_out)
          BN -> ReLU -> Dropout -> Conv(k, stride s, c_out -> c_out)
    skip: MaxPool(s) if s > 1, then Conv(1x1, c_in -> c_out) if c_in != c_out
    out = main + skip

Only the first block of a stage changes width and downsamples. Convs use "same" padding
``(k - 1) // 2`` with odd ``k``, so a length divisible by the stride is divided exactly and the
output has ``T / prod(downsample)`` positions: ``token_span = prod(downsample)``.

The defaults reproduce Ribeiro's network at 400 Hz x 4096 samples: stem 64, stage widths
(128, 196, 256, 320), one block per stage, kernel 17, downsampling 4 per stage (16 tokens).
Every convolution is built by :func:`conv1d`, the single place to swap the implementation.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence

import torch.nn.functional as F
from torch import Tensor, nn

from ecgscale.models.base import Encoder, register_family


def conv1d(c_in: int, c_out: int, kernel_size: int, stride: int = 1) -> nn.Module:
    """Bias-free 1-D convolution with "same" padding (odd ``kernel_size``)."""
    return nn.Conv1d(
        c_in, c_out, kernel_size, stride=stride, padding=(kernel_size - 1) // 2, bias=False
    )


class ResBlock(nn.Module):
    """Pre-activation residual block; the second conv carries the stride."""

    def __init__(self, c_in: int, c_out: int, kernel_size: int, stride: int, dropout: float):
        super().__init__()
        self.bn1 = nn.BatchNorm1d(c_in)
        self.conv1 = conv1d(c_in, c_out, kernel_size)
        self.bn2 = nn.BatchNorm1d(c_out)
        self.conv2 = conv1d(c_out, c_out, kernel_size, stride)
        self.dropout = nn.Dropout(dropout)
        skip: list[nn.Module] = []
        if stride > 1:
            skip.append(nn.MaxPool1d(stride, stride))
        if c_in != c_out:
            skip.append(conv1d(c_in, c_out, 1))
        self.skip = nn.Sequential(*skip)

    def forward(self, x: Tensor) -> Tensor:
        h = self.conv1(self.dropout(F.relu(self.bn1(x))))
        h = self.conv2(self.dropout(F.relu(self.bn2(h))))
        return h + self.skip(x)


@register_family("resnet")
class ResNet1d(Encoder):
    """Ribeiro-style 1-D ResNet encoder.

    Args:
        stem_width: channels of the stem conv.
        widths: channels of each stage.
        blocks: residual blocks per stage (an int applies to every stage).
        downsample: time downsampling factor of each stage (>= 1).
        kernel_size: odd kernel size of every conv but the 1x1 skips (17 at 400 Hz).
        dropout: dropout before each conv inside the blocks (Ribeiro used 0.2).
        n_leads: input channels.
    """

    def __init__(
        self,
        stem_width: int = 64,
        widths: Sequence[int] = (128, 196, 256, 320),
        blocks: int | Sequence[int] = 1,
        downsample: Sequence[int] = (4, 4, 4, 4),
        kernel_size: int = 17,
        dropout: float = 0.0,
        n_leads: int = 12,
    ):
        super().__init__()
        blocks = [blocks] * len(widths) if isinstance(blocks, int) else list(blocks)
        if not (len(widths) == len(blocks) == len(downsample)):
            raise ValueError("widths, blocks and downsample need one entry per stage")
        if kernel_size % 2 == 0:
            raise ValueError(f"kernel_size must be odd, got {kernel_size}")
        if min(downsample) < 1 or min(blocks) < 1:
            raise ValueError("every stage needs >= 1 block and a downsampling factor >= 1")
        self.n_leads = n_leads
        self.dim = widths[-1]
        self.token_span = math.prod(downsample)

        self.stem = conv1d(n_leads, stem_width, kernel_size)
        layers: list[nn.Module] = []
        c_in = stem_width
        for c_out, n_blocks, stride in zip(widths, blocks, downsample, strict=True):
            layers.append(ResBlock(c_in, c_out, kernel_size, stride, dropout))
            layers += [ResBlock(c_out, c_out, kernel_size, 1, dropout) for _ in range(n_blocks - 1)]
            c_in = c_out
        self.blocks = nn.Sequential(*layers)
        self.norm = nn.BatchNorm1d(c_in)

    def forward(self, x: Tensor) -> Tensor:
        """Tokens ``(B, ceil(T / token_span), dim)`` from millivolts ``(B, n_leads, T)``."""
        h = self.blocks(self.stem(self.pad(x)))
        return F.relu(self.norm(h)).transpose(1, 2)

    def embedding_parameters(self) -> Iterator[nn.Parameter]:
        return self.stem.parameters()
