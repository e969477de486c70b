"""Size ladders: a target parameter count -> a model shape, by a stated rule; measured stats.

``N`` is the target total parameter count (12 input leads). The rules need only ``N``, the
sampling rate ``fs`` (Hz) and the input length ``input_len`` (samples); every parameter count
is *measured* on a model built on the ``meta`` device (no memory, no compute), and the free
width is solved so that the measured count is the closest to ``N``.

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

Transformer (:class:`~ecgscale.models.transformer.Transformer`):

==================  ========================================================================
patch               ``round(fs / 4)`` samples (0.25 s: 25 @ 100 Hz, 100 @ 400 Hz), reduced to
                    ``input_len // 16`` when the input is short (>= 16 tokens)
depth               ``max(1, round(N ** 0.25 / 6))``: 2 @ 20K, 4 @ 200K, 6 @ 2M, 11 @ 20M,
                    20 @ 200M
heads               from the width ``w0`` that the parameter formula gives for ``N`` and
                    ``depth``: head size ``clamp(w0 / 8, 16, 64)``, ``heads =
                    max(1, round(w0 / head size))`` (up to 8 heads of 16-64 dims, then heads
                    of ~64 dims)
width               ``heads * head_dim`` with the integer ``head_dim`` solved for ``N``
==================  ========================================================================

The transformer's patch embedding (``12 * patch * width`` weights) is a large share of the
smallest models (about 40% at 20K, 100 Hz) and most of them at 400-500 Hz; the rungs target the
*total* count, and :func:`measure` reports the non-embedding count beside it.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch.utils.flop_counter import FlopCounterMode

from ecgscale.models.base import Encoder, create_model

MIN_TOKENS = 16
"""Shortest output sequence that the ladders' downsampling / patch rules allow."""

N_LEADS = 12
"""Input leads of the models that the ladders size."""


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


def transformer_patch(fs: float, input_len: int) -> int:
    """About 0.25 s of signal, shortened so that the input gives at least MIN_TOKENS tokens."""
    return max(1, min(round(fs / 4), input_len // MIN_TOKENS))


def count_params(family: str, **kwargs: Any) -> int:
    """Total parameters of ``create_model(family, **kwargs)``, built on the meta device."""
    with torch.device("meta"):
        model = create_model(family, **kwargs)
    return sum(p.numel() for p in model.parameters())


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

    q = _closest(lambda q: count_params("resnet", **widths(q), **fixed), target)
    return {**widths(q), **fixed}


def _transformer_shape(target: int, input_len: int, fs: float) -> dict[str, Any]:
    patch = transformer_patch(fs, input_len)
    depth = max(1, round(target**0.25 / 6))
    # params = 12 depth w^2 + (12 patch + 13 depth + 3) w: embedding, blocks, final norm
    a, b = 12 * depth, N_LEADS * patch + 13 * depth + 3
    w0 = (math.sqrt(b * b + 4 * a * target) - b) / (2 * a)
    heads = max(1, round(w0 / min(max(w0 / 8, 16), 64)))
    fixed = {"depth": depth, "heads": heads, "patch": patch}
    head_dim = _closest(lambda h: count_params("transformer", dim=heads * h, **fixed), target)
    return {"dim": heads * head_dim, **fixed}


_SHAPE_RULES: dict[str, Callable[[int, int, float], dict[str, Any]]] = {
    "resnet": _resnet_shape,
    "transformer": _transformer_shape,
}


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
    60_000,
    200_000,
    600_000,
    2_000_000,
    6_000_000,
    20_000_000,
    60_000_000,
    200_000_000,
)
"""Default rung targets (parameters), half a decade apart."""


def default_ladder(family: str) -> list[int]:
    """Nine rung targets, half a decade apart (x3, x10/3), from 20K to 200M parameters."""
    _check_family(family)
    return list(DEFAULT_RUNGS)


@dataclass(frozen=True)
class ModelStats:
    """Measured size of one encoder at one input length."""

    n_params: int
    """Total parameters."""
    n_params_nonembedding: int
    """Total minus the input embedding (ResNet stem conv, Transformer patch embedding)."""
    flops_per_sample: int
    """Training FLOPs (forward + backward) per sample, as FlopCounterMode counts them."""
    input_len: int
    """Samples per lead of the input that flops_per_sample refers to."""


def measure(encoder: Encoder, input_len: int) -> ModelStats:
    """Parameter counts and training FLOPs per sample of ``encoder`` at ``input_len`` samples.

    FLOPs are counted by FlopCounterMode on a batch of 2 (forward, then the gradients of every
    parameter), halved. The model runs in eval mode on meta-device stand-ins for its parameters
    and buffers, so nothing is computed, its state (mode, BatchNorm statistics, ``.grad``, RNG)
    is left untouched, and the count does not depend on its device. Counted: matmuls,
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
            torch.autograd.grad(tokens.sum(), params)
    finally:
        encoder.train(was_training)
    n_params = sum(p.numel() for p in params)
    return ModelStats(
        n_params=n_params,
        n_params_nonembedding=n_params - sum(p.numel() for p in encoder.embedding_parameters()),
        flops_per_sample=counter.get_total_flops() // 2,
        input_len=input_len,
    )
