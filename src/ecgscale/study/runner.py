"""A study from spec to report, stage by stage; each stage reads the last one's files.

Study folder::

    spec.yaml          the resolved spec (what fit and report read)
    store/             the record store (unless data.store points elsewhere)
    runs/<run_id>/     weights (safetensors), training history, error trace of a failed run
    results.sqlite     one row per run, one per (run, evaluation set)
    fits.json          fitted laws and the slices that could not be fitted
    report.html        the report; figures/ holds its PNGs
"""

from __future__ import annotations

import json
import platform
from dataclasses import dataclass
from pathlib import Path

from tqdm.auto import tqdm

from ecgscale.data.ingest import SplitRule, ingest
from ecgscale.data.schema import LABELS
from ecgscale.data.store import Store, StoreError, records_of
from ecgscale.study.analysis import fit_study
from ecgscale.study.executors import run_local
from ecgscale.study.results import Results
from ecgscale.study.runs import expand
from ecgscale.study.spec import DataSpec, StudySpec, load_spec


@dataclass
class TrainSummary:
    total: int
    skipped: int
    done: int
    failed: int


def store_dir(spec: StudySpec, study_dir: Path) -> Path:
    return Path(spec.data.store) if spec.data.store else Path(study_dir) / "store"


def prepare_data(spec: StudySpec, study_dir: Path, *, progress: bool = True) -> Store:
    """Build (or reuse) the study's store and write the resolved spec beside it."""
    study_dir = Path(study_dir)
    study_dir.mkdir(parents=True, exist_ok=True)
    (study_dir / "spec.yaml").write_text(spec.to_yaml())
    root = store_dir(spec, study_dir)
    if spec.data.source == "synthetic":
        ingest_synthetic(spec.data, root, progress=progress)
    store = Store(root)
    check_store(spec, store)
    return store


def ingest_synthetic(data: DataSpec, root: Path, *, progress: bool = True) -> None:
    """Generate the synthetic sites of ``data`` into the store at ``root`` (kept if there)."""
    sites = {data.id_site: data.n_records} | {s: data.n_ood_records for s in data.ood_sites}
    ingest(
        "synthetic",
        "",
        root,
        name="synthetic",
        options={"sites": sites, "fs": data.fs, "n_samples": data.n_samples, "seed": data.seed},
        fs=data.fs,
        n_samples=data.n_samples,
        split=SplitRule(val=data.val_fraction, test=data.test_fraction, seed=data.seed),
        max_reject=0.0,
        progress=progress,
    )


def check_store(spec: StudySpec, store: Store) -> None:
    """The store has the study's form, its ID records are fully labelled and split, and
    every OOD set exists."""
    data = spec.data
    if (store.fs, store.n_samples) != (data.fs, data.n_samples):
        raise StoreError(
            f"{store.root}: records are {store.fs:g} Hz x {store.n_samples} samples but the spec "
            f"asks for data.fs={data.fs:g}, data.n_samples={data.n_samples}"
        )
    known = sorted(set(store.meta["source"]) | set(store.meta["site"]))
    for name in [data.id_site, *data.ood_sites]:
        if records_of(store.meta, name).empty:
            raise StoreError(
                f"{store.root}: no source or site named {name!r} (has: {', '.join(known)})"
            )
    id_meta = records_of(store.meta, data.id_site)
    unlabelled = [label for label in LABELS if (id_meta[label] < 0).any()]
    if unlabelled:
        raise StoreError(
            f"{data.id_site}: pre-training records must annotate all six labels; "
            f"{', '.join(unlabelled)} missing"
        )
    for split in ("train", "val", "test"):
        if not (id_meta["split"] == split).any():
            raise StoreError(f"{data.id_site}: no records in the {split} split")


def train_runs(
    spec: StudySpec,
    study_dir: Path,
    *,
    progress: bool = True,
    retry_failed: bool = False,
    only: list[str] | None = None,
) -> TrainSummary:
    """Train and evaluate every run not yet recorded (or failed, with ``retry_failed``)."""
    study_dir = Path(study_dir)
    results = Results(study_dir / "results.sqlite")
    runs = expand(spec)
    if only is not None:
        unknown = sorted(set(only) - {r.run_id for r in runs})
        if unknown:
            raise KeyError(f"run {unknown[0]!r} is not in this study's grid")
        runs = [r for r in runs if r.run_id in only]
    status = results.statuses()
    keep = {"done"} if retry_failed else {"done", "failed"}
    todo = [r for r in runs if status.get(r.run_id) not in keep]
    # Largest models first, so the slowest runs do not start last.
    todo.sort(key=lambda r: (r.target_params * r.data_size, r.run_id), reverse=True)
    summary = TrainSummary(len(runs), len(runs) - len(todo), 0, 0)
    if not todo:
        return summary
    bar = tqdm(total=len(todo), desc="runs", unit="run", disable=not progress)
    for row, evals in run_local(spec, todo, store_dir(spec, study_dir), study_dir / "runs"):
        results.record(row, evals)
        if row["status"] == "done":
            summary.done += 1
        else:
            summary.failed += 1
            bar.write(f"run {row['run_id']} failed: {row['error']}")
        bar.set_postfix(failed=summary.failed)
        bar.update()
    bar.close()
    return summary


def _study_runs(study_dir: Path):
    spec = load_spec(Path(study_dir) / "spec.yaml")
    wide = Results(Path(study_dir) / "results.sqlite").wide()
    ids = {r.run_id for r in expand(spec)}
    return spec, wide[wide["run_id"].isin(ids)].reset_index(drop=True)


def fit_laws(study_dir: Path) -> Path:
    """Fit the study's laws from ``results.sqlite``; write and return ``fits.json``."""
    spec, wide = _study_runs(study_dir)
    fits, gaps = fit_study(wide, delta=spec.laws.delta, n_bootstrap=spec.laws.n_bootstrap)
    path = Path(study_dir) / "fits.json"
    path.write_text(json.dumps({"fits": fits, "gaps": gaps}, indent=1))
    return path


def _software() -> dict[str, str]:
    import numpy
    import scipy
    import torch

    import ecgscale

    return {
        "python": platform.python_version(),
        "ecgscale": ecgscale.__version__,
        "torch": torch.__version__,
        "numpy": numpy.__version__,
        "scipy": scipy.__version__,
    }


def write_report(study_dir: Path) -> Path:
    """Render ``report.html`` from the results, the fits and the spec."""
    from ecgscale.report import render_report

    study_dir = Path(study_dir)
    spec, wide = _study_runs(study_dir)
    evals = Results(study_dir / "results.sqlite").evals()
    runs = wide[[c for c in wide.columns if ":" not in c]]
    fits = json.loads((study_dir / "fits.json").read_text())["fits"]
    done = runs[runs["status"] == "done"]
    train_flops = float((done["flops_per_sample"] * done["steps"]).sum() * spec.train.batch_size)
    meta = {
        **_software(),
        "runs": f"{len(done)} done of {len(runs)}",
        "training wall time (sum over runs)": f"{runs['wall_s'].sum() / 60:.1f} min",
        "training compute": f"{train_flops:.3g} FLOPs",
    }
    return render_report(
        runs,
        evals[evals["run_id"].isin(runs["run_id"])],
        fits,
        spec_text=spec.to_yaml(),
        out_dir=study_dir,
        title=f"ecgscale study: {spec.name}",
        meta=meta,
    )


def run_study(
    spec: StudySpec, study_dir: Path, *, progress: bool = True, retry_failed: bool = False
) -> Path:
    """The whole study: data → training and evaluation → laws → report. Returns the report."""
    prepare_data(spec, study_dir, progress=progress)
    train_runs(spec, study_dir, progress=progress, retry_failed=retry_failed)
    fit_laws(study_dir)
    return write_report(study_dir)
