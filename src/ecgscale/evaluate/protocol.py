"""The evaluation protocol every pre-trained encoder goes through, the same for all.

Six labels: a frozen-encoder linear probe trained on the probe set (L2 chosen on its
validation set) and scored on the ID test set and every OOD set; an SL model's own head; and,
with ``eval.finetune``, a fine-tuned copy of the encoder. Unseen tasks: a probe (and
fine-tuning) at every D_F. Intervals come from a bootstrap over the patients of each scored
set (:func:`ecgscale.evaluate.roles.patients_of`).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import torch

from ecgscale.data.schema import LABELS
from ecgscale.data.store import Store
from ecgscale.evaluate.inference import device_of
from ecgscale.evaluate.metrics import classification_scores
from ecgscale.evaluate.probe import FeatureCache, SavedProbe, score, train_probe
from ecgscale.evaluate.roles import Roles, TaskRows, patients_of
from ecgscale.evaluate.task_models import (
    task_row,
    thresholds_for,
    train_on_task,
    train_task_model,
    trained_task_row,
)
from ecgscale.objectives import Objective
from ecgscale.spec import StudySpec


@dataclass
class Evaluation:
    """What evaluating one encoder gives: its six-label probe (with an SL head's F1
    thresholds), six-label rows and task rows."""

    probe: SavedProbe
    evals: list[dict] = field(default_factory=list)
    tasks: list[dict] = field(default_factory=list)


def labels_of(meta: pd.DataFrame, rows: np.ndarray) -> np.ndarray:
    """The six labels (n, 6) of ``rows``, -1 where not annotated."""
    return meta.loc[rows, list(LABELS)].to_numpy(dtype=np.float32)


def _eval_row(name: str, method: str, is_ood: bool, scores: dict) -> dict:
    return {
        "eval_set": name,
        "method": method,
        "is_ood": int(is_ood),
        **{k: v for k, v in scores.items() if k != "omitted"},
        "omitted": ",".join(scores["omitted"]),
    }


def evaluate_encoder(
    spec: StudySpec, objective: Objective, store: Store, roles: Roles, seed: int
) -> Evaluation:
    """The whole protocol for one pre-trained model (its ``objective`` holds the encoder and,
    for SL, the head): six-label rows on every set, then every unseen task at every D_F. The
    forward passes run on the objective's device under the run's precision (``train.precision``:
    bf16 autocast on a GPU)."""
    feats = FeatureCache(objective.encoder, store.read, precision=spec.train.precision)
    feats.add(roles.probe_train, roles.probe_val, *(r for _, _, r in roles.eval_sets()))
    probe, evals = _six_labels(spec, objective, store, roles, feats, seed)
    if roles.tasks:
        feats.add(*(tr.probed_rows for tr in roles.tasks.values()))
    tasks = [
        row
        for tr in roles.tasks.values()
        for row in _evaluate_task(spec, tr, objective, store, feats, seed)
    ]
    return Evaluation(probe, evals, tasks)


def _six_labels(
    spec: StudySpec,
    objective: Objective,
    store: Store,
    roles: Roles,
    feats: FeatureCache,
    seed: int,
) -> tuple[SavedProbe, list[dict]]:
    """Six-label evaluation on every set: the probe, an SL model's own head, and (with
    ``eval.finetune``) a fine-tuned copy of the encoder. Returns (the probe and the head's F1
    thresholds, eval rows)."""
    meta, n_boot, names = store.meta, spec.eval.n_boot, list(LABELS)
    y_val = labels_of(meta, roles.probe_val)
    probe = train_probe(
        feats(roles.probe_train),
        labels_of(meta, roles.probe_train),
        feats(roles.probe_val),
        y_val,
        spec.eval.l2_grid,
        extend=spec.eval.l2_extend,
    )

    def boot(rows: np.ndarray) -> dict:
        return {"n_boot": n_boot, "seed": seed, "groups": patients_of(meta, rows)}

    out = [
        _eval_row(
            name, "probe", is_ood, score(probe, feats(r), labels_of(meta, r), names, **boot(r))
        )
        for name, is_ood, r in roles.eval_sets()
    ]
    predictors, thresholds = {}, {}
    if objective.paradigm == "sl":
        predictors["head"] = lambda r: _head(objective, feats(r))  # noqa: E731
    if spec.eval.finetune:
        model, _ = train_task_model(
            objective.encoder,
            len(LABELS),
            False,
            store,
            roles.probe_train,
            labels_of(meta, roles.probe_train),
            roles.probe_val,
            y_val,
            spec.scratch_for(objective.encoder.family).for_data(len(roles.probe_train)),
            seed,
            copy_encoder=True,
        )
        predictors["finetune"] = lambda r: model.predict(store.read, r)  # noqa: E731
    for method, predict in predictors.items():
        thresholds[method] = thresholds_for(y_val, predict(roles.probe_val))
        for name, is_ood, r in roles.eval_sets():
            scores = classification_scores(
                predict(r), labels_of(meta, r), names, thresholds=thresholds[method], **boot(r)
            )
            out.append(_eval_row(name, method, is_ood, scores))
    return SavedProbe(probe, names, thresholds.get("head")), out


@torch.no_grad()
def _head(objective: Objective, features: np.ndarray) -> np.ndarray:
    """An SL model's own label probabilities from its pooled features (on the head's device)."""
    logits = objective.head(torch.from_numpy(features).float().to(device_of(objective.head)))
    return torch.sigmoid(logits).double().cpu().numpy()


def _evaluate_task(
    spec: StudySpec,
    tr: TaskRows,
    objective: Objective,
    store: Store,
    x: FeatureCache,
    seed: int,
) -> list[dict]:
    """One unseen task at every probed D_F: the frozen-encoder probe (and fine-tuning)."""
    task, n_boot, out = tr.task, spec.eval.n_boot, []

    def y(r: np.ndarray) -> np.ndarray:
        return tr.targets(store.meta, r)

    kind = "ridge" if task.kind == "regression" else "logistic"
    for d_f in task.d_f:
        sub = tr.subsets[d_f]
        probe = train_probe(
            x(sub), y(sub), x(tr.val), y(tr.val), spec.eval.l2_grid, kind, spec.eval.l2_extend
        )
        pred = probe.predict(x(tr.test)).reshape(len(tr.test), -1)
        out.append(
            task_row(
                tr,
                "probe",
                d_f,
                pred,
                store,
                thresholds=probe.thresholds,
                l2=probe.l2,
                n_boot=n_boot,
                seed=seed,
            )
        )
        if spec.eval.finetune:
            model, _ = train_on_task(
                tr,
                objective.encoder,
                store,
                d_f,
                spec.scratch_for(objective.encoder.family).for_data(d_f),
                seed,
                copy_encoder=True,
            )
            out.append(trained_task_row(tr, model, store, "finetune", d_f, n_boot, seed))
    return out
