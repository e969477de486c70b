"""Frozen-encoder linear probe: the loss every model is compared by.

A multi-label logistic regression on standardised pooled features, trained to convergence
(convex, L-BFGS, deterministic) on a fixed labelled ID set, with the L2 strength chosen by
validation BCE. Its held-out BCE on ID test and on each OOD set is the loss the laws use.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from scipy.optimize import minimize
from scipy.special import expit

from ecgscale.evaluate.metrics import auroc, bce
from ecgscale.models import Encoder


@torch.no_grad()
def extract_features(encoder: Encoder, read, rows: np.ndarray, batch_size: int = 256) -> np.ndarray:
    """Pooled features (n, D) of the records at ``rows``, encoder in eval mode."""
    encoder.eval()
    out = [
        encoder.features(torch.from_numpy(read(rows[i : i + batch_size]))).float().numpy()
        for i in range(0, len(rows), batch_size)
    ]
    return np.concatenate(out).astype(np.float64)


def _objective(w: np.ndarray, x: np.ndarray, y: np.ndarray, l2: float) -> tuple[float, np.ndarray]:
    d, k = x.shape[1], y.shape[1]
    weights = w.reshape(d + 1, k)
    z = x @ weights[:-1] + weights[-1]
    # log(1 + exp(z)) - y z, summed; gradient sigmoid(z) - y
    loss = (np.logaddexp(0, z) - y * z).sum() / len(x) + 0.5 * l2 * (weights[:-1] ** 2).sum()
    g = (expit(z) - y) / len(x)
    grad = np.vstack([x.T @ g + l2 * weights[:-1], g.sum(0, keepdims=True)])
    return float(loss), grad.ravel()


def fit_logistic(x: np.ndarray, y: np.ndarray, l2: float) -> np.ndarray:
    """Weights (D + 1, K) of an L2-regularised multi-label logistic regression (bias last)."""
    w0 = np.zeros((x.shape[1] + 1) * y.shape[1])
    res = minimize(
        _objective,
        w0,
        args=(x, y, l2),
        jac=True,
        method="L-BFGS-B",
        options={"maxiter": 2000, "gtol": 1e-8},
    )
    return res.x.reshape(x.shape[1] + 1, y.shape[1])


@dataclass
class Probe:
    """A fitted probe: standardisation, weights, chosen L2 and its validation loss."""

    mean: np.ndarray
    std: np.ndarray
    weights: np.ndarray
    l2: float
    val_loss: float

    def predict(self, features: np.ndarray) -> np.ndarray:
        z = (features - self.mean) / self.std
        return expit(z @ self.weights[:-1] + self.weights[-1])


def train_probe(
    x_train: np.ndarray,
    y_train: np.ndarray,
    x_val: np.ndarray,
    y_val: np.ndarray,
    l2_grid: list[float],
) -> Probe:
    """Fit one probe per L2 value on the training set; keep the one with the lowest val BCE."""
    mean, std = x_train.mean(0), x_train.std(0) + 1e-6
    xt, xv = (x_train - mean) / std, (x_val - mean) / std
    best: Probe | None = None
    for l2 in l2_grid:
        w = fit_logistic(xt, y_train.astype(np.float64), l2)
        val = float(bce(y_val, expit(xv @ w[:-1] + w[-1])).mean())
        if best is None or val < best.val_loss:
            best = Probe(mean, std, w, l2, val)
    return best


def score(probe: Probe, features: np.ndarray, y: np.ndarray, labels: list[str]) -> dict:
    """Mean BCE, macro AUROC and per-label figures of ``probe`` on one evaluation set.

    A label is scored on the records that annotate it (``y >= 0``; -1 means the source does
    not annotate that label); a label no record annotates (``n`` 0) is left out of the means.
    """
    p = probe.predict(features)
    per_label: dict[str, dict] = {}
    for j, name in enumerate(labels):
        known = y[:, j] >= 0
        yj, pj = y[known, j], p[known, j]
        per_label[name] = {
            "bce": float(bce(yj[:, None], pj[:, None])[0]) if known.any() else float("nan"),
            "auroc": auroc(yj, pj),
            "n_pos": int(yj.sum()),
            "n": int(known.sum()),
        }
    scored = [v for v in per_label.values() if v["n"]]
    aucs = [v["auroc"] for v in scored if np.isfinite(v["auroc"])]
    return {
        "loss": float(np.mean([v["bce"] for v in scored])) if scored else float("nan"),
        "auroc": float(np.mean(aucs)) if aucs else float("nan"),
        "n": int(len(y)),
        "per_label": per_label,
    }
