"""Objectives and the training loop, on tiny models and data."""

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from ecgscale.models import build
from ecgscale.objectives import MaskedReconstruction, create_objective
from ecgscale.objectives.masked import decoder_heads
from ecgscale.spec import TrainSpec
from ecgscale.train import TrainingDiverged, load_weights, pretrain, save_weights, warmup_cosine
from ecgscale.train.loop import BatchOrder, Loader, time_shifted


@pytest.mark.parametrize("family", ["resnet", "transformer"])
@pytest.mark.parametrize("mask", ["time", "lead"])
def test_masked_loss_ignores_visible_samples(family, mask):
    torch.manual_seed(0)
    obj = create_objective(
        "ssl",
        build(family, 20000, input_len=200, fs=100),
        fs=100,
        mask_ratio=0.5,
        mask_patch_s=0.2,
        mask=mask,
        norm_target=False,
    )
    assert isinstance(obj, MaskedReconstruction) and obj.patch == 20
    x = torch.randn(3, 12, 200)
    mask_ = obj.sample_mask(x, torch.Generator().manual_seed(1))
    assert mask_.shape == x.shape and 0.2 < mask_.float().mean() < 0.8
    # a mask is constant within each patch of each lead
    m = mask_.view(3, 12, 10, 20)
    assert (m == m[..., :1]).all()
    # time masking hides the same spans in every lead; lead masking does not
    same = (mask_ == mask_[:, :1]).all()
    assert same if mask == "time" else not same
    # changing visible samples' targets does not change the loss given the same input
    recon = obj.reconstruct(x.masked_fill(mask_, 0.0))
    assert recon.shape == x.shape
    loss = ((recon - x).square() * mask_).sum() / mask_.sum()
    got = obj.loss(x, None, generator=torch.Generator().manual_seed(1))
    assert torch.isclose(loss, got)


@pytest.mark.parametrize("family", ["resnet", "transformer"])
def test_a_decoder_sits_between_encoder_and_head_and_trains(family):
    torch.manual_seed(0)
    encoder = build(family, 20000, input_len=200, fs=100)
    obj = create_objective("ssl", encoder, fs=100, mask_patch_s=0.2, decoder_depth=2)
    width = max(16, encoder.dim // 2)  # half the encoder's: MAE's lightweight decoder
    assert len(obj.decoder_blocks) == 2 and obj.decoder_in.out_features == width
    assert obj.decoder_blocks[0].attn.heads == decoder_heads(width)
    x = torch.randn(3, 12, 200)
    assert obj.reconstruct(x).shape == x.shape
    loss = obj.loss(x, None, generator=torch.Generator().manual_seed(1))
    loss.backward()
    for name in ("decoder_blocks.0.attn.qkv.weight", "decoder_blocks.1.mlp.fc.weight"):
        assert obj.get_parameter(name).grad.abs().sum() > 0, name
    # without one, the objective holds the encoder and the linear head only (older weights load)
    plain = create_objective("ssl", encoder, fs=100, mask_patch_s=0.2)
    assert {k.split(".")[0] for k in plain.state_dict()} == {"encoder", "decoder"}


@pytest.mark.parametrize(
    ("dim", "heads"), [(19, 1), (31, 1), (34, 2), (54, 3), (60, 3), (64, 4), (99, 3), (512, 32)]
)
def test_decoder_heads_divide_the_width_at_about_16_dimensions_each(dim, heads):
    assert decoder_heads(dim) == heads


def test_normalised_targets_standardise_each_lead_patch():
    obj = create_objective(
        "ssl", build("transformer", 20000, input_len=200, fs=100), fs=100, mask_patch_s=0.2
    )
    assert obj.mask == "time" and obj.norm_target
    x = 0.7 * torch.randn(2, 12, 200) + 3.0  # an offset (baseline) and a gain
    x[0, 4] = 0.01 * torch.randn(200)  # a flat lead: its noise is not blown up
    patches = obj.target(x).view(2, 12, 10, 20)
    assert torch.allclose(patches.mean(-1), torch.zeros(2, 12, 10), atol=1e-5)
    assert torch.allclose(patches[1].std(-1, unbiased=False), torch.ones(12, 10), atol=1e-4)
    assert patches[0, 4].abs().max() < 1.0  # divided by the floor (0.05 mV), not its own std
    with torch.autocast("cpu", torch.bfloat16):  # the training step's autocast: still fp32
        assert torch.allclose(obj.target(x), patches.flatten(-2), atol=1e-6)


def test_settle_gives_batchnorm_the_statistics_of_unmasked_inputs():
    torch.manual_seed(0)
    obj = create_objective("ssl", build("resnet", 20000, input_len=200, fs=100), fs=100)
    x = (2.0 + torch.randn(64, 12, 200)).numpy()
    obj.train()
    for _ in range(20):  # pre-training sees half-zeroed inputs
        obj.loss(torch.from_numpy(x), None, generator=torch.Generator().manual_seed(0))
    stem_norm = next(m for m in obj.encoder.modules() if isinstance(m, torch.nn.BatchNorm1d))
    masked_mean = stem_norm.running_mean.clone()
    obj.settle(lambda rows: x[rows], np.arange(64))
    obj.encoder.train()
    with torch.no_grad():  # one unmasked batch in train mode: its statistics are the reference
        fresh = type(stem_norm)(stem_norm.num_features).train()
        handle = stem_norm.register_forward_hook(lambda m, i, o: fresh(i[0]))
        obj.encoder(torch.from_numpy(x))
        handle.remove()
    assert torch.allclose(stem_norm.running_mean, fresh.running_mean / fresh.momentum, atol=1e-4)
    assert not torch.allclose(masked_mean, stem_norm.running_mean, atol=1e-3)


def test_supervised_loss_is_bce():
    torch.manual_seed(0)
    obj = create_objective(
        "sl",
        build("resnet", 20000, input_len=200, fs=100),
        fs=100,
        mask_ratio=0.5,
        mask_patch_s=0.25,
    )
    x, y = torch.randn(4, 12, 200), torch.randint(0, 2, (4, 6)).float()
    expected = torch.nn.functional.binary_cross_entropy_with_logits(obj.logits(x), y)
    assert torch.isclose(obj.loss(x, y), expected)


def test_schedule_shape():
    lrs = [warmup_cosine(s, warmup=10, total=100, min_ratio=0.1) for s in range(100)]
    assert lrs[0] == pytest.approx(0.1) and lrs[9] == pytest.approx(1.0)
    assert lrs[-1] == pytest.approx(0.1, abs=1e-3) and all(
        a >= b for a, b in zip(lrs[9:], lrs[10:], strict=False)
    )


def _toy(n=160, t=200, seed=0):
    """Records whose label is whether lead II carries a 5 Hz tone."""
    rng = np.random.default_rng(seed)
    y = (rng.random((n, 6)) < 0.5).astype(np.float32)
    x = rng.normal(scale=0.3, size=(n, 12, t)).astype(np.float32)
    x[:, 1] += y[:, :1] * np.sin(2 * np.pi * 5 * np.arange(t) / 100).astype(np.float32)
    return x, y


def _train(paradigm, seed=0, **cfg):
    x, y = _toy()
    torch.manual_seed(seed)
    obj = create_objective(
        paradigm,
        build("resnet", 20000, input_len=200, fs=100),
        fs=100,
        mask_ratio=0.5,
        mask_patch_s=0.2,
    )
    spec = TrainSpec(
        **{
            "batch_size": 16,
            "max_steps": 40,
            "eval_every": 10,
            "warmup_steps": 5,
            "lr": 3e-3,
            **cfg,
        }
    )
    rows = np.arange(len(x))
    res = pretrain(
        obj,
        lambda r: x[r],
        train_rows=rows[:128],
        train_labels=y[:128],
        val_rows=rows[128:],
        val_labels=y[128:],
        cfg=spec,
        seed=seed,
    )
    return obj, res


def test_training_learns_and_is_repeatable():
    obj, res = _train("sl")
    assert res.history[-1]["train_loss"] < res.history[0]["train_loss"]
    assert res.best_val_loss == min(h["val_loss"] for h in res.history)
    _, again = _train("sl")
    assert [h["val_loss"] for h in again.history] == [h["val_loss"] for h in res.history]


@settings(max_examples=50, deadline=None)
@given(st.integers(1, 5), st.integers(1, 40), st.data())
def test_time_shift_rotates_each_record_by_its_offset(records, n, data):
    x = np.random.default_rng(records * n).normal(size=(records, 3, n)).astype(np.float32)
    offsets = st.lists(st.integers(0, n - 1), min_size=records, max_size=records)
    shifts = np.array(data.draw(offsets))
    out = time_shifted(x, shifts)
    for i, s in enumerate(shifts):
        assert np.array_equal(out[i], np.roll(x[i], -s, axis=-1))
    assert np.array_equal(time_shifted(out, (n - shifts) % n), x)  # and back


def test_loader_shifts_training_batches_only():
    x = np.arange(40 * 2 * 50, dtype=np.float32).reshape(40, 2, 50)
    rows, labels = np.arange(40), np.zeros((40, 6), np.float32)

    def loader(shift: bool) -> Loader:
        order = BatchOrder(40, 8, 3)
        return Loader(lambda r: x[r], rows, labels, order, torch.device("cpu"), shift)

    shifted, plain = loader(True), loader(False)
    try:
        for step in (1, 2, 7):
            a, b = shifted.get(step, then=None)[0].numpy(), plain.get(step, then=None)[0].numpy()
            offsets = (a[:, 0, 0] - b[:, 0, 0]).astype(int)  # how far each record's start moved
            assert np.array_equal(a, time_shifted(b, offsets)) and len(set(offsets)) > 1
            assert np.array_equal(a, loader(True).get(step, then=None)[0].numpy())  # (seed, step)
        assert np.array_equal(shifted.read(rows[:5]), x[:5])  # validation reads records as they are
    finally:
        shifted.close(), plain.close()


def test_early_stopping_restores_best():
    obj, res = _train("ssl", max_steps=400, eval_every=5, patience=1, lr=0.05)
    assert res.stopped == "early_stop" and res.steps < 400
    assert res.best_step == min(res.history, key=lambda h: h["val_loss"])["step"]


def test_divergence_is_reported():
    with pytest.raises(TrainingDiverged, match="step"):
        _train("sl", lr=1e30, grad_clip=1e30)


def test_weights_round_trip(tmp_path):
    obj, _ = _train("sl", max_steps=10)
    save_weights(obj, tmp_path / "w.safetensors")
    torch.manual_seed(5)
    other = create_objective(
        "sl",
        build("resnet", 20000, input_len=200, fs=100),
        fs=100,
        mask_ratio=0.5,
        mask_patch_s=0.2,
    )
    load_weights(other, tmp_path / "w.safetensors")
    x = torch.randn(2, 12, 200)
    obj.eval(), other.eval()
    assert torch.equal(obj.logits(x), other.logits(x))
