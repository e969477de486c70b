"""Objectives and the training loop, on tiny models and data."""

import numpy as np
import pytest
import torch

from ecgscale.models import build
from ecgscale.objectives import MaskedReconstruction, create_objective
from ecgscale.study.spec import TrainSpec
from ecgscale.train import TrainingDiverged, load_weights, pretrain, save_weights, warmup_cosine


@pytest.mark.parametrize("family", ["resnet", "transformer"])
def test_masked_loss_ignores_visible_samples(family):
    torch.manual_seed(0)
    obj = create_objective(
        "ssl", build(family, 20000, input_len=200, fs=100), fs=100, mask_ratio=0.5, mask_patch_s=0.2
    )
    assert isinstance(obj, MaskedReconstruction) and obj.patch == 20
    x = torch.randn(3, 12, 200)
    mask = obj.sample_mask(x, torch.Generator().manual_seed(1))
    assert mask.shape == x.shape and 0.2 < mask.float().mean() < 0.8
    # a mask is constant within each patch of each lead
    m = mask.view(3, 12, 10, 20)
    assert (m == m[..., :1]).all()
    # changing visible samples' targets does not change the loss given the same input
    recon = obj.reconstruct(x.masked_fill(mask, 0.0))
    assert recon.shape == x.shape
    loss = ((recon - x).square() * mask).sum() / mask.sum()
    got = obj.loss(x, None, generator=torch.Generator().manual_seed(1))
    assert torch.isclose(loss, got)


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
