"""Frozen-encoder linear probes: the loss every model is compared by.

A probe is fitted on standardised pooled features of a fixed labelled ID set, to convergence
(convex, deterministic), with the L2 strength chosen on a validation set. The ``logistic``
probe is a multi-label logistic regression (L-BFGS) chosen by validation BCE, with per-label
F1 thresholds chosen on the same validation set; the ``ridge`` probe is a closed-form ridge
regression of one continuous target chosen by validation MSE. Its held-out loss on ID test
and on each OOD set is the loss the laws use.

A run's six-label probe is kept beside its weights (:func:`save_probe`, ``probe.safetensors``)
so that an exported encoder can give label probabilities (``ecgscale predict``).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from safetensors import SafetensorError, safe_open
from safetensors.numpy import save_file
from scipy.optimize import minimize
from scipy.special import expit

from ecgscale.evaluate.inference import ReadFn, batch_size_for, batches, device_of, pooled
from ecgscale.evaluate.metrics import best_threshold, classification_scores, regression_scores
from ecgscale.models import Encoder


def extract_features(
    encoder: Encoder,
    read: ReadFn,
    rows: np.ndarray,
    batch_size: int | None = None,
    *,
    precision: str = "fp32",
) -> np.ndarray:
    """Pooled features (n, D) of the records at ``rows``, encoder in eval mode on its own device
    (bf16 autocast on a GPU under ``precision`` bf16; see :mod:`ecgscale.evaluate.inference`),
    ``batch_size`` records at a time (default: chosen from the device)."""
    encoder.eval()
    if batch_size is None:
        batch_size = batch_size_for(encoder, read(rows[:1]).shape[-1], precision)
    while (out := _features_or_none(encoder, read, rows, batch_size, precision)) is None:
        batch_size //= 2  # the GPU ran out of memory (runs sharing it): smaller batches
        torch.cuda.empty_cache()
    return out


def _features_or_none(
    encoder: Encoder, read: ReadFn, rows: np.ndarray, batch_size: int, precision: str
) -> np.ndarray | None:
    """:func:`extract_features` at ``batch_size``; None if a GPU batch ran out of memory."""
    device = device_of(encoder)
    try:
        out = [pooled(encoder, x, precision) for x in batches(read, rows, batch_size, device)]
    except torch.cuda.OutOfMemoryError:
        if batch_size == 1:
            raise
        return None
    return np.concatenate(out).astype(np.float64)


class FeatureCache:
    """Pooled features of store rows, each computed once: a run's evaluation sets, probe sets
    and task sets overlap, and the encoder's forward pass is most of an evaluation's cost.
    Computed by :func:`extract_features` on the encoder's device under ``precision``."""

    def __init__(
        self,
        encoder: Encoder,
        read: ReadFn,
        *,
        precision: str = "fp32",
        batch_size: int | None = None,
    ) -> None:
        self.encoder, self.read = encoder, read
        self.precision, self.batch_size = precision, batch_size
        self.rows = np.empty(0, dtype=np.int64)
        self.values = np.empty((0, encoder.dim))

    def add(self, *row_sets: np.ndarray) -> None:
        """Compute the features of every row of ``row_sets`` not cached yet, in one pass."""
        new = np.setdiff1d(np.concatenate([np.asarray(r, np.int64) for r in row_sets]), self.rows)
        if len(new):
            values = extract_features(
                self.encoder, self.read, new, self.batch_size, precision=self.precision
            )
            rows = np.concatenate([self.rows, new])
            order = np.argsort(rows)
            self.rows, self.values = rows[order], np.concatenate([self.values, values])[order]

    def __call__(self, rows: np.ndarray) -> np.ndarray:
        """Features (n, D) of ``rows``, in their order."""
        self.add(rows)
        return self.values[np.searchsorted(self.rows, rows)]


def _objective(
    w: np.ndarray, x: np.ndarray, y: np.ndarray, m: np.ndarray, l2: float
) -> tuple[float, np.ndarray]:
    d, k = x.shape[1], y.shape[1]
    weights = w.reshape(d + 1, k)
    z = x @ weights[:-1] + weights[-1]
    # m-weighted log(1 + exp(z)) - y z, summed; gradient m (sigmoid(z) - y)
    loss = (m * (np.logaddexp(0, z) - y * z)).sum() + 0.5 * l2 * (weights[:-1] ** 2).sum()
    g = m * (expit(z) - y)
    grad = np.vstack([x.T @ g + l2 * weights[:-1], g.sum(0, keepdims=True)])
    return float(loss), grad.ravel()


def fit_logistic(
    x: np.ndarray, y: np.ndarray, l2: float, mask: np.ndarray | None = None
) -> np.ndarray:
    """Weights (D + 1, K) of an L2-regularised multi-label logistic regression (bias last).

    Minimises, summed over labels k, the mean BCE over the n_k rows annotating k plus
    ``0.5 * l2 * |w_k|^2`` (bias unpenalised): each label is fitted as on its annotated rows
    alone. ``mask`` (n, K) marks the annotated entries (default ``y >= 0``); the others
    contribute nothing, and a label with none keeps zero weights.
    """
    mask = y >= 0 if mask is None else np.asarray(mask, dtype=bool)
    m = mask / np.maximum(mask.sum(0), 1)
    yk = np.where(mask, y, 0).astype(np.float64)
    w0 = np.zeros((x.shape[1] + 1) * y.shape[1])
    res = minimize(
        _objective,
        w0,
        args=(x, yk, m, l2),
        jac=True,
        method="L-BFGS-B",
        options={"maxiter": 2000, "gtol": 1e-8},
    )
    return res.x.reshape(x.shape[1] + 1, y.shape[1])


def _fit_ridge(x: np.ndarray, y: np.ndarray, l2_grid: list[float]) -> list[np.ndarray]:
    """Weights (D + 1,) (bias last) of a ridge regression for each L2, by one SVD.

    Minimises ``mean((y - x w - b)^2) / 2 + 0.5 * l2 * |w|^2``, i.e. a penalty ``l2 * n`` on
    the summed squares (scikit-learn's ``Ridge(alpha=l2 * n)``); l2 0 gives the minimum-norm
    least-squares fit.
    """
    xm, ym = x.mean(0), y.mean()
    u, s, vt = np.linalg.svd(x - xm, full_matrices=False)
    uty = u.T @ (y - ym)
    s = s[s > s.max(initial=0.0) * 1e-12]
    fits = []
    for l2 in l2_grid:
        w = vt[: len(s)].T @ (s / (s**2 + l2 * len(y)) * uty[: len(s)])
        fits.append(np.r_[w, ym - xm @ w])
    return fits


@dataclass
class Probe:
    """A fitted probe: standardisation, weights, chosen L2, val loss, kind, F1 thresholds."""

    mean: np.ndarray
    std: np.ndarray
    weights: np.ndarray
    l2: float
    val_loss: float
    kind: str
    thresholds: np.ndarray | None

    def predict(self, features: np.ndarray) -> np.ndarray:
        """Probabilities (n, K) (logistic) or predictions (n,) in the training y's units (ridge)."""
        z = (features - self.mean) / self.std @ self.weights[:-1] + self.weights[-1]
        return expit(z) if self.kind == "logistic" else z


PROBE_FILE = "probe.safetensors"
"""The file of a run's six-label probe, in its run folder (``runs/<run_id>/``)."""


@dataclass
class SavedProbe:
    """What a ``probe.safetensors`` holds: a logistic probe, the names of its labels, and the
    F1 thresholds of an SL model's own head (None for SSL)."""

    probe: Probe
    labels: list[str]
    head_thresholds: np.ndarray | None = None


def save_probe(path: Path | str, saved: SavedProbe) -> None:
    """Write ``saved`` as safetensors: float64 ``mean``, ``std`` (D,), ``weights`` (D + 1, K;
    bias last), ``thresholds`` (K,) and ``head_thresholds`` (K,) when given; ``kind``, ``l2``,
    ``val_loss`` and ``labels`` in its metadata."""
    probe = saved.probe
    if probe.kind != "logistic" or probe.thresholds is None:
        raise ValueError(f"{path}: only a logistic probe with thresholds is saved")
    tensors = {
        "mean": probe.mean,
        "std": probe.std,
        "weights": probe.weights,
        "thresholds": probe.thresholds,
    }
    if saved.head_thresholds is not None:
        tensors["head_thresholds"] = saved.head_thresholds
    metadata = {
        "format": "ecgscale-probe",
        "kind": probe.kind,
        "l2": repr(probe.l2),
        "val_loss": repr(probe.val_loss),
        "labels": json.dumps(saved.labels),
    }
    arrays = {k: np.ascontiguousarray(v, dtype=np.float64) for k, v in tensors.items()}
    save_file(arrays, str(path), metadata=metadata)


def load_probe(path: Path | str) -> SavedProbe:
    """The probe :func:`save_probe` wrote to ``path``; ValueError naming it if it cannot be."""
    try:
        with safe_open(str(path), framework="numpy") as file:
            meta = file.metadata() or {}
            arrays = {k: file.get_tensor(k) for k in file.keys()}  # noqa: SIM118 (not a dict)
    except (SafetensorError, OSError) as error:
        raise ValueError(f"{path}: unreadable probe file ({error})") from error
    missing = {"mean", "std", "weights", "thresholds"} - arrays.keys()
    if meta.get("format") != "ecgscale-probe" or missing:
        raise ValueError(f"{path}: not an ecgscale probe file")
    labels = json.loads(meta["labels"])
    d, k = len(arrays["mean"]), len(labels)
    if arrays["weights"].shape != (d + 1, k) or arrays["thresholds"].shape != (k,):
        raise ValueError(f"{path}: weights {arrays['weights'].shape} do not fit {k} labels")
    probe = Probe(
        arrays["mean"],
        arrays["std"],
        arrays["weights"],
        float(meta["l2"]),
        float(meta["val_loss"]),
        meta["kind"],
        arrays["thresholds"],
    )
    return SavedProbe(probe, labels, arrays.get("head_thresholds"))


L2_EXTEND = 3
"""Decades the L2 grid grows past an edge that validation picks (``eval.l2_extend``)."""


def _l2_losses(
    xt: np.ndarray, y_train: np.ndarray, xv: np.ndarray, y_val: np.ndarray, kind: str
) -> Callable[[list[float]], tuple[list[np.ndarray], list[float]]]:
    """A function from L2 values to the probes fitted with them and their validation losses."""
    if kind == "ridge":
        yt, yv = y_train.reshape(-1), y_val.reshape(-1)
        kt, kv = ~np.isnan(yt), ~np.isnan(yv)

        def ridge(grid: list[float]) -> tuple[list[np.ndarray], list[float]]:
            fits = _fit_ridge(xt[kt], yt[kt], grid)
            return fits, [float(np.mean((xv[kv] @ w[:-1] + w[-1] - yv[kv]) ** 2)) for w in fits]

        return ridge
    if kind == "logistic":
        names = [str(j) for j in range(y_train.shape[1])]

        def logistic(grid: list[float]) -> tuple[list[np.ndarray], list[float]]:
            fits = [fit_logistic(xt, y_train, l2) for l2 in grid]
            return fits, [
                classification_scores(expit(xv @ w[:-1] + w[-1]), y_val, names, n_boot=0)["loss"]
                for w in fits
            ]

        return logistic
    raise ValueError(f"unknown probe kind {kind!r}; expected 'logistic' or 'ridge'")


def train_probe(
    x_train: np.ndarray,
    y_train: np.ndarray,
    x_val: np.ndarray,
    y_val: np.ndarray,
    l2_grid: list[float],
    kind: str = "logistic",
    extend: int = L2_EXTEND,
) -> Probe:
    """Fit one probe per L2 value on the training set; keep the one with the lowest val loss.

    ``logistic``: y (n, K) with -1 for unannotated entries, loss the macro BCE over labels on
    annotated entries, thresholds per label by :func:`best_threshold` on the annotated
    validation rows. ``ridge``: y (n,) or (n, 1) with NaN rows dropped, loss the MSE, fitted
    as in :func:`_fit_ridge` (the same L2 meaning as :func:`fit_logistic`).

    A grid of two or more values whose largest (or smallest positive) value fits best is not
    a choice but a boundary: it grows a decade past that edge, up to ``extend`` times, while
    the new edge still fits best (a probe on 50 records with hundreds of features needs more
    shrinkage than a grid made for 2,000 may offer).
    """
    mean, std = x_train.mean(0), x_train.std(0) + 1e-6
    xt, xv = (x_train - mean) / std, (x_val - mean) / std
    fit_grid = _l2_losses(xt, y_train, xv, y_val, kind)
    grid = [float(v) for v in l2_grid]
    fits, losses = fit_grid(grid)
    for _ in range(extend if len(set(grid)) > 1 else 0):
        best = grid[int(np.argmin(np.nan_to_num(losses, nan=np.inf)))]
        if best == max(grid):
            step = [best * 10]
        elif best == min(grid) and best > 0:
            step = [best / 10]
        else:
            break
        more_fits, more_losses = fit_grid(step)
        grid, fits, losses = grid + step, fits + more_fits, losses + more_losses
    i = int(np.argmin(np.nan_to_num(losses, nan=np.inf)))
    thresholds = None
    if kind == "logistic":
        p, known = expit(xv @ fits[i][:-1] + fits[i][-1]), y_val >= 0
        thresholds = np.array(
            [best_threshold(y_val[known[:, j], j], p[known[:, j], j]) for j in range(p.shape[1])]
        )
    return Probe(mean, std, fits[i], grid[i], losses[i], kind, thresholds)


def score(
    probe: Probe,
    features: np.ndarray,
    y: np.ndarray,
    names: list[str],
    *,
    n_boot: int = 200,
    seed: int = 0,
    groups: np.ndarray | None = None,
) -> dict:
    """Scores of ``probe`` on one evaluation set, with bootstrap intervals (over ``groups``,
    e.g. patients, when given).

    Logistic: :func:`~ecgscale.evaluate.metrics.classification_scores` at the probe's
    thresholds (y -1 unannotated). Ridge: :func:`~ecgscale.evaluate.metrics.regression_scores`
    (``names`` unused).
    """
    boot = {"n_boot": n_boot, "seed": seed, "groups": groups}
    if probe.kind == "ridge":
        return regression_scores(probe.predict(features), y, **boot)
    return classification_scores(
        probe.predict(features), y, names, thresholds=probe.thresholds, **boot
    )
