"""The jobs of a study: pre-training runs (pre-train, then evaluate), untrained references
(evaluate the encoder a run starts from: ``eval.untrained``) and from-scratch task models.

A run's evaluation: a frozen-encoder probe on the ID test split and every OOD set (an SL
model's own head too; optionally a fine-tuned copy of the encoder), then every unseen task at
every D_F. A from-scratch model trains a fresh encoder of the run's family and size on one
task's D_F records; the study's from-scratch curves turn task losses into effective data.
"""

from __future__ import annotations

import hashlib
import json
import time
import traceback
import warnings
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path

import pandas as pd
import torch

from ecgscale.data.store import Store
from ecgscale.evaluate.probe import PROBE_FILE, save_probe
from ecgscale.evaluate.protocol import evaluate_encoder, labels_of
from ecgscale.evaluate.roles import Roles, assign_roles
from ecgscale.evaluate.task_models import train_on_task, trained_task_row
from ecgscale.models import build, measure, shape_for
from ecgscale.numformat import run_size
from ecgscale.objectives import Objective, create_objective
from ecgscale.objectives.base import reestimate_batchnorm
from ecgscale.spec import StudySpec, TrainSpec
from ecgscale.study.code_version import training_code
from ecgscale.train import TrainingDiverged, distributed, load_weights, pretrain, save_weights
from ecgscale.train.checkpoint import clear_checkpoints
from ecgscale.train.metrics import (
    MetricsCsv,
    Sink,
    TensorBoardEvents,
    TrainLog,
    tensorboard_wanted,
)


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


UNTRAINED = "untrained"
"""The paradigm of a reference: an untrained encoder, probed (``eval.untrained``)."""


@dataclass(frozen=True)
class RunSpec:
    """The grid coordinates of one run; ``run_id`` is stable across invocations."""

    run_id: str
    family: str
    paradigm: str
    target_params: int
    data_size: int
    seed: int
    lr: float | None = None
    """The learning rate; None: the spec's one rate, or in a sweep the rate the rung's sweep
    chose (:func:`resolve_lr`, filled in before the run trains)."""

    @property
    def folder(self) -> str:
        return f"runs/{self.run_id}"

    @property
    def trains(self) -> bool:
        """Whether the run pre-trains (an untrained reference does not)."""
        return self.paradigm != UNTRAINED

    @property
    def rung(self) -> tuple[str, str, int, int]:
        """(family, paradigm, target size, seed): the runs that share a learning rate."""
        return self.family, self.paradigm, self.target_params, self.seed


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


def model_tag(spec: StudySpec, family: str, target_params: int, settings: str) -> str:
    """Short hash of ``settings`` (a fingerprint of the spec) and the shape the size ladder
    gives ``family`` at ``target_params``: a changed setting or a changed ladder rule never
    reuses a model."""
    shape = shape_for(family, target_params, input_len=spec.data.n_samples, fs=spec.data.fs)
    blob = json.dumps([settings, shape], sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:8]


def expand(spec: StudySpec) -> list[RunSpec]:
    """Every run of the grid. The id names the coordinates plus a hash of the settings that
    shape pre-training (data, training, and for SSL the ``ssl`` section) and of the model's
    shape (:func:`model_tag`). What a run is evaluated on is its ``eval_tag``; a new tag
    re-evaluates the saved model."""
    settings = {
        par: spec.fingerprint("data", "train", *(["ssl"] if par == "ssl" else []))
        for par in spec.paradigms
    }
    sweep_d = spec.lr_sweep_d
    runs = []
    for fam in spec.models.families:
        for par in spec.paradigms:
            for n in spec.models.sizes:
                tag = model_tag(spec, fam, n, settings[par])
                for d in spec.data_sizes:
                    for seed in spec.seeds:
                        stem = f"{fam}-{par}-n{run_size(n)}-d{run_size(d)}-s{seed}"
                        if sweep_d is None:
                            runs.append(RunSpec(f"{stem}-{tag}", fam, par, n, d, seed))
                        elif d == sweep_d:
                            runs += [
                                RunSpec(f"{stem}-lr{lr:g}-{tag}", fam, par, n, d, seed, lr)
                                for lr in spec.train.lrs
                            ]
                        else:
                            runs.append(RunSpec(f"{stem}-lrbest-{tag}", fam, par, n, d, seed))
    return runs


def expand_references(spec: StudySpec) -> list[RunSpec]:
    """The untrained reference of every family, size and seed when ``eval.untrained``: the
    encoder its runs start from, probed as at D = 0. The id hashes the data, the largest data
    size (its subset gives a BatchNorm encoder its statistics) and the model's shape."""
    if not spec.eval.untrained:
        return []
    settings = json.dumps([spec.fingerprint("data"), max(spec.data_sizes)])
    return [
        RunSpec(
            f"{fam}-{UNTRAINED}-n{run_size(n)}-s{seed}-{model_tag(spec, fam, n, settings)}",
            fam,
            UNTRAINED,
            n,
            0,
            seed,
        )
        for fam in spec.models.families
        for n in spec.models.sizes
        for seed in spec.seeds
    ]


def sweep_choices(spec: StudySpec, runs: pd.DataFrame) -> dict[tuple, float]:
    """The learning rate each rung (family, paradigm, target size, seed) chose in its sweep:
    the rate of its sweep run at ``lr_sweep_d`` with the lowest validation pre-training loss.
    Rungs whose sweep runs have not all finished are left out. ``runs`` holds the study's
    recorded runs (the ``runs`` table of results.sqlite)."""
    if spec.lr_sweep_d is None or runs.empty or "lr" not in runs:
        return {}
    ids = {r.run_id for r in expand(spec) if r.lr is not None}
    swept = runs[runs["run_id"].isin(ids)]
    out = {}
    for rung, part in swept.groupby(["family", "paradigm", "target_params", "seed"]):
        if len(part) < len(spec.train.lrs) or part["status"].ne("done").any():
            continue
        best = part.loc[part["pretrain_loss"].astype(float).idxmin()]
        out[(str(rung[0]), str(rung[1]), int(rung[2]), int(rung[3]))] = float(best["lr"])
    return out


def resolve_lr(run: RunSpec, choices: dict[tuple, float]) -> RunSpec:
    """``run`` with the learning rate its rung's sweep chose, or a one-line KeyError."""
    if run.lr is not None:
        return run
    key = run.rung
    if key not in choices:
        raise KeyError(
            f"run {run.run_id} trains at the learning rate its rung's sweep chooses, and that "
            "sweep has not finished"
        )
    return replace(run, lr=choices[key])


def expand_scratch(spec: StudySpec) -> list[ScratchSpec]:
    """Every from-scratch task model: task x family x size x D_F x seed, for the tasks
    :meth:`~ecgscale.spec.StudySpec.has_scratch` names. The id hashes the pre-training data, the
    task, its training and the model's shape (:func:`model_tag`)."""
    sizes = spec.transfer.sizes or spec.models.sizes
    jobs = []
    for task in (t for t in spec.tasks if spec.has_scratch(t.name)):
        for fam in spec.models.families:
            blob = {
                "data": spec.data.identity(),
                "task": task.model_dump(mode="json"),
                "train": spec.scratch_for(fam).identity(),
            }
            settings = json.dumps(blob, sort_keys=True)
            tags = {n: model_tag(spec, fam, n, settings) for n in sizes}
            jobs += [
                ScratchSpec(
                    f"{task.name}-{fam}-n{run_size(n)}-df{run_size(d)}-s{seed}-{tags[n]}",
                    task.name,
                    fam,
                    n,
                    d,
                    seed,
                )
                for n in sizes
                for d in task.scratch_ladder
                for seed in spec.seeds
            ]
    return jobs


def all_jobs(spec: StudySpec) -> list[RunSpec | ScratchSpec]:
    """Every job of the study: the grid's runs, the untrained references and the from-scratch
    task models."""
    return [*expand(spec), *expand_references(spec), *expand_scratch(spec)]


def store_dir(spec: StudySpec, study_dir: Path) -> Path:
    return Path(spec.data.store) if spec.data.store else Path(study_dir) / "store"


def tensorboard_dir(job_dir: Path) -> Path:
    """Where the TensorBoard events of the job in ``job_dir`` (``<study>/runs/<id>`` or
    ``<study>/scratch/<id>``) go: ``<study>/tensorboard/runs/<id>`` (or ``scratch/<id>``)."""
    study = Path(job_dir).parents[1]
    return study / "tensorboard" / Path(job_dir).relative_to(study)


def train_log(spec: StudySpec, job_dir: Path, flops_per_sample: int) -> TrainLog:
    """The training log of the job in ``job_dir``: its ``metrics.csv``, and TensorBoard events
    when ``monitor.tensorboard`` asks for them; process 0 alone writes them."""
    if not distributed.is_main():
        return TrainLog()
    sinks: list[Sink] = [MetricsCsv(Path(job_dir) / "metrics.csv")]
    if tensorboard_wanted(spec.monitor.tensorboard):
        sinks.append(TensorBoardEvents(tensorboard_dir(job_dir)))
    return TrainLog(sinks, flops_per_sample=flops_per_sample)


def _load_trained(objective: Objective, run_dir: Path) -> dict | None:
    """The summary of an earlier attempt that finished training (weights loaded), or None."""
    weights, train = run_dir / "model.safetensors", run_dir / "train.json"
    if not (weights.is_file() and train.is_file()):
        return None
    try:
        summary = json.loads(train.read_text()).get("summary")
        if summary is not None:
            load_weights(objective, weights)
    except Exception as err:  # a damaged file: train again (the run is seeded: same result)
        warnings.warn(f"{run_dir}: saved run unreadable, trained again ({err})", stacklevel=2)
        return None
    return summary


def execute_run(
    spec: StudySpec, run: RunSpec, store_dir: Path, run_dir: Path, hooks: Hooks | None = None
) -> Outcome:
    """Pre-train and evaluate one run (never raises): its results row, eval rows, task rows.

    A run whose weights were saved by an earlier attempt (e.g. one evaluated under other
    settings, or one whose evaluation failed) is evaluated again without training. Training
    resumes from the checkpoints in ``run_dir/checkpoints`` when an earlier attempt was
    interrupted. Evaluation runs on the training device (:func:`distributed.device`), under
    the run's precision. Under ``torchrun`` every process calls this; process 0 alone writes
    files and evaluates, the others only train. An untrained reference (paradigm
    :data:`UNTRAINED`) trains nothing: its encoder's BatchNorm statistics come from unmasked
    records of the largest pre-training subset, then it is evaluated like a run. ``wall_s``
    is the training's wall time (``train_wall_s``, kept in ``train.json``, over every attempt
    that trained) plus this attempt's; None for weights whose training time was not kept."""
    t0, trained_now = time.perf_counter(), 0.0
    row: dict = {**asdict(run), "status": "running", "error": None, "eval_tag": spec.eval_tag()}
    out = Outcome(row)
    try:
        row["lr"] = run_settings(spec, run).lr if run.trains else None
        run_dir.mkdir(parents=True, exist_ok=True)
        store = Store(store_dir)
        roles = assign_roles(spec, store.meta)
        torch.manual_seed(run.seed)
        encoder = build(run.family, run.target_params, input_len=store.n_samples, fs=store.fs)
        stats = measure(encoder, store.n_samples)
        row.update(
            n_params=stats.n_params,
            n_params_nonembed=stats.n_params_nonembedding,
            flops_per_sample=stats.flops_per_sample,
        )
        if not run.trains:
            objective = Objective(encoder.to(distributed.device()))
            reestimate_batchnorm(encoder, store.read, roles.subsets[max(roles.subsets)])
            summary = {"steps": 0, "best_step": 0, "stopped": UNTRAINED, "code": training_code()}
            summary["train_wall_s"] = 0.0
            if distributed.is_main():  # what the folder holds: a probe, no weights
                train = {"run": asdict(run), "summary": summary}
                (run_dir / "train.json").write_text(json.dumps(train, indent=1))
        else:
            objective = create_objective(
                run.paradigm, encoder, fs=store.fs, **spec.ssl.objective_kwargs()
            )
            summary = _load_trained(objective, run_dir) if distributed.world_size() == 1 else None
        if summary is None:
            log, t_train = train_log(spec, run_dir, stats.flops_per_sample), time.perf_counter()
            summary = _pretrain(spec, run, objective, store, roles, run_dir, hooks or Hooks(), log)
            trained_now = time.perf_counter() - t_train
        row.update(summary)
        if distributed.is_main():  # on the training device (saved weights load on the CPU)
            objective.to(distributed.device())
            result = evaluate_encoder(spec, objective, store, roles, run.seed)
            save_probe(run_dir / PROBE_FILE, result.probe)
            row["probe_l2"] = result.probe.probe.l2
            out.evals, out.tasks = result.evals, result.tasks
            clear_checkpoints(run_dir / "checkpoints")
        row["status"] = "done"
    except TrainingDiverged as err:
        row.update(status="failed", error=f"diverged: {err}")
    except Exception as err:  # a run's failure is recorded; the study goes on
        _record_error(run_dir, err)
        row.update(status="failed", error=f"{type(err).__name__}: {err}")
    row["wall_s"] = time.perf_counter() - t0
    if row["status"] == "done" and run.trains:  # add the training of earlier attempts
        trained = row.get("train_wall_s")  # over every attempt (one resumed from a checkpoint)
        row["wall_s"] = None if trained is None else row["wall_s"] + trained - trained_now
    row["finished_at"] = datetime.now(timezone.utc).isoformat(timespec="seconds")
    return out


def _record_error(run_dir: Path, err: Exception) -> None:
    """The traceback beside the run, where the folder can be written (the results row holds the
    error in any case: a run folder that cannot be written must not stop the study)."""
    rank = distributed.rank()
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
        (run_dir / ("error.txt" if rank == 0 else f"error.rank{rank}.txt")).write_text(
            traceback.format_exc()
        )
    except OSError:
        pass


def run_settings(spec: StudySpec, run: RunSpec) -> TrainSpec:
    """The training settings of ``run``: the spec's for its family and data size, at its
    learning rate."""
    cfg = spec.train.for_family(run.family).for_data(run.data_size)
    cfg = cfg.at_lr(run.lr) if run.lr is not None else cfg
    if len(cfg.lrs) > 1:
        raise ValueError(f"run {run.run_id} has no learning rate yet: its rung's sweep chooses it")
    return cfg


def _pretrain(
    spec: StudySpec,
    run: RunSpec,
    objective: Objective,
    store: Store,
    roles: Roles,
    run_dir: Path,
    hooks: Hooks,
    log: TrainLog,
) -> dict:
    """Pre-train on this process's device, where the model stays; process 0 saves the weights
    and ``train.json``. Returns the row's summary."""
    train_rows = roles.subsets[run.data_size]
    cfg = run_settings(spec, run)
    result = pretrain(
        objective.to(distributed.device()),
        store.read,
        train_rows=train_rows,
        train_labels=labels_of(store.meta, train_rows),
        val_rows=roles.val,
        val_labels=labels_of(store.meta, roles.val),
        cfg=cfg,
        seed=run.seed,
        checkpoint_dir=run_dir / "checkpoints",
        log=log,
        **hooks.trainer_callbacks(cfg.max_steps),
    )
    objective.settle(store.read, train_rows)
    summary = {
        "precision": result.precision,
        "steps": result.steps,
        "best_step": result.best_step,
        "stopped": result.stopped,
        "pretrain_loss": result.best_val_loss,
        "code": training_code(),
        "train_wall_s": result.wall_s,
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
    row: dict = {**asdict(job), "status": "running", "error": None, "code": training_code()}
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
        store = Store(store_dir)
        tr = assign_roles(spec, store.meta).tasks[job.task]
        torch.manual_seed(job.seed)
        encoder = build(job.family, job.target_params, input_len=store.n_samples, fs=store.fs)
        stats = measure(encoder, store.n_samples)
        row["n_params"] = stats.n_params
        cfg = spec.scratch_for(job.family).for_data(job.d_f)
        model, result = train_on_task(
            tr,
            encoder,
            store,
            job.d_f,
            cfg,
            job.seed,
            checkpoint_dir=run_dir / "checkpoints",
            callbacks=(hooks or Hooks()).trainer_callbacks(cfg.max_steps),
            log=train_log(spec, run_dir, stats.flops_per_sample),
        )
        task_row = trained_task_row(
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
    """Run one job of either kind in its folder under ``study_dir``: what trains a job, for
    ``ecgscale train`` and ``ecgscale study`` (through :func:`ecgscale.study.worker.run_job` on
    every executor), for the ``torchrun`` processes of a job of several GPUs, and for
    :mod:`ecgscale.study.torchrun`."""
    run = execute_run if isinstance(job, RunSpec) else execute_scratch
    return run(spec, job, store_dir, Path(study_dir) / job.folder, hooks)
