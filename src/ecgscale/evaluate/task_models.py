"""Trained task models: an encoder with a new linear head trained on a task's labelled records
(fine-tuning a pre-trained encoder, or a fresh one from scratch), and their result rows."""

from __future__ import annotations

import copy
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from ecgscale.data.store import Store
from ecgscale.evaluate.metrics import best_threshold, classification_scores, regression_scores
from ecgscale.evaluate.roles import TaskRows, patients_of
from ecgscale.models import Encoder
from ecgscale.objectives import TaskModel
from ecgscale.spec import TrainSpec
from ecgscale.train import TrainResult, distributed, pretrain
from ecgscale.train.metrics import TrainLog


def thresholds_for(y: np.ndarray, p: np.ndarray) -> np.ndarray:
    """Per-label F1 thresholds chosen on a validation set (annotated rows only)."""
    return np.array(
        [best_threshold(y[y[:, j] >= 0, j], p[y[:, j] >= 0, j]) for j in range(y.shape[1])]
    )


def train_task_model(
    encoder: Encoder,
    n_outputs: int,
    regression: bool,
    store: Store,
    train_rows: np.ndarray,
    y_train: np.ndarray,
    val_rows: np.ndarray,
    y_val: np.ndarray,
    cfg: TrainSpec,
    seed: int,
    *,
    copy_encoder: bool = False,
    checkpoint_dir: Path | None = None,
    callbacks: dict[str, Callable] | None = None,
    log: TrainLog | None = None,
) -> tuple[TaskModel, TrainResult]:
    """Train ``encoder`` (a copy of it with ``copy_encoder``) and a new linear head on a task;
    returns the model at its best validation step, on the training device (its predictions run
    there too), and the training result. ``callbacks`` are :func:`~ecgscale.train.pretrain`'s
    ``on_start`` and ``on_eval``, ``log`` its metrics."""
    if copy_encoder:
        encoder = copy.deepcopy(encoder)
    torch.manual_seed(seed)
    model = TaskModel(encoder, n_outputs, regression=regression)
    result = pretrain(
        model.to(distributed.device()),
        store.read,
        train_rows=train_rows,
        train_labels=y_train,
        val_rows=val_rows,
        val_labels=y_val,
        cfg=cfg,
        seed=seed,
        checkpoint_dir=checkpoint_dir,
        log=log,
        **(callbacks or {}),
    )
    return model, result


def train_on_task(
    tr: TaskRows,
    encoder: Encoder,
    store: Store,
    d_f: int,
    cfg: TrainSpec,
    seed: int,
    **kw: object,
) -> tuple[TaskModel, TrainResult]:
    """:func:`train_task_model` on a task's D_F subset, stopped on its validation set."""
    sub, meta = tr.subsets[d_f], store.meta
    return train_task_model(
        encoder,
        len(tr.task.targets),
        tr.task.kind == "regression",
        store,
        sub,
        tr.targets(meta, sub),
        tr.val,
        tr.targets(meta, tr.val),
        cfg,
        seed,
        **kw,
    )


def task_row(
    tr: TaskRows,
    method: str,
    d_f: int,
    pred: np.ndarray,
    store: Store,
    *,
    thresholds: np.ndarray | None,
    l2: float | None,
    n_boot: int,
    seed: int,
) -> dict:
    """The result row of predictions ``pred`` on a task's test set: loss and metric (R² or
    macro AUROC) with intervals over the test set's patients; ``detail`` has MAE in target
    units, or the per-label figures."""
    y = tr.targets(store.meta, tr.test)
    boot = {"n_boot": n_boot, "seed": seed, "groups": patients_of(store.meta, tr.test)}
    if tr.task.kind == "regression":
        scores = regression_scores(pred[:, 0], y[:, 0], **boot)
        metric = "r2"
        detail = {k: v for k, v in scores.items() if k.startswith("mae")}
        detail |= {f"{k}_units": v * tr.scale for k, v in detail.items()}
    else:
        scores = classification_scores(pred, y, tr.task.targets, thresholds=thresholds, **boot)
        metric, detail = "auroc", scores["per_label"]
    return {
        "task": tr.task.name,
        "method": method,
        "d_f": int(d_f),
        "kind": tr.task.kind,
        "n": int(scores["n"]),
        "loss": scores["loss"],
        "loss_lo": scores["loss_lo"],
        "loss_hi": scores["loss_hi"],
        "metric_name": metric,
        "metric": scores[metric],
        "metric_lo": scores[f"{metric}_lo"],
        "metric_hi": scores[f"{metric}_hi"],
        "l2": l2,
        "detail": detail,
    }


def trained_task_row(
    tr: TaskRows, model: TaskModel, store: Store, method: str, d_f: int, n_boot: int, seed: int
) -> dict:
    """The task row of a trained task model, thresholds chosen on the task's val set."""
    thresholds = None
    if tr.task.kind != "regression":
        y_val = tr.targets(store.meta, tr.val)
        thresholds = thresholds_for(y_val, model.predict(store.read, tr.val))
    pred = model.predict(store.read, tr.test).reshape(len(tr.test), -1)
    return task_row(
        tr, method, d_f, pred, store, thresholds=thresholds, l2=None, n_boot=n_boot, seed=seed
    )
