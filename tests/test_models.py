"""Both model families behind the encoder interface, their size ladders and measured stats."""

from __future__ import annotations

import json
import math
import resource
import time
from collections.abc import Iterator

import pytest
import torch
import torch.nn.functional as F
from click.testing import CliRunner
from torch import nn

from ecgscale.cli import _parse_rung, main
from ecgscale.models import (
    Encoder,
    build,
    count_params,
    create_model,
    default_ladder,
    ladder,
    list_families,
    measure,
    register_family,
    shape_for,
)
from ecgscale.models.ladder import (
    DEFAULT_RUNGS,
    resnet_downsample,
    resnet_kernel,
    resnet_params,
    transformer_params,
    transformer_patch,
)
from ecgscale.objectives import create_objective

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
    assert transformer_patch(100, 1000) == 10
    assert transformer_patch(400, 4096) == 40
    assert transformer_patch(500, 1000) == 50
    assert transformer_patch(100, 100) == 6  # 16 tokens at least


# input lengths and rates a study may choose: CODE, PTB-XL, CinC, a short crop, low rates
INPUTS = [(1000, 100), (2500, 250), (4096, 400), (5000, 500), (2048, 400), (256, 100), (500, 50)]


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize(("input_len", "fs"), INPUTS)
def test_ladder_hits_targets(family: str, input_len: int, fs: float) -> None:
    for target in DEFAULT_RUNGS:
        shape = shape_for(family, target, input_len=input_len, fs=fs)
        n = count_params(family, **shape)
        assert abs(n / target - 1) < 0.10, (target, n, shape)


@pytest.mark.parametrize(("input_len", "fs"), INPUTS)
def test_ladder_shapes_grow_and_heads_align(input_len: int, fs: float) -> None:
    resnets = [shape_for("resnet", n, input_len=input_len, fs=fs) for n in DEFAULT_RUNGS]
    for small, big in zip(resnets, resnets[1:], strict=False):
        assert small["blocks"] < big["blocks"] or (
            small["blocks"] == big["blocks"] and small["widths"][-1] < big["widths"][-1]
        )
    vits = [shape_for("transformer", n, input_len=input_len, fs=fs) for n in DEFAULT_RUNGS]
    for small, big in zip(vits, vits[1:], strict=False):
        assert small["depth"] <= big["depth"] and small["dim"] < big["dim"]
    for target, shape in zip(DEFAULT_RUNGS, vits, strict=True):
        head_dim, rest = divmod(shape["dim"], shape["heads"])
        assert rest == 0
        if target >= 2_000_000:
            assert head_dim % 8 == 0 and 16 <= head_dim <= 64, shape


def test_ladder_shapes_at_100hz() -> None:
    shapes = {
        family: [shape_for(family, n, input_len=1000, fs=100) for n in (20_000, 2e6, 2e8)]
        for family in FAMILIES
    }
    assert [s["blocks"] for s in shapes["resnet"]] == [1, 1, 4]
    assert [s["kernel_size"] for s in shapes["resnet"]] == [5, 5, 5]
    assert [(s["depth"], s["heads"]) for s in shapes["transformer"]] == [(2, 1), (6, 7), (20, 14)]
    assert shapes["transformer"][-1]["dim"] == 14 * 64


@pytest.mark.parametrize(("input_len", "fs"), [(1000, 100), (4096, 400), (256, 100)])
def test_closed_form_counts_are_the_models(input_len: int, fs: float) -> None:
    for target in DEFAULT_RUNGS[::3]:
        r = shape_for("resnet", target, input_len=input_len, fs=fs)
        n = resnet_params(r["stem_width"], r["widths"], r["blocks"], r["kernel_size"])
        assert n == count_params("resnet", **r)
        t = shape_for("transformer", target, input_len=input_len, fs=fs)
        assert t["stem"] == 16 and t["embed_kernel"] == 3 * t["patch"]
        n = transformer_params(**{k: v for k, v in t.items() if k != "heads"})
        assert n == count_params("transformer", **t)
    resnet = {"stem_width": 8, "widths": [16, 16], "blocks": 3, "kernel_size": 7, "n_leads": 3}
    assert resnet_params(**resnet) == count_params("resnet", **resnet, downsample=[2, 2])
    vit = {"dim": 24, "depth": 3, "patch": 10, "n_leads": 2}
    assert transformer_params(**vit) == count_params("transformer", **vit, heads=3)
    for embed in (
        {"embed_kernel": 14},
        {"stem": 5, "stem_kernel": 3},
        {"stem": 4, "embed_kernel": 30},
        {"stem": 4, "stem_stride": 2, "embed_kernel": 14},
    ):
        assert transformer_params(**vit, **embed) == count_params(
            "transformer", **vit, **embed, heads=3
        )


def test_transformer_token_embeddings() -> None:
    """A wider token embedding and a stem keep one token per patch; a token reads its
    neighbours' samples only through them; everything before the blocks is embedding."""
    x = torch.randn(2, 12, 200)
    linear = create_model("transformer", dim=16, depth=1, heads=2, patch=10)
    wide = create_model("transformer", dim=16, depth=1, heads=2, patch=10, embed_kernel=30)
    stem = create_model("transformer", dim=16, depth=1, heads=2, patch=10, stem=4, embed_kernel=30)
    strided = create_model(
        "transformer", dim=16, depth=1, heads=2, patch=10, stem=4, stem_stride=5, embed_kernel=30
    )
    for model in (linear, wide, stem, strided):
        assert model(x).shape == (2, 20, 16)
        n_embed = sum(p.numel() for p in model.embedding_parameters())
        assert n_embed == sum(p.numel() for p in model.parameters()) - sum(
            p.numel() for p in [*model.blocks.parameters(), *model.norm.parameters()]
        )
    assert isinstance(linear.embed, torch.nn.Linear)
    # Token 5 reads samples 40..69 through the wide embedding: a change at sample 39 reaches
    # its embedding only through the stem's kernel (7 samples), at sample 35 not at all.
    for model, reaches_39 in ((wide, False), (stem, True)):
        y = x.clone()
        y[:, :, 39] += 1.0
        moved = (model.embed(y) - model.embed(x)).abs().amax(dim=(0, 1))
        assert bool(moved[5] > 0) == reaches_39 and bool(moved[3] > 0)
        z = x.clone()
        z[:, :, 35] += 1.0
        assert not bool((model.embed(z) - model.embed(x)).abs().amax(dim=(0, 1))[5] > 0)
    bad_kwargs = (
        {"embed_kernel": 15},
        {"embed_kernel": 5},
        {"stem": 4, "stem_kernel": 6},
        {"stem": 4, "stem_stride": 3},  # not a divisor of the patch
        {"stem": 4, "stem_stride": 5, "embed_kernel": 12},  # not patch + 2k strides
    )
    for bad in bad_kwargs:
        with pytest.raises(ValueError):
            create_model("transformer", dim=16, depth=1, heads=2, patch=10, **bad)


def test_default_ladder() -> None:
    for family in FAMILIES:
        rungs = default_ladder(family)
        assert rungs[0] == 20_000 and rungs[-1] == 200_000_000 and len(rungs) >= 10
        assert {50_000, 500_000, 5_000_000} <= set(rungs)  # the training benchmark's rungs
        ratios = [b / a for a, b in zip(rungs, rungs[1:], strict=False)]
        assert set(ratios) == {2, 2.5}  # the 1-2-5 series
    with pytest.raises(KeyError):
        default_ladder("lstm")
    with pytest.raises(KeyError):
        shape_for("lstm", 20_000, input_len=1000, fs=100)


def test_build_applies_overrides() -> None:
    model = tiny("transformer", dropout=0.25)
    assert model.dropout.p == 0.25
    shape = shape_for("transformer", 20_000, input_len=1000, fs=100)
    assert model.dim == shape["dim"] and model.token_span == shape["patch"] == 10


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


@pytest.mark.slow
@pytest.mark.parametrize("family", FAMILIES)
def test_top_rung_takes_a_training_step_on_cpu(family: str) -> None:
    """The 200M rung at 100 Hz x 1000, fp32: forward, backward and one AdamW step, batch 2."""
    start = time.perf_counter()
    torch.manual_seed(0)
    objective = create_objective("sl", build(family, 200_000_000, input_len=1000, fs=100), fs=100)
    params = list(objective.parameters())
    assert abs(sum(p.numel() for p in params) / 2e8 - 1) < 0.10
    before = [p.detach().flatten()[:64].clone() for p in params]
    optimizer = torch.optim.AdamW(params)
    built = time.perf_counter()
    x, y = torch.randn(2, 12, 1000), torch.randint(0, 2, (2, 6)).float()
    loss = objective.loss(x, y)
    loss.backward()
    optimizer.step()
    done = time.perf_counter()
    assert torch.isfinite(loss)
    after = [p.detach().flatten()[:64] for p in params]
    assert not any(torch.equal(b, a) for b, a in zip(before, after, strict=True))
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    print(
        f"{family} 200M: build {built - start:.1f} s, step {done - built:.1f} s "
        f"({torch.get_num_threads()} thread), peak RSS of the process {peak:.2f} GiB"
    )


# --- command line ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "value"),
    [("200000", 200_000), ("2e5", 200_000), ("200K", 200_000), ("2m", 2_000_000), ("0.2G", 2e8)],
)
def test_rung_argument(text: str, value: int) -> None:
    assert _parse_rung(text) == value


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["show", "lstm", "2M"], "no size ladder for model family 'lstm'"),
        (["show", "resnet", "20x"], "rung '20x' is not a parameter count"),
        (["show", "resnet", "0"], "rung '0' is not a parameter count"),
        (["show", "resnet", "K"], "rung 'K' is not a parameter count"),
        (["show", "resnet", "10"], "rung '10': a model size is at least 1000 parameters"),
        (["list", "--spec", "missing.yaml"], "no such spec file"),
    ],
)
def test_models_commands_fail_in_one_line(args: list[str], message: str) -> None:
    result = CliRunner().invoke(main, ["models", *args])
    assert result.exit_code in (1, 2)
    assert result.output.count("\n") == 1 and message in result.output


def test_models_list(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:
    monkeypatch.setattr(ladder, "DEFAULT_RUNGS", (20_000, 200_000_000))
    result = CliRunner().invoke(main, ["models", "list"])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert "500 samples @ 100 Hz" in lines[0] and lines[1].split()[:3] == [
        "family",
        "target",
        "params",
    ]
    rows = [line.split() for line in lines[2:]]
    assert [row[:2] for row in rows] == [
        ["resnet", "20K"],
        ["resnet", "200M"],
        ["transformer", "20K"],
        ["transformer", "200M"],
    ]
    assert all(abs(float(row[4].rstrip("%"))) < 10 for row in rows)
    assert "dim 896 = 14x64" in lines[-1]

    spec = tmp_path / "spec.yaml"
    spec.write_text(
        "name: t\nmodels: {sizes: [20000]}\ndata_sizes: [100]\ndata: {fs: 400, n_samples: 4096}\n"
    )
    result = CliRunner().invoke(main, ["models", "list", "--spec", str(spec), "--fs", "500"])
    assert result.exit_code == 0, result.output
    assert "4096 samples @ 500 Hz" in result.output and "kernel 21" in result.output


def test_models_show() -> None:
    result = CliRunner().invoke(
        main, ["models", "show", "transformer", "2M", "--input-len", "4096", "--fs", "400"]
    )
    assert result.exit_code == 0, result.output
    shape = shape_for("transformer", 2_000_000, input_len=4096, fs=400)
    assert f"kwargs: {json.dumps(shape)}" in result.output
    assert "tokens: 103 x" in result.output and "Transformer(" in result.output
    result = CliRunner().invoke(main, ["models", "show", "resnet", "50K", "--step"])
    assert result.exit_code == 0, result.output
    assert "ResNet1d(" in result.output and "one SL step (batch 2" in result.output
