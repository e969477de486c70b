"""Classification and regression metrics, with percentile-bootstrap intervals over records
(or over patients, when several records share one: a cluster bootstrap).

Every bootstrap figure is computed from row weights: all ones gives the point estimate, the
counts of one resample (rows drawn with replacement) give that resample's figure, so no
resampled copy of the data is ever built.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import numpy as np

EPS = 1e-7
_CHUNK = 1 << 22  # bootstrap weights held at once (rows x records), bounds memory on big sets


def _log_loss(y: np.ndarray, p: np.ndarray) -> np.ndarray:
    """Elementwise binary cross-entropy (natural log), probabilities clipped to [EPS, 1 - EPS]."""
    p = np.clip(p, EPS, 1 - EPS)
    return -(y * np.log(p) + (1 - y) * np.log1p(-p))


def bce(y: np.ndarray, p: np.ndarray) -> np.ndarray:
    """Binary cross-entropy per column (mean over rows), natural log."""
    return _log_loss(y, p).mean(axis=0)


def _tie_starts(s: np.ndarray) -> np.ndarray:
    """Start index of each run of equal values in the sorted, non-empty ``s``."""
    return np.flatnonzero(np.r_[True, s[1:] != s[:-1]])


def _auroc(y: np.ndarray, starts: np.ndarray, w: np.ndarray) -> np.ndarray:
    """Weighted Mann–Whitney AUROC per row of ``w`` (c, n); ``y`` (bool) sorted by score.

    ``starts`` marks the groups of tied scores (counted half). NaN where a row of weights
    leaves one class only.
    """
    pos = np.add.reduceat(w * y, starts, axis=1)
    neg = np.add.reduceat(w * ~y, starts, axis=1)
    below = np.cumsum(neg, axis=1) - neg
    with np.errstate(invalid="ignore"):
        return (pos * (below + 0.5 * neg)).sum(1) / (pos.sum(1) * neg.sum(1))


def auroc(y: np.ndarray, score: np.ndarray) -> float:
    """Area under the ROC curve (Mann–Whitney, ties counted half); NaN with one class only."""
    y, score = np.asarray(y).astype(bool), np.asarray(score, dtype=np.float64)
    if y.all() or not y.any():
        return float("nan")
    order = np.argsort(score, kind="stable")
    return float(_auroc(y[order], _tie_starts(score[order]), np.ones((1, len(y))))[0])


def _f1(y: np.ndarray, pred: np.ndarray, w: np.ndarray) -> np.ndarray:
    """Weighted binary F1 per row of ``w`` (c, n); 0 where it has no positives and predicts none."""
    tp, fp, fn = w @ (pred & y), w @ (pred & ~y), w @ (~pred & y)
    den = 2 * tp + fp + fn
    return np.divide(2 * tp, den, out=np.zeros_like(den), where=den > 0)


def f1(y: np.ndarray, pred: np.ndarray) -> float:
    """Binary F1 = 2TP / (2TP + FP + FN), 0.0 when the denominator is 0."""
    y, pred = np.asarray(y).astype(bool), np.asarray(pred).astype(bool)
    return float(_f1(y, pred, np.ones((1, len(y))))[0])


def best_threshold(y: np.ndarray, p: np.ndarray) -> float:
    """The threshold maximising F1 of predicting positive where ``p >= threshold``.

    It is one of the scores, the highest among ties in F1; 0.5 when ``y`` has no positives.
    """
    y, p = np.asarray(y).astype(bool), np.asarray(p, dtype=np.float64)
    if not y.any():
        return 0.5
    order = np.argsort(-p, kind="stable")
    ps = p[order]
    last = np.r_[_tie_starts(ps)[1:], len(ps)] - 1  # last index of each group of tied scores
    tp = np.cumsum(y[order])[last]
    # 2TP + FP + FN = TP + (predicted positive) + (positive)
    return float(ps[last[np.argmax(2 * tp / (tp + last + 1 + y.sum()))]])


def _weights(
    n: int, n_boot: int, seed: int, groups: np.ndarray | None = None
) -> Iterator[np.ndarray]:
    """Row weights in chunks: all ones (the point estimate), then ``n_boot`` resample counts.

    With ``groups`` (one label per row, e.g. the patient), whole groups are drawn with
    replacement and each row weighs its group's count (a cluster bootstrap); when every row
    is its own group this is the plain bootstrap over rows, with the same draws."""
    yield np.ones((1, n))
    inverse = None
    if groups is not None and n:
        _, inverse = np.unique(np.asarray(groups), return_inverse=True)
        if inverse.max() + 1 == n:
            inverse = None
    m = n if inverse is None else int(inverse.max()) + 1
    rng = np.random.default_rng(seed)
    step = max(1, _CHUNK // max(n, 1))
    for start in range(0, n_boot if n else 0, step):
        c = min(step, n_boot - start)
        idx = rng.integers(0, m, (c, m)) + m * np.arange(c)[:, None]
        counts = np.bincount(idx.ravel(), minlength=c * m).reshape(c, m).astype(np.float64)
        yield counts if inverse is None else counts[:, inverse]


def _bootstrap(
    n: int,
    n_boot: int,
    seed: int,
    stats: Callable[[np.ndarray], np.ndarray],
    groups: np.ndarray | None = None,
) -> np.ndarray:
    """``stats`` of each row of weights stacked: row 0 the point estimate, then the resamples."""
    return np.concatenate([stats(w) for w in _weights(n, n_boot, seed, groups)])


def _interval(values: np.ndarray, level: float) -> tuple[float, float]:
    """Percentile interval of the finite resample ``values``; NaN if under half are finite."""
    ok = values[np.isfinite(values)]
    if len(ok) == 0 or 2 * len(ok) < len(values):
        return float("nan"), float("nan")
    lo, hi = np.quantile(ok, [(1 - level) / 2, (1 + level) / 2])
    return float(lo), float(hi)


def _with_interval(name: str, values: np.ndarray, level: float) -> dict[str, float]:
    """``{name, name_lo, name_hi}`` from a column of point (row 0) and resample figures."""
    lo, hi = _interval(values[1:], level)
    return {name: float(values[0]), f"{name}_lo": lo, f"{name}_hi": hi}


def _mean_columns(a: np.ndarray) -> np.ndarray:
    """Row means of ``a`` (rows, k); NaN when k is 0."""
    return a.mean(1) if a.shape[1] else np.full(len(a), np.nan)


def classification_scores(
    p: np.ndarray,
    y: np.ndarray,
    names: list[str],
    *,
    thresholds: np.ndarray | None = None,
    n_boot: int = 200,
    seed: int = 0,
    level: float = 0.95,
    groups: np.ndarray | None = None,
) -> dict:
    """BCE, AUROC and F1 per label and macro-averaged, each with a bootstrap interval.

    ``p``, ``y`` are (n, K); ``y`` -1 means the record does not annotate that label, and a
    label is scored on the records that annotate it. F1 predicts positive at
    ``p >= thresholds`` (default 0.5). The macro loss and F1 average the labels some record
    annotates (the others are listed in ``omitted``); the macro AUROC averages the labels
    whose AUROC is finite. Intervals are percentile intervals at ``level`` over ``n_boot``
    resamples of the records (one resample shared by all labels, the macro figures averaging
    the same labels as the point estimate); a resample in which a figure is undefined is
    skipped for it, and the interval is NaN if fewer than half the resamples define it.
    ``groups`` (one label per record, e.g. its patient) resamples whole groups instead.
    """
    y = np.asarray(y)
    p = np.asarray(p, dtype=np.float64)
    n, k = y.shape
    thresholds = np.full(k, 0.5) if thresholds is None else np.asarray(thresholds, np.float64)
    labels = []  # per label: record indices sorted by score, y, per-row BCE, prediction, ties
    for j in range(k):
        rows = np.flatnonzero(y[:, j] >= 0)
        rows = rows[np.argsort(p[rows, j], kind="stable")]
        yj, pj = y[rows, j] == 1, p[rows, j]
        labels.append(
            (rows, yj, _log_loss(yj, pj), pj >= thresholds[j], _tie_starts(pj) if len(pj) else None)
        )

    def stats(w: np.ndarray) -> np.ndarray:
        out = np.full((len(w), 3, k), np.nan)
        for j, (rows, yj, loss, pred, starts) in enumerate(labels):
            if len(rows):
                wj = w[:, rows]
                tot = wj.sum(1)
                with np.errstate(invalid="ignore", divide="ignore"):
                    out[:, 0, j] = wj @ loss / tot
                out[:, 1, j] = _auroc(yj, starts, wj)
                out[:, 2, j] = np.where(tot > 0, _f1(yj, pred, wj), np.nan)
        return out

    values = _bootstrap(n, n_boot, seed, stats, groups)
    counts = [len(rows) for rows, *_ in labels]
    scored = np.array(counts) > 0
    finite_auc = np.isfinite(values[0, 1])
    per_label = {
        name: {
            **_with_interval("bce", values[:, 0, j], level),
            **_with_interval("auroc", values[:, 1, j], level),
            **_with_interval("f1", values[:, 2, j], level),
            "threshold": float(thresholds[j]),
            "n": counts[j],
            "n_pos": int(labels[j][1].sum()),
        }
        for j, name in enumerate(names)
    }
    return {
        **_with_interval("loss", _mean_columns(values[:, 0, scored]), level),
        **_with_interval("auroc", _mean_columns(values[:, 1, finite_auc]), level),
        **_with_interval("f1", _mean_columns(values[:, 2, scored]), level),
        "n": int(n),
        "omitted": [name for name, c in zip(names, counts, strict=True) if c == 0],
        "per_label": per_label,
    }


def regression_scores(
    pred: np.ndarray,
    y: np.ndarray,
    *,
    n_boot: int = 200,
    seed: int = 0,
    level: float = 0.95,
    groups: np.ndarray | None = None,
) -> dict:
    """MSE (the loss), R² and MAE of ``pred`` against ``y``, each with a bootstrap interval.

    ``pred`` and ``y`` are (n,) or (n, 1) in the same units; records whose ``y`` is NaN are
    left out, and ``n`` counts the rest. Intervals as in :func:`classification_scores`
    (``groups``: one label per record, resampled whole).
    """
    pred = np.asarray(pred, dtype=np.float64).reshape(-1)
    y = np.asarray(y, dtype=np.float64).reshape(-1)
    keep = ~np.isnan(y)
    err, yc = pred[keep] - y[keep], y[keep] - y[keep].mean()
    groups = None if groups is None else np.asarray(groups).reshape(-1)[keep]

    def stats(w: np.ndarray) -> np.ndarray:
        tot, sse = w.sum(1), w @ err**2
        with np.errstate(invalid="ignore", divide="ignore"):
            sst = w @ yc**2 - (w @ yc) ** 2 / tot
            r2 = 1 - sse / np.where(sst > 0, sst, np.nan)
            return np.stack([sse / tot, r2, w @ np.abs(err) / tot], axis=1)

    values = _bootstrap(len(err), n_boot, seed, stats, groups)
    return {
        **_with_interval("loss", values[:, 0], level),
        **_with_interval("r2", values[:, 1], level),
        **_with_interval("mae", values[:, 2], level),
        "n": int(keep.sum()),
    }
