"""ViT-style Transformer encoder over time patches of the 12-lead ECG.

A token stands for ``patch`` consecutive samples of all ``n_leads`` leads (``token_span =
patch``). Its embedding is either one linear layer over the patch, flattened lead-major (``[lead
0 samples..., lead 1 samples..., ...]``; the default), or, with ``stem`` channels, a small
convolutional stem (``Conv1d(n_leads, stem, stem_kernel, stride=stem_stride)`` and GELU)
followed by a strided convolution of the stem's channels to ``dim``, so each token reads
``embed_kernel`` samples centred on its patch (early convolutions, as in Xiao et al. 2021 and
the convolutional feature encoders of wav2vec 2.0 and fairseq-signals' ECG Transformers; the
ladder's rule, and the measurement behind it, are in :mod:`ecgscale.models.ladder`). Positions
are added as a *fixed* 1-D sine-cosine embedding (as in MAE): it has no parameters, works for
any number of tokens (any ``T``) and is the same for every model, so the non-embedding
parameter count is the token embedding's complement. The blocks are pre-LN (``x +
attn(LN(x))``, ``x + mlp(LN(x))``) with multi-head self-attention through
:func:`torch.nn.functional.scaled_dot_product_attention` and a 4x GELU MLP; a final LayerNorm
is applied to every token. There is no class token: :meth:`Encoder.features` mean-pools.

Initialisation: truncated normal (std 0.02) for linear layers, the two residual projections of
each block scaled by ``1 / sqrt(2 * depth)`` (GPT-2), Xavier-uniform token embedding (MAE; its
convolutions as the matrices of their flattened kernels).
"""

from __future__ import annotations

import math
from collections.abc import Iterator

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ecgscale.models.base import Encoder, register_family


def sincos_positions(n: int, dim: int, device: torch.device | None = None) -> Tensor:
    """Fixed sine-cosine position embedding ``(n, dim)`` (first half sines, then cosines)."""
    half = (dim + 1) // 2
    freqs = 10000.0 ** (-torch.arange(half, dtype=torch.float32, device=device) / half)
    angles = torch.arange(n, dtype=torch.float32, device=device)[:, None] * freqs
    return torch.cat([angles.sin(), angles.cos()], dim=1)[:, :dim]


class SelfAttention(nn.Module):
    """Multi-head self-attention (no mask) via scaled_dot_product_attention, one fused QKV
    projection. On the CPU the attention product itself always runs in fp32, also under bf16
    autocast (its inputs are upcast, its output cast back): see ``forward``."""

    def __init__(self, dim: int, heads: int, dropout: float):
        super().__init__()
        if dim % heads:
            raise ValueError(f"dim {dim} is not a multiple of heads {heads}")
        self.heads = heads
        self.dropout = dropout
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)
        self.resid_dropout = nn.Dropout(dropout)

    def forward(self, x: Tensor) -> Tensor:
        B, L, D = x.shape
        q, k, v = self.qkv(x).view(B, L, 3, self.heads, D // self.heads).permute(2, 0, 3, 1, 4)
        dropout = self.dropout if self.training else 0.0
        if x.device.type == "cpu" and q.dtype != torch.float32:
            # CPU flash attention's bf16 backward ran ~10x slower than its fp32 one at these
            # head sizes (Xeon with AMX, 2 threads: 28 vs 2.7 ms a call at 500K parameters),
            # which made bf16 autocast slow the whole step: attention runs in fp32 there.
            with torch.autocast("cpu", enabled=False):
                y = F.scaled_dot_product_attention(
                    q.float(), k.float(), v.float(), dropout_p=dropout
                ).to(q.dtype)
        else:
            y = F.scaled_dot_product_attention(q, k, v, dropout_p=dropout)
        return self.resid_dropout(self.proj(y.transpose(1, 2).reshape(B, L, D)))


class MLP(nn.Module):
    """Linear(dim, 4 dim) -> GELU -> Linear(4 dim, dim) -> Dropout."""

    def __init__(self, dim: int, dropout: float):
        super().__init__()
        self.fc = nn.Linear(dim, 4 * dim)
        self.proj = nn.Linear(4 * dim, dim)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: Tensor) -> Tensor:
        return self.dropout(self.proj(F.gelu(self.fc(x))))


class Block(nn.Module):
    """Pre-LN Transformer block."""

    def __init__(self, dim: int, heads: int, dropout: float):
        super().__init__()
        self.ln1 = nn.LayerNorm(dim)
        self.attn = SelfAttention(dim, heads, dropout)
        self.ln2 = nn.LayerNorm(dim)
        self.mlp = MLP(dim, dropout)

    def forward(self, x: Tensor) -> Tensor:
        x = x + self.attn(self.ln1(x))
        return x + self.mlp(self.ln2(x))


@register_family("transformer")
class Transformer(Encoder):
    """ViT-style encoder over time patches.

    Args:
        dim: token width ``D`` (a multiple of ``heads``).
        depth: number of blocks.
        heads: attention heads per block.
        patch: samples per patch (= token_span); the ladder's is 0.1 s of signal, 10 at 100 Hz.
        dropout: dropout on attention weights, residual branches and embedded tokens.
        n_leads: input channels.
        pos_scale: amplitude of the fixed sine-cosine position code. Embedded millivolt
            patches start with a standard deviation of roughly 0.1, so a unit-amplitude code
            would drown the signal at initialisation (measured: SL BCE 0.209 → 0.168 after 200
            steps at 200K parameters with 0.1 instead of 1).
        stem: channels of the convolutional stem; 0 for none.
        stem_kernel: the stem convolution's kernel (odd).
        stem_stride: the stem convolution's stride, a divisor of ``patch`` and of
            ``embed_kernel`` (the ladder's stride at 400 Hz, 4, leaves 100 stem samples a
            second).
        embed_kernel: samples each token's embedding reads, centred on its patch: ``patch``
            plus an even number of stem strides; None for ``patch``. With neither a stem nor a
            wider kernel the embedding is the linear layer over the flattened patch.
    """

    def __init__(
        self,
        dim: int = 192,
        depth: int = 6,
        heads: int = 6,
        patch: int = 25,
        dropout: float = 0.0,
        n_leads: int = 12,
        pos_scale: float = 0.1,
        stem: int = 0,
        stem_kernel: int = 7,
        stem_stride: int = 1,
        embed_kernel: int | None = None,
    ):
        super().__init__()
        kernel, step = embed_kernel or patch, stem_stride if stem else 1
        if patch % step or kernel < patch or (kernel - patch) % (2 * step):
            raise ValueError(
                f"embed_kernel {kernel} must be patch {patch} plus an even number of stem "
                f"strides ({step}), a divisor of the patch"
            )
        if stem and stem_kernel % 2 == 0:
            raise ValueError(f"stem_kernel {stem_kernel} must be odd")
        self.n_leads = n_leads
        self.pos_scale = pos_scale
        self.dim = dim
        self.token_span = patch
        if stem or kernel != patch:
            layers: list[nn.Module] = []
            if stem:
                layers += [
                    nn.Conv1d(n_leads, stem, stem_kernel, step, padding=stem_kernel // 2),
                    nn.GELU(),
                ]
            pad = (kernel - patch) // 2 // step
            layers.append(
                nn.Conv1d(stem or n_leads, dim, kernel // step, stride=patch // step, padding=pad)
            )
            self.embed: nn.Module = nn.Sequential(*layers)
        else:
            self.embed = nn.Linear(n_leads * patch, dim)
        self.dropout = nn.Dropout(dropout)
        self.blocks = nn.Sequential(*[Block(dim, heads, dropout) for _ in range(depth)])
        self.norm = nn.LayerNorm(dim)

        self.apply(self._init_weights)
        for layer in self.embed.modules():
            if isinstance(layer, (nn.Linear, nn.Conv1d)):
                nn.init.xavier_uniform_(layer.weight.view(layer.weight.shape[0], -1))
                nn.init.zeros_(layer.bias)
        for block in self.blocks:
            for proj in (block.attn.proj, block.mlp.proj):
                nn.init.trunc_normal_(proj.weight, std=0.02 / math.sqrt(2 * depth))

    @staticmethod
    def _init_weights(module: nn.Module) -> None:
        if isinstance(module, nn.Linear):
            nn.init.trunc_normal_(module.weight, std=0.02)
            nn.init.zeros_(module.bias)

    def forward(self, x: Tensor) -> Tensor:
        """Tokens ``(B, ceil(T / patch), dim)`` from millivolts ``(B, n_leads, T)``."""
        x = self.pad(x)
        B, C, T = x.shape
        L = T // self.token_span
        if isinstance(self.embed, nn.Linear):
            h = self.embed(x.reshape(B, C, L, self.token_span).transpose(1, 2).reshape(B, L, -1))
        else:
            h = self.embed(x).transpose(1, 2)
        h = h + self.pos_scale * sincos_positions(L, self.dim, h.device).to(h.dtype)
        h = self.blocks(self.dropout(h))
        return self.norm(h)

    def embedding_parameters(self) -> Iterator[nn.Parameter]:
        return self.embed.parameters()
