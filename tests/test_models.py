"""Both model families behind the encoder interface, their size ladders and measured stats."""

from __future__ import annotations

import math
from collections.abc import Iterator

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from ecgscale.models import (
    Encoder,
    build,
    count_params,
    create_model,
    default_ladder,
    list_families,
    measure,
    register_family,
    shape_for,
)
from ecgscale.models.ladder import resnet_downsample, resnet_kernel, transformer_patch

FAMILIES = ("resnet", "transformer")


@pytest.fixture(autouse=True, scope="module")
def one_thread() -> Iterator[None]:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def tiny(family: str, input_len: int = 1000, fs: float = 100, **overrides: object) -> Encoder:
    torch.manual_seed(0)
    return build(family, 20_000, input_len=input_len, fs=fs, **overrides)


# --- registry ----------------------------------------------------------------------------------


def test_registry_lists_and_creates_both_families() -> None:
    assert set(FAMILIES) <= set(list_families())
    for family in FAMILIES:
        model = create_model(family)
        assert isinstance(model, Encoder)
        assert model.family == family


def test_registry_rejects_unknown_and_duplicate_names() -> None:
    with pytest.raises(KeyError, match="unknown model family"):
        create_model("lstm")
    with pytest.raises(ValueError, match="already registered"):
        register_family("resnet")(type("Other", (Encoder,), {}))
    with pytest.raises(TypeError):
        register_family("not-an-encoder")(nn.Linear)  # type: ignore[arg-type]


def test_resnet_defaults_are_ribeiro() -> None:
    with torch.device("meta"):
        model = create_model("resnet")
    assert model.token_span == 256 and model.dim == 320
    assert model.n_tokens(4096) == 16
    assert 6e6 < count_params("resnet") < 7e6


# --- interface ---------------------------------------------------------------------------------


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize(
    ("input_len", "fs"), [(1000, 100), (1024, 100), (2500, 500), (4096, 400), (5000, 500)]
)
def test_tokens_shape_for_any_length(family: str, input_len: int, fs: float) -> None:
    model = tiny(family, input_len, fs).eval()
    assert model.n_tokens(input_len) >= 16
    for T in (input_len, input_len - 3, 37, 1):
        x = torch.randn(2, 12, T)
        with torch.no_grad():
            tokens = model(x)
            features = model.features(x)
        L = math.ceil(T / model.token_span)
        assert model.n_tokens(T) == L
        assert tokens.shape == (2, L, model.dim)
        assert features.shape == (2, model.dim)
        torch.testing.assert_close(features, tokens.mean(dim=1))
        assert torch.isfinite(tokens).all()


@pytest.mark.parametrize("family", FAMILIES)
def test_rejects_wrong_input_shape(family: str) -> None:
    model = tiny(family)
    for shape in [(2, 8, 1000), (12, 1000)]:
        with pytest.raises(ValueError, match="expects"):
            model(torch.randn(shape))


@pytest.mark.parametrize("family", FAMILIES)
def test_gradients_reach_every_parameter(family: str) -> None:
    model = tiny(family, dropout=0.1).train()
    model.features(torch.randn(4, 12, 1000)).pow(2).mean().backward()
    for name, p in model.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name
        assert p.grad.abs().sum() > 0, name


@pytest.mark.parametrize("family", FAMILIES)
def test_eval_is_deterministic_and_per_sample(family: str) -> None:
    model = tiny(family, dropout=0.5)
    model.train()
    model(torch.randn(8, 12, 1000))  # move BatchNorm statistics away from their init
    model.eval()
    x = torch.randn(3, 12, 1000)
    with torch.no_grad():
        a, b, first = model(x), model(x), model(x[:1])
    torch.testing.assert_close(a, b, rtol=0, atol=0)
    torch.testing.assert_close(first, a[:1])


# --- ladder ------------------------------------------------------------------------------------


def test_rules() -> None:
    assert [resnet_kernel(fs) for fs in (50, 100, 250, 360, 400, 500)] == [5, 5, 11, 15, 17, 21]
    assert resnet_downsample(4096) == [4, 4, 4, 4]
    assert resnet_downsample(2500) == [4, 4, 4, 2]
    assert resnet_downsample(1000) == [4, 4, 2, 2]
    assert resnet_downsample(250) == [2, 2, 2, 2]
    assert resnet_downsample(40) == [2, 1, 1, 1]
    assert transformer_patch(100, 1000) == 25
    assert transformer_patch(400, 4096) == 100
    assert transformer_patch(500, 1000) == 62


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize(("input_len", "fs"), [(1000, 100), (4096, 400)])
def test_ladder_hits_targets(family: str, input_len: int, fs: float) -> None:
    for target in (20_000, 60_000, 200_000, 2_000_000, 20_000_000, 200_000_000):
        shape = shape_for(family, target, input_len=input_len, fs=fs)
        n = count_params(family, **shape)
        assert abs(n / target - 1) < 0.10, (target, n, shape)


@pytest.mark.parametrize("family", FAMILIES)
def test_ladder_grows_depth_and_width(family: str) -> None:
    shapes = [shape_for(family, n, input_len=1000, fs=100) for n in (20_000, 2_000_000, 2e8)]
    if family == "resnet":
        assert [s["blocks"] for s in shapes] == [1, 1, 4]
        assert shapes[0]["widths"][-1] < shapes[1]["widths"][-1] < shapes[2]["widths"][-1]
    else:
        assert [s["depth"] for s in shapes] == [2, 6, 20]
        assert [s["dim"] % s["heads"] for s in shapes] == [0, 0, 0]
        assert [s["heads"] for s in shapes] == [1, 8, 14]
        assert 60 <= shapes[-1]["dim"] // shapes[-1]["heads"] <= 70


def test_default_ladder() -> None:
    for family in FAMILIES:
        rungs = default_ladder(family)
        assert rungs[0] == 20_000 and rungs[-1] == 200_000_000 and len(rungs) >= 9
        ratios = [b / a for a, b in zip(rungs, rungs[1:], strict=False)]
        assert all(3 <= r <= 3.34 for r in ratios)
    with pytest.raises(KeyError):
        default_ladder("lstm")
    with pytest.raises(KeyError):
        shape_for("lstm", 20_000, input_len=1000, fs=100)


def test_build_applies_overrides() -> None:
    model = tiny("transformer", dropout=0.25)
    assert model.dropout.p == 0.25
    shape = shape_for("transformer", 20_000, input_len=1000, fs=100)
    assert model.dim == shape["dim"] and model.token_span == shape["patch"] == 25


# --- stats -------------------------------------------------------------------------------------


@pytest.mark.parametrize("family", FAMILIES)
def test_stats_are_sane(family: str) -> None:
    stats = []
    for target in (20_000, 200_000, 2_000_000):
        with torch.device("meta"):
            model = build(family, target, input_len=1000, fs=100)
        stats.append(measure(model, 1000))
    for s in stats:
        assert 0 < s.n_params_nonembedding < s.n_params
        assert s.flops_per_sample > 6 * s.n_params_nonembedding  # >= 1 token per weight use
    assert stats[0].flops_per_sample < stats[1].flops_per_sample < stats[2].flops_per_sample
    assert measure(model, 2000).flops_per_sample > stats[2].flops_per_sample


@pytest.mark.parametrize("family", FAMILIES)
def test_measure_is_pure_and_device_independent(family: str) -> None:
    model = tiny(family).train()
    state = {k: v.clone() for k, v in model.state_dict().items()}
    rng = torch.get_rng_state()
    first, second = measure(model, 1000), measure(model, 1000)
    assert first == second
    assert model.training and all(p.grad is None for p in model.parameters())
    assert torch.equal(rng, torch.get_rng_state())
    for k, v in model.state_dict().items():
        assert torch.equal(v, state[k]), k
    with torch.device("meta"):
        twin = tiny(family)
    assert measure(twin, 1000) == first
    assert first.n_params == sum(p.numel() for p in model.parameters())


def test_transformer_flops_match_formula() -> None:
    """6 x (non-embedding weights) x tokens, + attention, + embedding forward and weight grad."""
    model = create_model("transformer", dim=32, depth=2, heads=2, patch=25)
    L, D, depth = 40, 32, 2
    weights = depth * 12 * D * D  # matmul weights of the blocks
    expected = 6 * weights * L + depth * 3 * 4 * L * L * D + 4 * 300 * D * L
    assert measure(model, 1000).flops_per_sample == expected


# --- training ----------------------------------------------------------------------------------


def toy_batch(g: torch.Generator, n: int = 32, T: int = 250, fs: float = 100):
    """Sines at 1 Hz (label 0) or 4 Hz (label 1), random phase, mixed into 12 leads + noise."""
    y = torch.randint(0, 2, (n,), generator=g).float()
    t = torch.arange(T) / fs
    phase = torch.rand(n, 1, generator=g) * 2 * math.pi
    s = 0.5 * torch.sin(2 * math.pi * (1 + 3 * y)[:, None] * t + phase)
    gains = torch.linspace(-1, 1, 12)
    x = gains[None, :, None] * s[:, None, :] + 0.1 * torch.randn(n, 12, T, generator=g)
    return x, y


@pytest.mark.parametrize("family", FAMILIES)
def test_tiny_model_trains(family: str) -> None:
    model = tiny(family, input_len=250, fs=100)
    head = nn.Linear(model.dim, 1)
    opt = torch.optim.Adam([*model.parameters(), *head.parameters()], lr=3e-3)
    g = torch.Generator().manual_seed(0)
    losses = []
    for _ in range(40):
        x, y = toy_batch(g)
        loss = F.binary_cross_entropy_with_logits(head(model.features(x)).squeeze(1), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert sum(losses[:3]) / 3 > 0.6
    assert sum(losses[-5:]) / 5 < 0.3
