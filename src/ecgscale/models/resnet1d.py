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

Memory layout (what is computed is unchanged; only how): the signal runs through the network
as a 4-D ``(B, C, 1, T)`` tensor in channels-last memory order, i.e. stored as ``(B, T, C)``.
Each convolution keeps its :class:`~torch.nn.Conv1d` parameter ``(c_out, c_in, k)`` and runs as
a 2-D convolution with a ``(1, k)`` kernel (``weight.unsqueeze(2)``); BatchNorm, ReLU and
max-pooling run on the same layout. oneDNN (CPU) and cuDNN (GPU) then convolve without
reordering activations between layers, and the final tokens ``(B, L, D)`` are a free view of
the last activation. Parameter names and shapes are those of the plain 1-D network, so
checkpoints load either way.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ecgscale.models.base import Encoder, register_family


class Conv1d(nn.Conv1d):
    """A :class:`~torch.nn.Conv1d` (same parameters) applied to ``(B, C, 1, T)`` activations.

    The convolution runs as :func:`torch.nn.functional.conv2d` with a ``(1, k)`` kernel, the
    weight viewed as ``(c_out, c_in, 1, k)``; the output keeps the input's memory format.
    """

    def forward(self, x: Tensor) -> Tensor:
        return F.conv2d(
            x,
            self.weight.unsqueeze(2),
            self.bias,
            stride=(1, self.stride[0]),
            padding=(0, self.padding[0]),  # type: ignore[index]
        )


class BatchNorm(nn.BatchNorm1d):
    """A :class:`~torch.nn.BatchNorm1d` (same parameters and buffers) that also takes the
    ``(B, C, 1, T)`` activations of this network."""

    def _check_input_dim(self, input: Tensor) -> None:
        if input.dim() not in (2, 3, 4):
            raise ValueError(f"expected 2-D, 3-D or 4-D input (got {input.dim()}-D input)")


def conv1d(c_in: int, c_out: int, kernel_size: int, stride: int = 1) -> nn.Module:
    """Bias-free 1-D convolution with "same" padding (odd ``kernel_size``) over ``(B, C, 1, T)``."""
    return Conv1d(
        c_in, c_out, kernel_size, stride=stride, padding=(kernel_size - 1) // 2, bias=False
    )


class _CpuDropout(torch.autograd.Function):
    """Inverted dropout with a cheap mask: 16 random bits per element against a threshold.

    torch's CPU dropout draws a float Bernoulli number per element, which took 11-15% of a
    ResNet-500K training step (``shared/MEASURED.md``); 32-bit random integers split in two are
    about 5x cheaper to draw, and the whole dropout, forward and backward, took ~1.5x less time
    (64 x 35 x 4096 activations, 2 threads). ``p`` is rounded to a multiple of 1/65536 and the
    kept values are scaled by the inverse of the rounded keep probability: the output stays
    unbiased. The random numbers come from torch's default generator (``torch.manual_seed``)
    but are not the ones ``F.dropout`` would draw.
    """

    @staticmethod
    def forward(ctx: Any, x: Tensor, p: float) -> Tensor:
        dropped = round(p * 65536)
        n = x.numel()
        bits = torch.randint(-(2**31), 2**31, ((n + 1) // 2,), dtype=torch.int32)
        # x is dense (contiguous in some memory format): lay the bits out as it is laid out
        keep = bits.view(torch.int16).as_strided(x.shape, x.stride()) >= dropped - 32768
        ctx.save_for_backward(keep)
        ctx.scale = 65536 / (65536 - dropped)
        return (x * keep).mul_(ctx.scale)

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor, None]:
        (keep,) = ctx.saved_tensors
        return (grad * keep).mul_(ctx.scale), None


def _dropout(x: Tensor, p: float, training: bool) -> Tensor:
    """The blocks' dropout: nothing at all (no random numbers) when ``p == 0`` or in eval mode,
    the cheap mask of :class:`_CpuDropout` on dense CPU tensors, else ``F.dropout``."""
    if p == 0.0 or not training:
        return x
    dense = x.is_contiguous() or x.is_contiguous(memory_format=torch.channels_last)
    if x.device.type == "cpu" and dense and p < 1.0:
        return _CpuDropout.apply(x, p)
    return F.dropout(x, p, training=True)


class ResBlock(nn.Module):
    """Pre-activation residual block over ``(B, C, 1, T)``; the second conv carries the stride."""

    def __init__(self, c_in: int, c_out: int, kernel_size: int, stride: int, dropout: float):
        super().__init__()
        self.bn1 = BatchNorm(c_in)
        self.conv1 = conv1d(c_in, c_out, kernel_size)
        self.bn2 = BatchNorm(c_out)
        self.conv2 = conv1d(c_out, c_out, kernel_size, stride)
        self.dropout = nn.Dropout(dropout)
        skip: list[nn.Module] = []
        if stride > 1:
            skip.append(nn.MaxPool2d((1, stride), (1, stride)))
        if c_in != c_out:
            skip.append(conv1d(c_in, c_out, 1))
        self.skip = nn.Sequential(*skip)

    def forward(self, x: Tensor) -> Tensor:
        p, training = self.dropout.p, self.training
        # BatchNorm's backward needs its input, not its output: ReLU may overwrite the output.
        h = self.conv1(_dropout(F.relu(self.bn1(x), inplace=True), p, training))
        h = self.conv2(_dropout(F.relu(self.bn2(h), inplace=True), p, training))
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
        self.norm = BatchNorm(c_in)

    def forward(self, x: Tensor) -> Tensor:
        """Tokens ``(B, ceil(T / token_span), dim)`` from millivolts ``(B, n_leads, T)``."""
        h = self.pad(x).unsqueeze(2).contiguous(memory_format=torch.channels_last)
        h = F.relu(self.norm(self.blocks(self.stem(h))), inplace=True)
        return h.squeeze(2).transpose(1, 2)

    def embedding_parameters(self) -> Iterator[nn.Parameter]:
        return self.stem.parameters()
