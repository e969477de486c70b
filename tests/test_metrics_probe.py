"""Metrics and the linear probe."""

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.special import expit

from ecgscale.evaluate.metrics import auroc, bce
from ecgscale.evaluate.probe import fit_logistic, score, train_probe


def _auroc_pairs(y, s):
    pos, neg = s[y == 1], s[y == 0]
    diff = pos[:, None] - neg[None, :]
    return ((diff > 0) + 0.5 * (diff == 0)).mean()


@given(st.lists(st.tuples(st.booleans(), st.integers(-5, 5)), min_size=2, max_size=60))
@settings(max_examples=100, deadline=None)
def test_auroc_matches_pair_count(pairs):
    y = np.array([p[0] for p in pairs], dtype=int)
    s = np.array([p[1] for p in pairs], dtype=float)
    if y.min() == y.max():
        assert np.isnan(auroc(y, s))
    else:
        assert np.isclose(auroc(y, s), _auroc_pairs(y, s))


def test_bce_known_values():
    y = np.array([[1.0], [0.0]])
    np.testing.assert_allclose(bce(y, np.array([[0.5], [0.5]])), [np.log(2)])
    np.testing.assert_allclose(bce(y, np.array([[0.9], [0.2]])), [-(np.log(0.9) + np.log(0.8)) / 2])


def test_logistic_reaches_known_optimum():
    """With one constant feature column and no L2, the optimum predicts the label mean."""
    rng = np.random.default_rng(0)
    x = np.zeros((400, 1))
    y = (rng.random((400, 2)) < [0.2, 0.7]).astype(float)
    w = fit_logistic(x, y, l2=0.0)
    np.testing.assert_allclose(expit(w[-1]), y.mean(0), atol=1e-6)


def test_logistic_recovers_weights_and_probe_scores():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(20000, 3))
    true = np.array([[1.5, -1.0], [0.0, 2.0], [-0.5, 0.0]])
    y = (rng.random((20000, 2)) < expit(x @ true + [-1.0, 0.5])).astype(float)
    w = fit_logistic(x, y, l2=0.0)
    np.testing.assert_allclose(w[:-1], true, atol=0.08)
    probe = train_probe(x[:15000], y[:15000], x[15000:], y[15000:], [1e-3, 1.0, 100.0])
    assert probe.l2 < 100.0
    res = score(probe, x[15000:], y[15000:], ["a", "b"])
    best = bce(y[15000:], expit(x[15000:] @ true + [-1.0, 0.5])).mean()
    assert abs(res["loss"] - best) < 0.01
    assert res["per_label"]["a"]["auroc"] > 0.75 and res["n"] == 5000
