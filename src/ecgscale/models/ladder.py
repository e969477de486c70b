"""Size ladders: a target parameter count -> a model shape, by a stated rule; measured stats.

``N`` is the target total parameter count (12 input leads). The rules need only ``N``, the
sampling rate ``fs`` (Hz) and the input length ``input_len`` (samples). The free width is solved
with the closed-form counts :func:`resnet_params` and :func:`transformer_params` (the tests check
them against the built models); every count that :func:`measure` reports is measured on the
model itself. Measured counts land within 10% of ``N`` from 20K to 200M parameters at any
sampling rate and input length the tests try (50-500 Hz, 256-5000 samples).

ResNet (:class:`~ecgscale.models.resnet1d.ResNet1d`):

==================  ========================================================================
stages              4
kernel              odd integer nearest ``17 * fs / 400``, at least 5 (5 @ 100 Hz, 17 @ 400,
                    21 @ 500)
downsample/stage    4 (Ribeiro: 4096 samples -> 16 tokens); while the output would have fewer
                    than 16 tokens, halve the factors from the last stage backwards (4 -> 2),
                    then again (2 -> 1). 1000 samples: (4, 4, 2, 2), 16 tokens.
blocks/stage        ``max(1, round(N ** 0.25 / 32))``: 1 below ~5.3M, 2 below ~41M, 3 below
                    ~157M, 4 up to ~430M
widths              stem ``round(b)``, stage ``s = 1..4``: ``round((s + 1) * b)`` (Ribeiro:
                    b = 64 -> 64 | 128, 196, 256, 320); the base ``b`` (in steps of 1/4) is
                    solved for ``N``
==================  ========================================================================

Transformer (:class:`~ecgscale.models.transformer.Transformer`), whose parameter count is
``12 d w^2 + (16 * 3 patch / stride + 13 d + 3) w + 16 (12 k + 1)`` for depth ``d``, width ``w``,
and the stem's kernel ``k`` and ``stride`` (:func:`transformer_params`):

==================  ========================================================================
patch               ``round(fs / 10)`` samples (0.1 s: 10 @ 100 Hz, 40 @ 400 Hz), reduced to
                    ``input_len // 16`` when the input is short (>= 16 tokens). 0.1 s tokens
                    resolve the PR interval and the QRS (measured on the demo: with 0.25 s
                    tokens a 20K-200K Transformer learnt nothing from masked time spans, probe
                    BCE 0.21 at every size; with 0.1 s, 0.186 -> 0.156 from 20K to 200K)
stem                16 channels, the odd kernel nearest 0.07 s (7 @ 100 Hz, 29 @ 400 Hz) and
                    GELU, at the largest stride that divides the patch and leaves >= 10 stem
                    samples per token (1 @ 100 Hz, 4 @ 400 Hz, 5 @ 500 Hz)
token embedding     a strided convolution of the stem's channels that reads 3 patches (0.3 s,
                    the PR interval and the QRS together) centred on each token's own. With
                    a linear embedding of each patch a 60K SL Transformer on the demo's data
                    still missed 1dAVb after 1,600 steps (AUROC 0.53); with the stem a 200K one
                    learns it in 400 (0.87), and the demo's Transformer cells scale; 16
                    channels had a lower validation loss than 8 or 32 at every demo size
                    (docs/models-and-training.md, "A convolutional stem for the Transformer")
depth               nominal ``d0 = max(1, round(N ** 0.25 / 6))``: 2 @ 20K, 4 @ 200K, 6 @ 2M,
                    11 @ 20M, 20 @ 200M
heads, width        ``w0``: the real width that the count formula gives for ``N`` at ``d0``.
                    ``w0 >= 128`` (from ~1M): ``head_dim`` is the multiple of 8 nearest
                    ``w0 / 8``, within 16-64 (about 8 heads; heads of 64 from ``w0`` ~480, i.e.
                    ~50M), and the number of heads is solved for ``N``. ``w0 < 128``:
                    ``heads = max(1, round(w0 / 16))`` and the integer ``head_dim`` is solved:
                    steps of 8 are too coarse for 10% there (a 20K model at 400 Hz is 13 wide)
                    and alignment buys nothing at such widths.
depth adjustment    the first of ``d0``, ``d0 - 1``, ``d0 + 1`` whose closest count (width solved
                    as above) is within 8% of ``N``; if none is, the closest of the three.
                    Depth and width still grow along the 1-2-5 rungs at every tested input.
==================  ========================================================================

The transformer's stem and token embedding (``16 * 3 patch / stride * width`` weights and the
stem's) are a large share of the smallest models (53% at 20K, 100 Hz; 67% at 400 Hz; 15-16% at
200K); the rungs target the *total* count, and :func:`measure` reports the non-embedding count
beside it.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch.utils.flop_counter import FlopCounterMode

from ecgscale.models.base import Encoder, create_model

MIN_TOKENS = 16
"""Shortest output sequence that the ladders' downsampling / patch rules allow."""

N_LEADS = 12
"""Input leads of the models that the ladders size."""

ALIGNED_WIDTH = 128
"""Nominal transformer width from which head sizes are multiples of 8."""

DEPTH_TOLERANCE = 0.08
"""Miss (relative) of a transformer depth's closest count beyond which the next depth is tried."""


def resnet_kernel(fs: float) -> int:
    """Odd kernel size nearest ``17 * fs / 400``, at least 5."""
    return max(5, 2 * round((17 * fs / 400 - 1) / 2) + 1)


def resnet_downsample(input_len: int, n_stages: int = 4) -> list[int]:
    """Per-stage factors: 4 each, halved from the last stage back until >= MIN_TOKENS tokens."""
    down = [4] * n_stages
    for i in [*reversed(range(n_stages))] * 2:  # first pass 4 -> 2, second pass 2 -> 1
        if math.ceil(input_len / math.prod(down)) >= MIN_TOKENS:
            break
        down[i] //= 2
    return down


PATCH_S = 0.1
"""Seconds of signal in a Transformer token."""

STEM_CHANNELS = 16
"""Channels of the Transformer's convolutional stem."""

STEM_S = 0.07
"""Seconds of signal the Transformer's stem convolution reads."""

STEM_SAMPLES = 10
"""Fewest stem outputs per Transformer token: the stem's stride is the largest divisor of the
patch that leaves this many (1 at 100 Hz, 4 at 400 Hz)."""

EMBED_PATCHES = 3
"""Patches of signal each Transformer token's embedding reads (its own and one either side)."""


def transformer_embedding(fs: float, patch: int) -> dict[str, int]:
    """The ladder's Transformer stem and token embedding: :data:`STEM_CHANNELS` channels of an
    odd kernel nearest :data:`STEM_S` seconds (at least 3) at the largest stride that divides
    the patch and leaves :data:`STEM_SAMPLES` per token (1 below that), tokens reading
    :data:`EMBED_PATCHES` patches."""
    strides = [d for d in range(1, patch + 1) if patch % d == 0 and patch // d >= STEM_SAMPLES]
    return {
        "stem": STEM_CHANNELS,
        "stem_kernel": max(3, 2 * round((STEM_S * fs - 1) / 2) + 1),
        "stem_stride": max(strides, default=1),
        "embed_kernel": EMBED_PATCHES * patch,
    }


def transformer_patch(fs: float, input_len: int) -> int:
    """About :data:`PATCH_S` of signal, shortened so that the input gives at least MIN_TOKENS
    tokens."""
    return max(1, min(round(fs * PATCH_S), input_len // MIN_TOKENS))


def count_params(family: str, **kwargs: Any) -> int:
    """Total parameters of ``create_model(family, **kwargs)``, built on the meta device."""
    with torch.device("meta"):
        model = create_model(family, **kwargs)
    return sum(p.numel() for p in model.parameters())


def resnet_params(
    stem_width: int, widths: Sequence[int], blocks: int, kernel_size: int, n_leads: int = N_LEADS
) -> int:
    """Parameters of a ResNet1d with ``blocks`` blocks per stage, in closed form."""
    k, c_in = kernel_size, stem_width
    n = n_leads * k * stem_width  # stem conv
    for c in widths:
        for _ in range(blocks):  # BN, conv k, BN, conv k, 1x1 skip conv when the width changes
            n += 2 * c_in + k * c_in * c + 2 * c + k * c * c + (c_in * c if c_in != c else 0)
            c_in = c
    return n + 2 * c_in  # final BN


def _token_reads(
    patch: int, n_leads: int, stem: int, stem_stride: int, embed_kernel: int | None
) -> int:
    """Inputs of one token's embedding: the stem's channels (or the leads) x its samples."""
    return (stem or n_leads) * (embed_kernel or patch) // (stem_stride if stem else 1)


def transformer_params(
    dim: int,
    depth: int,
    patch: int,
    n_leads: int = N_LEADS,
    stem: int = 0,
    stem_kernel: int = 7,
    stem_stride: int = 1,
    embed_kernel: int | None = None,
) -> int:
    """Parameters of a Transformer, in closed form: stem, token embedding, blocks, final
    LayerNorm."""
    reads = _token_reads(patch, n_leads, stem, stem_stride, embed_kernel)
    return (
        12 * depth * dim * dim + (reads + 13 * depth + 3) * dim + (n_leads * stem_kernel + 1) * stem
    )


def _closest(count: Callable[[int], int], target: int) -> int:
    """The integer ``q >= 1`` whose non-decreasing ``count(q)`` is closest to ``target``."""
    hi = 1
    while count(hi) < target:
        hi *= 2
    lo = hi // 2 + 1 if hi > 1 else 1
    while lo < hi:  # smallest q with count(q) >= target
        mid = (lo + hi) // 2
        if count(mid) >= target:
            hi = mid
        else:
            lo = mid + 1
    if lo > 1 and target - count(lo - 1) < count(lo) - target:
        return lo - 1
    return lo


def _resnet_shape(target: int, input_len: int, fs: float) -> dict[str, Any]:
    fixed = {
        "blocks": max(1, round(target**0.25 / 32)),
        "downsample": resnet_downsample(input_len),
        "kernel_size": resnet_kernel(fs),
    }

    def widths(q: int) -> dict[str, Any]:  # base width b = q / 4
        return {
            "stem_width": max(1, round(q / 4)),
            "widths": [max(1, round((s + 1) * q / 4)) for s in range(1, 5)],
        }

    def count(q: int) -> int:
        return resnet_params(**widths(q), blocks=fixed["blocks"], kernel_size=fixed["kernel_size"])

    return {**widths(_closest(count, target)), **fixed}


def _transformer_shape(target: int, input_len: int, fs: float) -> dict[str, Any]:
    patch = transformer_patch(fs, input_len)
    embed = transformer_embedding(fs, patch)
    depth0 = max(1, round(target**0.25 / 6))
    reads = _token_reads(patch, N_LEADS, embed["stem"], embed["stem_stride"], embed["embed_kernel"])
    a, b = 12 * depth0, reads + 13 * depth0 + 3
    w0 = (math.sqrt(b * b + 4 * a * target) - b) / (2 * a)  # root of the count formula

    def solve(depth: int) -> dict[str, Any]:
        def count(dim: int) -> int:
            return transformer_params(dim, depth, patch, **embed)

        if w0 < ALIGNED_WIDTH:  # fixed heads, any head size
            heads = max(1, round(w0 / 16))
            head_dim = _closest(lambda h: count(heads * h), target)
        else:  # fixed head size, a multiple of 8
            head_dim = 8 * min(max(round(w0 / 64), 2), 8)
            heads = _closest(lambda h: count(h * head_dim), target)
        return {"dim": heads * head_dim, "depth": depth, "heads": heads, "patch": patch, **embed}

    def miss(shape: dict[str, Any]) -> float:
        return abs(transformer_params(shape["dim"], shape["depth"], patch, **embed) / target - 1)

    shapes = [solve(depth) for depth in (depth0, depth0 - 1, depth0 + 1) if depth >= 1]
    return next((s for s in shapes if miss(s) <= DEPTH_TOLERANCE), min(shapes, key=miss))


_SHAPE_RULES: dict[str, Callable[[int, int, float], dict[str, Any]]] = {
    "resnet": _resnet_shape,
    "transformer": _transformer_shape,
}


def shape_summary(family: str, shape: dict[str, Any]) -> str:
    """One line: ResNet blocks/widths/kernel/downsampling, Transformer depth/width/heads/patch."""
    if family == "resnet":
        widths = ",".join(map(str, shape["widths"]))
        down = ",".join(map(str, shape["downsample"]))
        return (
            f"blocks {shape['blocks']}, widths {shape['stem_width']}|{widths}, "
            f"kernel {shape['kernel_size']}, down {down}"
        )
    heads, dim = shape["heads"], shape["dim"]
    line = f"depth {shape['depth']}, dim {dim} = {heads}x{dim // heads}, patch {shape['patch']}"
    if shape.get("stem"):
        line += f", stem {shape['stem']}x{shape.get('stem_kernel', 7)}"
        line += f"/{shape['stem_stride']}" if shape.get("stem_stride", 1) > 1 else ""
    if shape.get("embed_kernel", shape["patch"]) != shape["patch"]:
        line += f", token reads {shape['embed_kernel']}"
    return line


def ladder_families() -> list[str]:
    """Model families that have a size ladder, sorted."""
    return sorted(_SHAPE_RULES)


def _check_family(family: str) -> None:
    if family not in _SHAPE_RULES:
        raise KeyError(f"no size ladder for model family {family!r}; known: {sorted(_SHAPE_RULES)}")


def shape_for(family: str, target_params: int, *, input_len: int, fs: float) -> dict[str, Any]:
    """Constructor kwargs of ``family`` whose parameter count is closest to ``target_params``."""
    _check_family(family)
    return _SHAPE_RULES[family](int(target_params), input_len, fs)


def build(
    family: str, target_params: int, *, input_len: int, fs: float, **overrides: Any
) -> Encoder:
    """The ladder's model for ``target_params``; ``overrides`` replace or add constructor kwargs
    (e.g. ``dropout=0.2``). Build under ``with torch.device("meta"):`` to size it for free."""
    shape = shape_for(family, target_params, input_len=input_len, fs=fs)
    return create_model(family, **{**shape, **overrides})


DEFAULT_RUNGS = (
    20_000,
    50_000,
    100_000,
    200_000,
    500_000,
    1_000_000,
    2_000_000,
    5_000_000,
    10_000_000,
    20_000_000,
    50_000_000,
    100_000_000,
    200_000_000,
)
"""Default rung targets (parameters): the 1-2-5 series from 20K to 200M, 13 rungs."""


def default_ladder(family: str) -> list[int]:
    """The rung targets of ``family``'s ladder: :data:`DEFAULT_RUNGS`."""
    _check_family(family)
    return list(DEFAULT_RUNGS)


@dataclass(frozen=True)
class ModelStats:
    """Measured size of one encoder at one input length."""

    n_params: int
    """Total parameters."""
    n_params_nonembedding: int
    """Total minus the input embedding (ResNet stem conv, Transformer stem and token
    embedding)."""
    flops_per_sample: int
    """Training FLOPs (forward + backward) per sample, as FlopCounterMode counts them."""
    input_len: int
    """Samples per lead of the input that flops_per_sample refers to."""
    forward_flops_per_sample: int
    """Forward-pass FLOPs per sample (what evaluating one record costs), counted alike."""


def measure(encoder: Encoder, input_len: int) -> ModelStats:
    """Parameter counts and training FLOPs per sample of ``encoder`` at ``input_len`` samples.

    FLOPs are counted by FlopCounterMode on a batch of 2 (forward, then the gradients of every
    parameter), halved; the forward pass's alone too. The model runs in eval mode on
    meta-device stand-ins for its parameters and buffers, so nothing is computed, its state
    (mode, BatchNorm statistics, ``.grad``, RNG) is left untouched, and the count does not
    depend on its device. Counted: matmuls,
    convolutions and attention (as the meta device's math path: two matmuls forward, four
    backward, i.e. no flash-attention recomputation); not counted: elementwise ops and norms.
    """
    tensors = dict(encoder.named_parameters()) | dict(encoder.named_buffers())
    meta = {name: torch.empty_like(t, device="meta") for name, t in tensors.items()}
    params = [meta[name].requires_grad_() for name, _ in encoder.named_parameters()]
    x = torch.zeros(2, encoder.n_leads, input_len, device="meta", dtype=params[0].dtype)
    was_training = encoder.training
    encoder.eval()
    try:
        with FlopCounterMode(display=False) as counter:
            tokens = torch.func.functional_call(encoder, meta, (x,))
            forward = counter.get_total_flops()
            torch.autograd.grad(tokens.sum(), params)
    finally:
        encoder.train(was_training)
    n_params = sum(p.numel() for p in params)
    return ModelStats(
        n_params=n_params,
        n_params_nonembedding=n_params - sum(p.numel() for p in encoder.embedding_parameters()),
        flops_per_sample=counter.get_total_flops() // 2,
        input_len=input_len,
        forward_flops_per_sample=forward // 2,
    )
