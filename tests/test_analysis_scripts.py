"""The measurement scripts in ``benchmarks/`` that are not speed benchmarks: what the probe
pools (``probe_pooling.py``) and the generator against PTB-XL (``generator_realism.py``)."""

from __future__ import annotations

import sqlite3

import numpy as np
import pandas as pd
import pytest
from benchmark_scripts import script

from ecgscale.data.synthetic import generate


def test_mean_pooling_reproduces_the_protocols_probe_loss(tiny_study):
    spec, out, _ = tiny_study
    with sqlite3.connect(out / "results.sqlite") as db:
        stored = pd.read_sql(
            "select run_id, loss from evals where method = 'probe' and eval_set = 'id'", db
        ).set_index("run_id")["loss"]
    run, pooled_losses = stored.index[0], script("probe_pooling").pooled_losses
    losses = pooled_losses(out, match=run)
    assert list(losses) == [run]
    assert set(losses[run]) == {"mean", "mean + std", "mean + max"}
    assert losses[run]["mean"] == pytest.approx(stored[run], rel=1e-3)
    assert all(np.isfinite(v) and v > 0 for v in losses[run].values())
    own = spec.eval.probe_records  # drawn again at the study's own size: the same probe set
    sized = pooled_losses(out, match=run, probe_records=[own // 2, own])
    assert len(sized[run]) == 6
    assert sized[run][f"mean, {own} probe records"] == pytest.approx(stored[run], rel=1e-3)
    assert sized[run][f"mean, {own // 2} probe records"] != sized[run][f"mean, {own} probe records"]


def test_participation_ratio_counts_equal_independent_shapes():
    realism = script("generator_realism")
    rng = np.random.default_rng(0)
    shapes = np.linalg.qr(rng.standard_normal((40, 3)))[0].T  # 3 orthonormal shapes
    for k in (1, 3):
        weights = rng.choice([-1.0, 1.0], size=(200, k))  # equal variance along each shape
        ratio, shares = realism.participation(weights @ shapes[:k])
        assert ratio == pytest.approx(k, rel=0.05)
        assert shares[k - 1] == pytest.approx(1.0)


def test_beats_found_give_the_generators_heart_rate():
    realism = script("generator_realism")
    signals, meta = generate("code", 40, fs=100.0, n_samples=1000, seed=3)
    sinus = ~meta["true_AF"].to_numpy(bool)
    row = realism.statistics(list(signals[sinus].astype(np.float64)), n_boot=20, seed=0)
    assert row["records"] == f"{sinus.sum()} of {sinus.sum()}"
    median_rate = float(row["heart rate (bpm)"].split()[0])
    assert median_rate == pytest.approx(meta.loc[sinus, "heart_rate"].median(), rel=0.05)
    assert 0.0 <= float(row["non-dipolar share"].split()[0]) < 0.01  # the generator is a dipole
