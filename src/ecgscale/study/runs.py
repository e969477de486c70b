"""The jobs of a study: pre-training runs (pre-train, then evaluate) and from-scratch task models.

A run's evaluation: a frozen-encoder probe on the ID test split and every OOD set (an SL
model's own head too; optionally a fine-tuned copy of the encoder), then every unseen task at
every D_F. A from-scratch model trains a fresh encoder of the run's family and size on one
task's D_F records; the study's from-scratch curves turn task losses into effective data.
"""

from __future__ import annotations

import copy
import hashlib
import json
import time
import traceback
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from ecgscale.data.schema import LABELS
from ecgscale.data.splits import nested_subsets, patient_order
from ecgscale.data.store import Store, records_of
from ecgscale.evaluate.metrics import best_threshold, classification_scores, regression_scores
from ecgscale.evaluate.probe import FeatureCache, score, train_probe
from ecgscale.evaluate.tasks import TaskRows, task_rows
from ecgscale.models import Encoder, build, measure
from ecgscale.objectives import Objective, TaskModel, create_objective
from ecgscale.study.spec import StudySpec, TrainSpec
from ecgscale.train import (
    TrainingDiverged,
    TrainResult,
    distributed,
    load_weights,
    pretrain,
    save_weights,
)
from ecgscale.train.checkpoint import clear_checkpoints


def _ignore(*_: int) -> None:
    return None


@dataclass(frozen=True)
class Hooks:
    """What a job tells its worker as it runs: ``on_train(step)`` when training starts (from
    checkpoint step ``step``; 0: from the start), ``on_progress(step, total)`` at validations."""

    on_train: Callable[[int], None] = _ignore
    on_progress: Callable[[int, int], None] = _ignore

    def trainer_callbacks(self, total: int) -> dict[str, Callable]:
        """``pretrain``'s ``on_start`` and ``on_eval`` arguments."""
        return {
            "on_start": self.on_train,
            "on_eval": lambda entry: self.on_progress(entry["step"], total),
        }


@dataclass(frozen=True)
class RunSpec:
    """The grid coordinates of one run; ``run_id`` is stable across invocations."""

    run_id: str
    family: str
    paradigm: str
    target_params: int
    data_size: int
    seed: int

    @property
    def folder(self) -> str:
        return f"runs/{self.run_id}"


@dataclass(frozen=True)
class ScratchSpec:
    """One from-scratch task model: a fresh encoder trained on ``d_f`` records of ``task``."""

    scratch_id: str
    task: str
    family: str
    target_params: int
    d_f: int
    seed: int

    @property
    def folder(self) -> str:
        return f"scratch/{self.scratch_id}"


@dataclass
class Outcome:
    """What a job hands back: its row, and for a run its evaluations and task results."""

    row: dict
    evals: list[dict] = field(default_factory=list)
    tasks: list[dict] = field(default_factory=list)


def _short(n: int) -> str:
    for unit, div in (("M", 1_000_000), ("k", 1_000)):
        if n >= div and n % (div // 10) == 0:
            return f"{n / div:g}{unit}"
    return str(n)


def expand(spec: StudySpec) -> list[RunSpec]:
    """Every run of the grid. The id names the coordinates plus a hash of the settings that
    shape pre-training (data, training), so a changed setting never reuses a model. What a
    run is evaluated on is its ``eval_tag``; a new tag re-evaluates the saved model."""
    tag = spec.fingerprint("data", "train")
    return [
        RunSpec(f"{fam}-{par}-n{_short(n)}-d{_short(d)}-s{seed}-{tag}", fam, par, n, d, seed)
        for fam in spec.models.families
        for par in spec.paradigms
        for n in spec.models.sizes
        for d in spec.data_sizes
        for seed in spec.seeds
    ]


@dataclass
class EvalRows:
    """Global store rows that one study uses for each role."""

    subsets: dict[int, np.ndarray]
    val: np.ndarray
    probe_train: np.ndarray
    probe_val: np.ndarray
    id_test: np.ndarray
    ood: dict[str, np.ndarray]


def select_rows(spec: StudySpec, meta: pd.DataFrame) -> EvalRows:
    """Split the store into the roles of a study: D-ladder subsets, validation, probe, test, OOD."""
    site = records_of(meta, spec.data.id_site)
    train, val, test = (site[site["split"] == s] for s in ("train", "val", "test"))
    val_order = patient_order(val, "val")
    test_rows = patient_order(test, "test")[: spec.eval.test_records]
    return EvalRows(
        subsets=nested_subsets(train, spec.data_sizes, seed=spec.data.seed),
        val=np.sort(val_order[: spec.train.val_records]),
        probe_train=np.sort(patient_order(train, "probe")[: spec.eval.probe_records]),
        probe_val=np.sort(val_order[: spec.eval.probe_val_records]),
        id_test=np.sort(test_rows),
        ood={s: records_of(meta, s)["row"].to_numpy() for s in spec.data.ood_sites},
    )


def expand_scratch(spec: StudySpec) -> list[ScratchSpec]:
    """Every from-scratch task model: task x family x size x D_F x seed (none without
    ``transfer.scratch``). The id hashes the pre-training data, the task and its training."""
    if not spec.transfer.scratch:
        return []
    sizes = spec.transfer.sizes or spec.models.sizes
    jobs = []
    for task in spec.tasks:
        blob = {
            "data": spec.data.identity(),
            "task": task.model_dump(mode="json"),
            "train": spec.scratch_train.identity(),
        }
        tag = hashlib.sha256(json.dumps(blob, sort_keys=True).encode()).hexdigest()[:8]
        jobs += [
            ScratchSpec(
                f"{task.name}-{fam}-n{_short(n)}-df{_short(d)}-s{seed}-{tag}",
                task.name,
                fam,
                n,
                d,
                seed,
            )
            for fam in spec.models.families
            for n in sizes
            for d in task.d_f
            for seed in spec.seeds
        ]
    return jobs


def _labels(meta: pd.DataFrame, rows: np.ndarray) -> np.ndarray:
    return meta.loc[rows, list(LABELS)].to_numpy(dtype=np.float32)


def _eval_row(name: str, method: str, is_ood: bool, scores: dict) -> dict:
    return {
        "eval_set": name,
        "method": method,
        "is_ood": int(is_ood),
        **{k: v for k, v in scores.items() if k != "omitted"},
        "omitted": ",".join(scores["omitted"]),
    }


def _sets(rows: EvalRows) -> list[tuple[str, bool, np.ndarray]]:
    return [("id", False, rows.id_test)] + [(s, True, r) for s, r in rows.ood.items()]


def _thresholds(y: np.ndarray, p: np.ndarray) -> np.ndarray:
    """Per-label F1 thresholds chosen on a validation set (annotated rows only)."""
    return np.array(
        [best_threshold(y[y[:, j] >= 0, j], p[y[:, j] >= 0, j]) for j in range(y.shape[1])]
    )


def _evaluate(
    spec: StudySpec,
    objective: Objective,
    store: Store,
    rows: EvalRows,
    feats: FeatureCache,
    seed: int,
) -> tuple[float, list[dict]]:
    """Six-label evaluation on every set: the probe, an SL model's own head, and (with
    ``eval.finetune``) a fine-tuned copy of the encoder. Returns (probe L2, eval rows)."""
    encoder, meta, n_boot = objective.encoder, store.meta, spec.eval.n_boot
    probe = train_probe(
        feats(rows.probe_train),
        _labels(meta, rows.probe_train),
        feats(rows.probe_val),
        _labels(meta, rows.probe_val),
        spec.eval.l2_grid,
    )
    names = list(LABELS)
    out = [
        _eval_row(
            name,
            "probe",
            is_ood,
            score(probe, feats(r), _labels(meta, r), names, n_boot=n_boot, seed=seed),
        )
        for name, is_ood, r in _sets(rows)
    ]
    predictors = {}
    if objective.paradigm == "sl":
        predictors["head"] = lambda r: _head(objective, feats(r))  # noqa: E731
    if spec.eval.finetune:
        model, _ = train_task_model(
            encoder,
            len(LABELS),
            False,
            store,
            rows.probe_train,
            _labels(meta, rows.probe_train),
            rows.probe_val,
            _labels(meta, rows.probe_val),
            spec.scratch_train,
            seed,
            copy_encoder=True,
        )
        predictors["finetune"] = lambda r: model.predict(store.read, r)  # noqa: E731
    for method, predict in predictors.items():
        y_val = _labels(meta, rows.probe_val)
        thresholds = _thresholds(y_val, predict(rows.probe_val))
        for name, is_ood, r in _sets(rows):
            scores = classification_scores(
                predict(r), _labels(meta, r), names, thresholds=thresholds, n_boot=n_boot, seed=seed
            )
            out.append(_eval_row(name, method, is_ood, scores))
    return probe.l2, out


@torch.no_grad()
def _head(objective: Objective, features: np.ndarray) -> np.ndarray:
    """An SL model's own label probabilities from its pooled features."""
    logits = objective.head(torch.from_numpy(features).float())
    return torch.sigmoid(logits).double().numpy()


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
    hooks: Hooks | None = None,
) -> tuple[TaskModel, TrainResult]:
    """Train ``encoder`` (a copy of it with ``copy_encoder``) and a new linear head on a task;
    returns the model at its best validation step and the training result."""
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
        **(hooks or Hooks()).trainer_callbacks(cfg.max_steps),
    )
    return model.cpu(), result


def _task_row(
    tr: TaskRows,
    method: str,
    d_f: int,
    pred: np.ndarray,
    y: np.ndarray,
    *,
    thresholds: np.ndarray | None,
    l2: float | None,
    n_boot: int,
    seed: int,
) -> dict:
    """The result row of predictions ``pred`` on a task's test set (targets ``y``): loss and
    metric (R² or macro AUROC) with intervals; ``detail`` has MAE in target units, or the
    per-label figures."""
    if tr.task.kind == "regression":
        scores = regression_scores(pred[:, 0], y[:, 0], n_boot=n_boot, seed=seed)
        metric = "r2"
        detail = {k: v for k, v in scores.items() if k.startswith("mae")}
        detail |= {f"{k}_units": v * tr.scale for k, v in detail.items()}
    else:
        scores = classification_scores(
            pred, y, tr.task.targets, thresholds=thresholds, n_boot=n_boot, seed=seed
        )
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


def _train_task(
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


def _evaluate_tasks(
    spec: StudySpec, encoder: Encoder, store: Store, feats: FeatureCache, seed: int
) -> list[dict]:
    """Every unseen task at every D_F: the frozen-encoder probe (and fine-tuning, if asked)."""
    tasks = [task_rows(task, store.meta) for task in spec.tasks]
    if tasks:
        feats.add(*(tr.all_rows for tr in tasks))
    return [row for tr in tasks for row in _evaluate_task(spec, tr, encoder, store, feats, seed)]


def _evaluate_task(
    spec: StudySpec, tr: TaskRows, encoder: Encoder, store: Store, x: FeatureCache, seed: int
) -> list[dict]:
    task, n_boot, out = tr.task, spec.eval.n_boot, []

    def y(r: np.ndarray) -> np.ndarray:
        return tr.targets(store.meta, r)

    kind = "ridge" if task.kind == "regression" else "logistic"
    for d_f, sub in tr.subsets.items():
        probe = train_probe(x(sub), y(sub), x(tr.val), y(tr.val), spec.eval.l2_grid, kind=kind)
        pred = probe.predict(x(tr.test)).reshape(len(tr.test), -1)
        out.append(
            _task_row(
                tr,
                "probe",
                d_f,
                pred,
                y(tr.test),
                thresholds=probe.thresholds,
                l2=probe.l2,
                n_boot=n_boot,
                seed=seed,
            )
        )
        if spec.eval.finetune:
            model, _ = _train_task(
                tr, encoder, store, d_f, spec.scratch_train, seed, copy_encoder=True
            )
            out.append(_fitted_task_row(tr, model, store, "finetune", d_f, n_boot, seed))
    return out


def _fitted_task_row(
    tr: TaskRows, model: TaskModel, store: Store, method: str, d_f: int, n_boot: int, seed: int
) -> dict:
    """The task row of a trained task model, thresholds chosen on the task's val set."""
    y = lambda r: tr.targets(store.meta, r)  # noqa: E731
    thresholds = None
    if tr.task.kind != "regression":
        thresholds = _thresholds(y(tr.val), model.predict(store.read, tr.val))
    pred = model.predict(store.read, tr.test).reshape(len(tr.test), -1)
    return _task_row(
        tr, method, d_f, pred, y(tr.test), thresholds=thresholds, l2=None, n_boot=n_boot, seed=seed
    )


def _load_trained(objective: Objective, run_dir: Path) -> dict | None:
    """The summary of an earlier attempt that finished training (weights loaded), or None."""
    weights, train = run_dir / "model.safetensors", run_dir / "train.json"
    if not (weights.is_file() and train.is_file()):
        return None
    summary = json.loads(train.read_text()).get("summary")
    if summary is None:
        return None
    load_weights(objective, weights)
    return summary


def execute_run(
    spec: StudySpec, run: RunSpec, store_dir: Path, run_dir: Path, hooks: Hooks | None = None
) -> Outcome:
    """Pre-train and evaluate one run (never raises): its results row, eval rows, task rows.

    A run whose weights were saved by an earlier attempt (e.g. one evaluated under other
    settings, or one whose evaluation failed) is evaluated again without training. Training
    resumes from the checkpoints in ``run_dir/checkpoints`` when an earlier attempt was
    interrupted. Under ``torchrun`` every process calls this; process 0 alone writes files
    and evaluates, the others only train."""
    t0 = time.perf_counter()
    row: dict = {**asdict(run), "status": "running", "error": None, "eval_tag": spec.eval_tag()}
    out = Outcome(row)
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
        store = Store(store_dir)
        rows = select_rows(spec, store.meta)
        torch.manual_seed(run.seed)
        encoder = build(run.family, run.target_params, input_len=store.n_samples, fs=store.fs)
        stats = measure(encoder, store.n_samples)
        row.update(
            n_params=stats.n_params,
            n_params_nonembed=stats.n_params_nonembedding,
            flops_per_sample=stats.flops_per_sample,
        )
        objective = create_objective(
            run.paradigm,
            encoder,
            fs=store.fs,
            mask_ratio=spec.train.mask_ratio,
            mask_patch_s=spec.train.mask_patch_s,
        )
        summary = _load_trained(objective, run_dir) if distributed.world_size() == 1 else None
        if summary is None:
            summary = _pretrain(spec, run, objective, store, rows, run_dir, hooks or Hooks())
        row.update(summary)
        if distributed.is_main():
            feats = FeatureCache(encoder, store.read)
            feats.add(rows.probe_train, rows.probe_val, *(r for _, _, r in _sets(rows)))
            row["probe_l2"], out.evals = _evaluate(spec, objective, store, rows, feats, run.seed)
            out.tasks = _evaluate_tasks(spec, encoder, store, feats, run.seed)
            clear_checkpoints(run_dir / "checkpoints")
        row["status"] = "done"
    except TrainingDiverged as err:
        row.update(status="failed", error=f"diverged: {err}")
    except Exception as err:  # a run's failure is recorded; the study goes on
        _record_error(run_dir, err)
        row.update(status="failed", error=f"{type(err).__name__}: {err}")
    row["wall_s"] = time.perf_counter() - t0
    row["finished_at"] = datetime.now(timezone.utc).isoformat(timespec="seconds")
    return out


def _record_error(run_dir: Path, err: Exception) -> None:
    rank = distributed.rank()
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / ("error.txt" if rank == 0 else f"error.rank{rank}.txt")).write_text(
        traceback.format_exc()
    )


def _pretrain(
    spec: StudySpec,
    run: RunSpec,
    objective: Objective,
    store: Store,
    rows: EvalRows,
    run_dir: Path,
    hooks: Hooks,
) -> dict:
    """Pre-train; process 0 saves the weights and ``train.json``. Returns the row's summary."""
    train_rows = rows.subsets[run.data_size]
    result = pretrain(
        objective.to(distributed.device()),
        store.read,
        train_rows=train_rows,
        train_labels=_labels(store.meta, train_rows),
        val_rows=rows.val,
        val_labels=_labels(store.meta, rows.val),
        cfg=spec.train,
        seed=run.seed,
        checkpoint_dir=run_dir / "checkpoints",
        **hooks.trainer_callbacks(spec.train.max_steps),
    )
    objective.cpu()
    summary = {
        "steps": result.steps,
        "best_step": result.best_step,
        "stopped": result.stopped,
        "pretrain_loss": result.best_val_loss,
    }
    if distributed.is_main():
        save_weights(objective, run_dir / "model.safetensors")
        train = {
            "run": asdict(run),
            "summary": summary,
            "history": result.history,
            "stopped": result.stopped,
            "resumed_from": result.resumed_from,
            "processes": distributed.world_size(),
            "step_losses": result.step_losses,
        }
        (run_dir / "train.json").write_text(json.dumps(train, indent=1))
    return summary


def execute_scratch(
    spec: StudySpec, job: ScratchSpec, store_dir: Path, run_dir: Path, hooks: Hooks | None = None
) -> Outcome:
    """Train one from-scratch task model and score it on the task's test set (never raises)."""
    t0 = time.perf_counter()
    row: dict = {**asdict(job), "status": "running", "error": None}
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
        store = Store(store_dir)
        task = next(t for t in spec.tasks if t.name == job.task)
        tr = task_rows(task, store.meta)
        torch.manual_seed(job.seed)
        encoder = build(job.family, job.target_params, input_len=store.n_samples, fs=store.fs)
        row["n_params"] = sum(p.numel() for p in encoder.parameters())
        model, result = _train_task(
            tr,
            encoder,
            store,
            job.d_f,
            spec.scratch_train,
            job.seed,
            checkpoint_dir=run_dir / "checkpoints",
            hooks=hooks,
        )
        task_row = _fitted_task_row(
            tr, model, store, "scratch", job.d_f, spec.eval.n_boot, job.seed
        )
        row.update(
            {k: v for k, v in task_row.items() if k not in ("task", "method", "d_f", "l2")},
            steps=result.steps,
            best_step=result.best_step,
            stopped=result.stopped,
        )
        (run_dir / "train.json").write_text(
            json.dumps({"job": asdict(job), "history": result.history}, indent=1)
        )
        clear_checkpoints(run_dir / "checkpoints")
        row["status"] = "done"
    except TrainingDiverged as err:
        row.update(status="failed", error=f"diverged: {err}")
    except Exception as err:  # recorded; the study goes on
        _record_error(run_dir, err)
        row.update(status="failed", error=f"{type(err).__name__}: {err}")
    row["wall_s"] = time.perf_counter() - t0
    row["finished_at"] = datetime.now(timezone.utc).isoformat(timespec="seconds")
    return Outcome(row)


def execute(
    spec: StudySpec,
    job: RunSpec | ScratchSpec,
    store_dir: Path,
    study_dir: Path,
    hooks: Hooks | None = None,
) -> Outcome:
    """Run one job of either kind in its folder under ``study_dir``."""
    run = execute_run if isinstance(job, RunSpec) else execute_scratch
    return run(spec, job, store_dir, Path(study_dir) / job.folder, hooks)
