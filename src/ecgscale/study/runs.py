"""One run of a study: its identity, and the work it does (pre-train, then probe)."""

from __future__ import annotations

import json
import time
import traceback
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from ecgscale.data.schema import LABELS
from ecgscale.data.splits import nested_subsets, patient_order
from ecgscale.data.store import Store, records_of
from ecgscale.evaluate.probe import extract_features, score, train_probe
from ecgscale.models import build, measure
from ecgscale.objectives import create_objective
from ecgscale.study.spec import StudySpec
from ecgscale.train import TrainingDiverged, distributed, pretrain, save_weights
from ecgscale.train.checkpoint import clear_checkpoints


@dataclass(frozen=True)
class RunSpec:
    """The grid coordinates of one run; ``run_id`` is stable across invocations."""

    run_id: str
    family: str
    paradigm: str
    target_params: int
    data_size: int
    seed: int


def _short(n: int) -> str:
    for unit, div in (("M", 1_000_000), ("k", 1_000)):
        if n >= div and n % (div // 10) == 0:
            return f"{n / div:g}{unit}"
    return str(n)


def expand(spec: StudySpec) -> list[RunSpec]:
    """Every run of the grid. The id names the coordinates plus a hash of the settings that
    shape a result (data, training, evaluation), so a changed setting never reuses a result."""
    tag = spec.fingerprint("data", "train", "eval")
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


def _labels(meta: pd.DataFrame, rows: np.ndarray) -> np.ndarray:
    return meta.loc[rows, list(LABELS)].to_numpy(dtype=np.float32)


def _evaluate(spec: StudySpec, encoder, store: Store, rows: EvalRows) -> tuple[float, list[dict]]:
    """Probe the frozen encoder; one result per evaluation set, ID first."""
    feats = lambda r: extract_features(encoder, store.read, r)  # noqa: E731
    meta = store.meta
    probe = train_probe(
        feats(rows.probe_train),
        _labels(meta, rows.probe_train),
        feats(rows.probe_val),
        _labels(meta, rows.probe_val),
        spec.eval.l2_grid,
    )
    sets = [("id", False, rows.id_test)] + [(s, True, r) for s, r in rows.ood.items()]
    return probe.l2, [
        {
            "eval_set": name,
            "is_ood": is_ood,
            **score(probe, feats(r), _labels(meta, r), list(LABELS)),
        }
        for name, is_ood, r in sets
    ]


def execute_run(spec: StudySpec, run: RunSpec, store_dir: Path, run_dir: Path) -> tuple[dict, list]:
    """Pre-train and evaluate one run; returns its results row and eval rows (never raises).

    Training resumes from the checkpoints in ``run_dir/checkpoints`` when an earlier attempt
    was interrupted. Under ``torchrun`` every process calls this; process 0 alone writes files
    and evaluates, the others only train."""
    t0 = time.perf_counter()
    row: dict = {**asdict(run), "status": "running", "error": None}
    evals: list[dict] = []
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
        )
        objective.cpu()
        row.update(
            steps=result.steps,
            best_step=result.best_step,
            stopped=result.stopped,
            pretrain_loss=result.best_val_loss,
        )
        if distributed.is_main():
            save_weights(objective, run_dir / "model.safetensors")
            train = {
                "run": asdict(run),
                "history": result.history,
                "stopped": result.stopped,
                "resumed_from": result.resumed_from,
                "processes": distributed.world_size(),
                "step_losses": result.step_losses,
            }
            (run_dir / "train.json").write_text(json.dumps(train, indent=1))
            row["probe_l2"], evals = _evaluate(spec, encoder, store, rows)
            clear_checkpoints(run_dir / "checkpoints")
        row["status"] = "done"
    except TrainingDiverged as err:
        row.update(status="failed", error=f"diverged: {err}")
    except Exception as err:  # a run's failure is recorded; the study goes on
        rank = distributed.rank()
        (run_dir / ("error.txt" if rank == 0 else f"error.rank{rank}.txt")).write_text(
            traceback.format_exc()
        )
        row.update(status="failed", error=f"{type(err).__name__}: {err}")
    row["wall_s"] = time.perf_counter() - t0
    row["finished_at"] = datetime.now(timezone.utc).isoformat(timespec="seconds")
    return row, evals
