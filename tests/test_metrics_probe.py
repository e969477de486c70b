"""Metrics and the linear probe."""

import json

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from scipy.special import expit
from scipy.stats import norm
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.metrics import f1_score, log_loss, roc_auc_score

from ecgscale.evaluate.metrics import (
    EPS,
    auroc,
    bce,
    best_threshold,
    classification_scores,
    f1,
    regression_scores,
)
from ecgscale.evaluate.probe import (
    SavedProbe,
    fit_logistic,
    load_probe,
    save_probe,
    score,
    train_probe,
)


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


# --- agreement with scikit-learn -------------------------------------------------------------

labelled_scores = st.lists(st.tuples(st.booleans(), st.integers(-5, 5)), min_size=2, max_size=80)


@given(labelled_scores)
@settings(max_examples=100, deadline=None)
def test_auroc_matches_sklearn(pairs):
    y = np.array([p[0] for p in pairs], dtype=int)
    s = np.array([p[1] for p in pairs], dtype=float) / 3
    assume(0 < y.sum() < len(y))
    assert np.isclose(auroc(y, s), roc_auc_score(y, s), rtol=1e-12, atol=0)


@given(st.lists(st.tuples(st.booleans(), st.booleans()), min_size=1, max_size=80))
@settings(max_examples=100, deadline=None)
def test_f1_matches_sklearn(pairs):
    y = np.array([p[0] for p in pairs], dtype=int)
    pred = np.array([p[1] for p in pairs], dtype=int)
    assert f1(y, pred) == pytest.approx(f1_score(y, pred, zero_division=0), rel=1e-12)


@given(
    st.lists(
        st.tuples(st.booleans(), st.floats(0, 1, allow_nan=False)),
        min_size=1,
        max_size=80,
    )
)
@settings(max_examples=100, deadline=None)
def test_bce_matches_log_loss(pairs):
    y = np.array([p[0] for p in pairs], dtype=float)
    p = np.array([p[1] for p in pairs])
    expected = log_loss(y, np.clip(p, EPS, 1 - EPS), labels=[0, 1])
    assert bce(y[:, None], p[:, None])[0] == pytest.approx(expected, rel=1e-9)


@given(labelled_scores)
@settings(max_examples=100, deadline=None)
def test_best_threshold_maximises_f1(pairs):
    y = np.array([p[0] for p in pairs], dtype=int)
    p = (np.array([p[1] for p in pairs], dtype=float) + 5) / 10
    t = best_threshold(y, p)
    if not y.any():
        assert t == 0.5
        return
    brute = max(f1(y, p >= c) for c in [*np.unique(p), np.inf])
    assert f1(y, p >= t) == brute and t in p


# --- probes reach known optima ---------------------------------------------------------------


def _logistic_problem(rng, n):
    x = rng.normal(size=(n, 5))
    prob = expit(x @ np.array([1.0, -0.5, 0.0, 2.0, 0.3]) - 0.7)
    return x, (rng.random(n) < prob).astype(float)[:, None], prob[:, None]


def test_probe_reaches_bayes_loss():
    rng = np.random.default_rng(2)
    x, y, _ = _logistic_problem(rng, 25000)
    xt, yt, pt = _logistic_problem(rng, 50000)
    probe = train_probe(x[:20000], y[:20000], x[20000:], y[20000:], [1e-6, 1e-3, 1.0])
    assert probe.kind == "logistic" and probe.l2 < 1.0
    res = score(probe, xt, yt, ["a"], n_boot=0)
    assert abs(res["loss"] - bce(yt, pt)[0]) < 0.005
    p_val = probe.predict(x[20000:])[:, 0]
    assert probe.thresholds.tolist() == [best_threshold(y[20000:, 0], p_val)]
    assert res["per_label"]["a"]["threshold"] == probe.thresholds[0]


@pytest.mark.parametrize("l2", [1e-6, 0.1])
def test_fit_logistic_matches_sklearn(l2):
    """sklearn minimises C sum(logloss) + |w|^2 / 2; ours mean(logloss) + l2 |w|^2 / 2."""
    x, y, _ = _logistic_problem(np.random.default_rng(3), 20000)
    w = fit_logistic(x, y, l2)
    ref = LogisticRegression(C=1 / (len(x) * l2), tol=1e-12, max_iter=10000).fit(x, y[:, 0])
    np.testing.assert_allclose(w[:-1, 0], ref.coef_[0], atol=1e-4)
    np.testing.assert_allclose(w[-1, 0], ref.intercept_[0], atol=1e-4)


def test_ridge_probe_matches_sklearn_with_few_records():
    """20 records, 256 features; ridge penalty l2 * n on the summed squares (Ridge's alpha)."""
    rng = np.random.default_rng(4)
    x = rng.normal(size=(40, 256)) * rng.uniform(0.5, 3, 256) + 1.0
    y = x[:, :3] @ np.array([0.5, -1.0, 0.2]) + rng.normal(size=40)
    y[5] = np.nan  # dropped from training
    grid = [1e-2, 1.0, 100.0]
    probe = train_probe(x[:20], y[:20, None], x[20:], y[20:], grid, kind="ridge", extend=0)
    assert probe.kind == "ridge" and probe.thresholds is None
    xs = (x - probe.mean) / probe.std
    keep = ~np.isnan(y[:20])
    val_mse = []
    for l2 in grid:
        ref = Ridge(alpha=l2 * keep.sum()).fit(xs[:20][keep], y[:20][keep])
        val_mse.append(np.mean((ref.predict(xs[20:]) - y[20:]) ** 2))
        if l2 == probe.l2:
            np.testing.assert_allclose(probe.weights[:-1], ref.coef_, atol=1e-8)
            np.testing.assert_allclose(probe.weights[-1], ref.intercept_, atol=1e-8)
            np.testing.assert_allclose(probe.predict(x[20:]), ref.predict(xs[20:]), atol=1e-8)
    assert probe.l2 == grid[int(np.argmin(val_mse))]
    assert probe.val_loss == pytest.approx(min(val_mse), rel=1e-9)
    res = score(probe, x[20:], y[20:], [], n_boot=50)
    assert res["loss"] == pytest.approx(min(val_mse), rel=1e-9) and res["n"] == 20
    assert res["loss_lo"] <= res["loss"] <= res["loss_hi"]


def test_a_probe_whose_best_l2_is_the_grids_edge_grows_the_grid() -> None:
    """50 records, 200 correlated features, a weak target (the demo's age task, where 117 of
    126 ridge probes picked the grid's top value 1.0 and some scored R² = -1.1): the choice
    moves past the edge, a decade at a time, to the best of the grown grid."""
    rng = np.random.default_rng(5)
    base = rng.normal(size=(650, 8))
    x = base @ rng.normal(size=(8, 200)) + 0.3 * rng.normal(size=(650, 200))
    y = 0.3 * base[:, 0] + rng.normal(size=650)
    grid = [1e-4, 1e-3, 1e-2, 1e-1, 1.0]
    args = (x[:50], y[:50, None], x[50:150], y[50:150], grid)
    edge = train_probe(*args, kind="ridge", extend=0)
    grown = train_probe(*args, kind="ridge")
    assert edge.l2 == 1.0 and grown.l2 in (10.0, 100.0, 1000.0) and grown.l2 < 1000.0
    assert grown.val_loss < edge.val_loss
    wide = [*grid, 10.0, 100.0, 1000.0]
    assert train_probe(*args[:4], wide, kind="ridge", extend=0).l2 == grown.l2
    test = [score(p, x[150:], y[150:], [], n_boot=0)["loss"] for p in (edge, grown)]
    assert test[1] < test[0]
    # an interior choice, or a single value, is kept as given
    assert train_probe(*args[:4], [1.0, 10.0, 1e4], kind="ridge").l2 == 10.0
    assert train_probe(*args[:4], [1e-4], kind="ridge").l2 == 1e-4


# --- bootstrap intervals ---------------------------------------------------------------------


def _scores_problem(rng, n, sep=1.0):
    y = (rng.random((n, 2)) < [0.3, 0.5]).astype(float)
    return expit(rng.normal(size=(n, 2)) + sep * (2 * y - 1)), y


def test_intervals_contain_estimate_and_shrink():
    width = {}
    for n in (300, 3000):
        rng = np.random.default_rng(5)
        p, y = _scores_problem(rng, n)
        res = classification_scores(p, y, ["a", "b"], seed=1)
        target = y[:, 0] + rng.normal(size=n)
        reg = regression_scores(y[:, 0] + 0.3 * rng.normal(size=n), target, seed=1)
        json.dumps(res), json.dumps(reg)
        for out, keys in ((res, ("loss", "auroc", "f1")), (reg, ("loss", "r2", "mae"))):
            for k in keys:
                assert out[f"{k}_lo"] <= out[k] <= out[f"{k}_hi"]
                width[n, k, out is reg] = out[f"{k}_hi"] - out[f"{k}_lo"]
        lab = res["per_label"]["a"]
        for k in ("bce", "auroc", "f1"):
            assert lab[f"{k}_lo"] <= lab[k] <= lab[f"{k}_hi"]
    for (n, k, reg), w in width.items():
        if n == 300:
            assert width[3000, k, reg] < 0.6 * w


def test_no_resamples_gives_nan_intervals():
    p, y = _scores_problem(np.random.default_rng(6), 50)
    res = classification_scores(p, y, ["a", "b"], n_boot=0)
    reg = regression_scores(p[:, 0], y[:, 0], n_boot=0)
    assert np.isfinite(res["loss"]) and np.isnan(res["loss_lo"]) and np.isnan(reg["r2_hi"])


def test_bootstrap_equals_metrics_on_resampled_copies():
    """The weighted figures equal the metrics of each resample built as a copy (same draws)."""
    n, n_boot = 60, 40
    p, y = _scores_problem(np.random.default_rng(7), n)
    p[:, 0] = np.round(p[:, 0], 1)  # ties
    y[:10, 1] = -1
    res = classification_scores(p, y, ["a", "b"], thresholds=np.array([0.4, 0.6]), n_boot=n_boot)
    idx = np.random.default_rng(0).integers(0, n, (n_boot, n))
    lab = res["per_label"]["a"]
    copies = [(y[i, 0], p[i, 0]) for i in idx]
    for key, fn in (
        ("bce", lambda yy, pp: bce(yy[:, None], pp[:, None])[0]),
        ("auroc", auroc),
        ("f1", lambda yy, pp: f1(yy, pp >= 0.4)),
    ):
        expect = np.quantile([fn(yy, pp) for yy, pp in copies], [0.025, 0.975])
        np.testing.assert_allclose([lab[f"{key}_lo"], lab[f"{key}_hi"]], expect, rtol=1e-12)


def test_auroc_interval_coverage():
    """Positives ~ N(d, 1), negatives ~ N(0, 1): population AUROC is Phi(d / sqrt 2)."""
    rng = np.random.default_rng(8)
    d, truth, hits = 1.0, norm.cdf(1.0 / np.sqrt(2)), 0
    for rep in range(100):
        y = (rng.random((200, 1)) < 0.4).astype(float)
        s = rng.normal(size=(200, 1)) + d * y
        res = classification_scores(s, y, ["a"], seed=rep)
        hits += res["auroc_lo"] <= truth <= res["auroc_hi"]
    assert 85 <= hits <= 99


def test_patient_bootstrap_resamples_whole_patients():
    """Each patient's records are copies of one another: resampling records treats them as
    independent and gives too narrow an interval; resampling patients (the cluster bootstrap)
    gives the interval of the patients alone. Unique groups reproduce the record bootstrap."""
    rng = np.random.default_rng(9)
    p, y = _scores_problem(rng, 150)
    copies = 4
    pp, yy = np.repeat(p, copies, axis=0), np.repeat(y, copies, axis=0)
    patients = np.repeat(np.arange(150), copies)
    alone = classification_scores(p, y, ["a", "b"], seed=3)
    by_record = classification_scores(pp, yy, ["a", "b"], seed=3)
    by_patient = classification_scores(pp, yy, ["a", "b"], seed=3, groups=patients)
    assert by_patient["loss"] == pytest.approx(alone["loss"])
    for k in ("loss", "auroc"):
        w_patient = by_patient[f"{k}_hi"] - by_patient[f"{k}_lo"]
        w_record = by_record[f"{k}_hi"] - by_record[f"{k}_lo"]
        assert w_patient > 1.6 * w_record  # ~sqrt(4) wider
        assert w_patient == pytest.approx(alone[f"{k}_hi"] - alone[f"{k}_lo"], rel=0.3)
    unique = classification_scores(p, y, ["a", "b"], seed=3, groups=np.arange(150))
    assert unique == alone
    reg = regression_scores(pp[:, 0], yy[:, 0], seed=3, groups=patients)
    reg_alone = regression_scores(p[:, 0], y[:, 0], seed=3)
    assert reg["loss_hi"] - reg["loss_lo"] == pytest.approx(
        reg_alone["loss_hi"] - reg_alone["loss_lo"], rel=0.3
    )


# --- masking ---------------------------------------------------------------------------------


def test_unannotated_label_is_omitted_from_macro():
    p, y = _scores_problem(np.random.default_rng(9), 200)
    p, y = np.c_[p, p[:, :1]], np.c_[y, -np.ones(200)]
    y[:50, 1] = -1
    res = classification_scores(p, y, ["a", "b", "c"], n_boot=20)
    json.dumps(res)
    assert res["omitted"] == ["c"] and res["per_label"]["c"]["n"] == 0
    assert np.isnan(res["per_label"]["c"]["bce"]) and np.isnan(res["per_label"]["c"]["auroc_lo"])
    lab = res["per_label"]
    assert res["loss"] == pytest.approx((lab["a"]["bce"] + lab["b"]["bce"]) / 2)
    assert res["auroc"] == pytest.approx((lab["a"]["auroc"] + lab["b"]["auroc"]) / 2)
    assert lab["b"]["n"] == 150 and lab["b"]["auroc"] == auroc(y[50:, 1], p[50:, 1])
    assert lab["b"]["n_pos"] == int(y[50:, 1].sum())


def test_fit_logistic_ignores_unannotated_entries():
    rng = np.random.default_rng(10)
    x, y0, _ = _logistic_problem(rng, 3000)
    y = np.c_[y0, (rng.random(3000) < expit(x[:, 1])).astype(float)]
    known = rng.random(3000) < 0.6
    y[~known, 0] = -1
    w = fit_logistic(x, y, 1e-3)
    np.testing.assert_allclose(w[:, :1], fit_logistic(x[known], y[known, :1], 1e-3), atol=1e-4)
    np.testing.assert_allclose(w[:, 1:], fit_logistic(x, y[:, 1:], 1e-3), atol=1e-4)
    garbage = np.where(y < 0, 0.7, y)  # the values of unannotated entries do not matter
    mask = np.c_[known, np.ones(3000, bool)]
    np.testing.assert_allclose(fit_logistic(x, garbage, 1e-3, mask=mask), w, atol=1e-8)


def test_probe_with_unannotated_entries_scores_annotated_rows():
    rng = np.random.default_rng(11)
    x, y0, _ = _logistic_problem(rng, 4000)
    y = np.c_[y0, y0]
    y[rng.random(4000) < 0.5, 1] = -1
    probe = train_probe(x[:3000], y[:3000], x[3000:], y[3000:], [1e-3, 1.0])
    assert np.all((probe.thresholds > 0) & (probe.thresholds < 1))
    res = score(probe, x[3000:], y[3000:], ["a", "b"], n_boot=0)
    assert res["per_label"]["b"]["n"] == int((y[3000:, 1] >= 0).sum())
    assert abs(res["per_label"]["a"]["bce"] - res["per_label"]["b"]["bce"]) < 0.03


def test_saved_probe_round_trips_and_bad_files_are_named(tmp_path):
    rng = np.random.default_rng(12)
    x, y0, _ = _logistic_problem(rng, 600)
    y = np.c_[y0, 1 - y0]
    probe = train_probe(x[:400], y[:400], x[400:], y[400:], [1e-3, 1.0])
    path = tmp_path / "probe.safetensors"
    save_probe(path, SavedProbe(probe, ["a", "b"], head_thresholds=np.array([0.3, 0.6])))
    saved = load_probe(path)
    assert saved.labels == ["a", "b"] and saved.probe.kind == "logistic"
    assert (saved.probe.l2, saved.probe.val_loss) == (probe.l2, probe.val_loss)
    np.testing.assert_array_equal(saved.probe.predict(x), probe.predict(x))
    np.testing.assert_array_equal(saved.probe.thresholds, probe.thresholds)
    np.testing.assert_array_equal(saved.head_thresholds, [0.3, 0.6])
    save_probe(path, SavedProbe(probe, ["a", "b"]))
    assert load_probe(path).head_thresholds is None
    path.write_bytes(path.read_bytes()[:-8])
    with pytest.raises(ValueError, match=r"probe.safetensors: unreadable probe file \(.*"):
        load_probe(path)
    ridge = train_probe(x[:400], y0[:400], x[400:], y0[400:], [1.0], kind="ridge")
    with pytest.raises(ValueError, match="only a logistic probe"):
        save_probe(path, SavedProbe(ridge, ["a"]))
