"""Binary classification metrics, computed per label."""

from __future__ import annotations

import numpy as np
from scipy.stats import rankdata

EPS = 1e-7


def bce(y: np.ndarray, p: np.ndarray) -> np.ndarray:
    """Binary cross-entropy per column (mean over rows), natural log."""
    p = np.clip(p, EPS, 1 - EPS)
    return -(y * np.log(p) + (1 - y) * np.log1p(-p)).mean(axis=0)


def auroc(y: np.ndarray, score: np.ndarray) -> float:
    """Area under the ROC curve (Mann–Whitney, ties counted half); NaN with one class only."""
    y = np.asarray(y).astype(bool)
    n_pos, n_neg = int(y.sum()), int((~y).sum())
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    ranks = rankdata(score)
    return float((ranks[y].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))
