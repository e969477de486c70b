"""A study from spec to report, stage by stage; each stage reads the last one's files.

Study folder::

    spec.yaml          the resolved spec (what fit and report read)
    store/             the record store (unless data.store points elsewhere)
    roles.csv          the audit of roles: every role's records, patients and overlaps
    runs/<run_id>/     weights (safetensors), training history, metrics.csv (written as it
                       trains), six-label probe (probe.safetensors), error trace of a failed run
    scratch/<id>/      from-scratch task models' training histories and metrics.csv (weights
                       are not kept)
    tensorboard/       TensorBoard events of every job (runs/<id>, scratch/<id>), if installed
    results.sqlite     runs, their evaluations and task results, from-scratch models
    fits.json          fitted laws, the transfer analysis, what could not be fitted
    report.html        the report; figures/ holds its PNGs
"""

from __future__ import annotations

import contextlib
import json
import math
import platform
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from threadpoolctl import threadpool_limits
from tqdm.auto import tqdm

from ecgscale.data.ingest import IngestError, SplitRule, ingest
from ecgscale.data.schema import LABELS
from ecgscale.data.store import Store, StoreError, atomic_write, records_of
from ecgscale.evaluate.probe import PROBE_FILE
from ecgscale.evaluate.roles import assign_roles, check_roles, read_role_table, role_table
from ecgscale.laws.analysis import analyse_study
from ecgscale.laws.transfer import transfer_analysis
from ecgscale.spec import N_COLUMNS, DataSpec, StudySpec
from ecgscale.study.code_version import (
    SYNTHETIC_SOURCE,
    provenance,
    warn_other_code,
    warn_other_generator,
)
from ecgscale.study.executors import Executor, run_local
from ecgscale.study.lifecycle import Jobs
from ecgscale.study.results import Results, fitted_on, read_fits
from ecgscale.study.runs import (
    RunSpec,
    all_jobs,
    expand,
    expand_references,
    expand_scratch,
    resolve_lr,
    store_dir,
    sweep_choices,
)
from ecgscale.study.specfile import load_study_spec
from ecgscale.study.worker import Job, JobResult, job_id, job_kind
from ecgscale.train.metrics import read_metrics, tensorboard_wanted

CURVE_COLUMNS = ["run_id", "step", "train_loss", "val_loss"]


@dataclass
class TrainSummary:
    """Counts of jobs (runs and from-scratch models) in one ``train_runs`` call."""

    total: int
    skipped: int
    done: int
    failed: int
    reevaluated: int = 0
    elsewhere: int = 0
    """Jobs left to another live worker (counted in ``skipped``)."""
    other_code: int = 0
    """Finished jobs of the grid trained by other code than this process's (kept as they are;
    :mod:`ecgscale.study.code_version`)."""


def prepare_data(spec: StudySpec, study_dir: Path, *, progress: bool = True) -> Store:
    """Build (or reuse) the study's store and write the resolved spec beside it; first, check
    that this environment can write what ``monitor`` asks for. The spec is written last, once
    the store and the roles passed their checks: a refused spec leaves the folder's own (so
    does one that differs from the spec whose jobs other processes run now)."""
    tensorboard_wanted(spec.monitor.tensorboard)
    study_dir = Path(study_dir)
    study_dir.mkdir(parents=True, exist_ok=True)
    root = store_dir(spec, study_dir)
    if spec.data.source == "synthetic":
        ingest_synthetic(spec.data, root, progress=progress)
    for source in spec.data.ingest:
        ingest(
            source.kind,
            source.path,
            root,
            name=source.store_name,
            options=source.options,
            fs=spec.data.fs,
            n_samples=spec.data.n_samples,
            harmonize_options={"reject_flagged": source.reject_flagged},
            max_reject=source.max_reject,
            progress=progress,
        )
    store = Store(root)
    if spec.data.source == "synthetic":
        warn_other_generator(root)
    check_store(spec, store).to_csv(study_dir / "roles.csv", index=False)
    own, results, text = study_dir / "spec.yaml", study_dir / "results.sqlite", spec.to_yaml()
    changed = own.is_file() and results.is_file() and own.read_text() != text
    if changed and (live := Jobs(results, stale_after_s=spec.executor.stale_after_s).live()):
        raise StoreError(f"{study_dir}: {len(live)} job(s) run under another spec now "
                         f"({live[0]}, …); let them finish, or use another --out")  # fmt: skip
    atomic_write(own, text)
    return store


def ingest_synthetic(data: DataSpec, root: Path, *, progress: bool = True) -> None:
    """Generate the synthetic sites of ``data`` into the store at ``root`` (kept if there);
    OOD sets that name ingested sources are left to their ingest."""
    from ecgscale.data.synthetic import SITES

    ingested = {src.store_name for src in data.ingest}
    synthetic = [s for s in data.ood_sites if s in SITES and s not in ingested]
    sites = {data.id_site: data.n_records} | {s: data.n_ood_records for s in synthetic}
    try:
        ingest(
            "synthetic",
            "",
            root,
            name=SYNTHETIC_SOURCE,
            options={"sites": sites, "fs": data.fs, "n_samples": data.n_samples, "seed": data.seed},
            fs=data.fs,
            n_samples=data.n_samples,
            split=SplitRule(val=data.val_fraction, test=data.test_fraction, seed=data.seed),
            max_reject=0.0,
            progress=progress,
        )
    except IngestError as err:
        if "other settings" not in str(err):
            raise
        raise StoreError(
            f"{root}: its synthetic records were generated for other data settings (sites, "
            "sizes, rate, length or seed); the synthetic store is made once per study folder, "
            "so use a new one (--out) or another data.store"
        ) from None


def check_store(spec: StudySpec, store: Store) -> pd.DataFrame:
    """The store has the study's form, its ID records are fully labelled and split, every
    OOD set exists, and it holds every role of the study without overlap (a RoleError
    otherwise, see :mod:`ecgscale.evaluate.roles`). Returns the audit of roles."""
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
    return check_roles(assign_roles(spec, store.meta), store.meta)


def _executor(kind: str) -> Executor:
    """The executor function of ``kind`` (ray and submitit are imported only when used)."""
    if kind == "local":
        return run_local
    if kind == "ray":
        from ecgscale.study.cluster_ray import run_ray

        return run_ray
    from ecgscale.study.cluster_slurm import run_slurm

    return run_slurm


def train_runs(
    spec: StudySpec,
    study_dir: Path,
    *,
    progress: bool = True,
    retry_failed: bool = False,
    only: list[str] | None = None,
) -> TrainSummary:
    """Train and evaluate every run not yet recorded (or failed, with ``retry_failed``), and
    train every from-scratch task model likewise, on the spec's executor. A done run evaluated
    under other evaluation settings (sets, tasks, probe) is evaluated again from its saved
    weights, and so is one without its saved probe (evaluated by an older ecgscale). In a
    learning-rate sweep, a rung's other runs train once its sweep has chosen their rate. A job
    that fails (other than by diverging) or loses its worker is submitted again until it has
    had ``executor.max_attempts`` attempts in this call. Interrupted (``KeyboardInterrupt``),
    it stops the executor's workers, gives back (pending) the jobs they left running, and
    raises; finished jobs are kept."""
    study_dir = Path(study_dir)
    results = Results(study_dir / "results.sqlite")
    runs, scratch = [*expand(spec), *expand_references(spec)], expand_scratch(spec)
    if only is not None:
        unknown = sorted(set(only) - {r.run_id for r in runs} - {j.scratch_id for j in scratch})
        if unknown:
            raise KeyError(f"run {unknown[0]!r} is not in this study's grid")
        runs = [r for r in runs if r.run_id in only]
        scratch = [j for j in scratch if j.scratch_id in only]
    keep = {"done"} if retry_failed else {"done", "failed"}
    status, tags, tag = results.statuses(), results.eval_tags(), spec.eval_tag()
    stale = [
        r
        for r in runs
        if status.get(r.run_id) == "done"
        and (tags.get(r.run_id) != tag or not (study_dir / r.folder / PROBE_FILE).is_file())
    ]
    todo: list[Job] = [r for r in runs if status.get(r.run_id) not in keep]
    # Largest first, so the slowest jobs do not start last.
    todo.sort(key=lambda r: (r.target_params * r.data_size, r.run_id), reverse=True)
    todo += stale
    done_scratch = results.statuses_scratch()
    new_scratch = [j for j in scratch if done_scratch.get(j.scratch_id) not in keep]
    new_scratch.sort(key=lambda j: (j.target_params * j.d_f, j.scratch_id), reverse=True)
    todo += new_scratch
    total = len(runs) + len(scratch)
    summary = TrainSummary(total, total - len(todo), 0, 0, len(stale))
    ids = {r.run_id for r in runs} | {j.scratch_id for j in scratch}
    summary.other_code = warn_other_code(results.done_codes(), ids)
    if not todo:
        return summary
    results.set_journal_mode(spec.executor.journal)
    jobs = Jobs(study_dir / "results.sqlite", stale_after_s=spec.executor.stale_after_s)
    jobs.submit([(job_id(j), job_kind(j)) for j in todo], spec.executor.kind)
    start = jobs.attempts()
    by_id = {job_id(j): j for j in todo}
    redo = {r.run_id for r in stale}
    run = _executor(spec.executor.kind)
    waiting = [
        j for j in todo if isinstance(j, RunSpec) and j.lr is None and j.trains and spec.lr_sweep_d
    ]
    with tqdm(total=len(todo), desc="jobs", unit="job", disable=not progress) as bar:
        try:
            batch = [j for j in todo if j not in waiting]
            while batch or waiting:
                if not batch:
                    batch = _after_sweep(spec, results, waiting, summary, bar)
                    by_id |= {job_id(j): j for j in batch}
                    waiting = []
                with contextlib.closing(
                    run(spec, batch, store_dir(spec, study_dir), study_dir, redo)
                ) as stream:
                    batch = _take_results(stream, jobs, start, by_id, spec, summary, bar)
        except KeyboardInterrupt:  # the executor stopped its workers: give back what they left
            jobs.release_left(by_id, "interrupted")
            raise
    return summary


def _after_sweep(
    spec: StudySpec, results: Results, waiting: list[RunSpec], summary: TrainSummary, bar: tqdm
) -> list[RunSpec]:
    """The runs that waited for their rung's learning-rate sweep, each with the rate it chose;
    a run whose sweep did not finish counts as failed, with the reason."""
    choices = sweep_choices(spec, results.runs())
    ready = []
    for job in waiting:
        try:
            ready.append(resolve_lr(job, choices))
        except KeyError as err:
            summary.failed += 1
            bar.write(f"{job.folder} not trained: {str(err).strip(chr(39))}")
            bar.update()
    return ready


def _take_results(
    stream: Iterator[JobResult],
    jobs: Jobs,
    start: dict[str, int],
    by_id: dict[str, Job],
    spec: StudySpec,
    summary: TrainSummary,
    bar: tqdm,
) -> list[Job]:
    """Count the results of ``stream`` into ``summary`` as they come; returns the jobs to
    submit again."""
    again: list[Job] = []
    for res in stream:
        job = by_id[res.job_id]
        tries = jobs.attempts().get(res.job_id, 0) - start.get(res.job_id, 0)
        if res.status == "lost" and tries == 0:  # never started: held back by a broken pool
            again.append(job)
            continue
        if res.status in ("failed", "lost") and res.retry and tries < spec.executor.max_attempts:
            bar.write(
                f"{job.folder} {res.status} (try {tries} of {spec.executor.max_attempts} in this "
                f"command; study status counts all): {res.error}; submitting it again"
            )
            again.append(job)
            continue
        if res.status == "done":
            summary.done += 1
        elif res.status == "skipped":
            summary.skipped += 1
            if jobs.state(res.job_id) == "running":
                summary.elsewhere += 1
                bar.write(f"{job.folder} is running under another live worker; left to it")
        else:
            summary.failed += 1
            bar.write(f"{job.folder} failed: {res.error}")
        bar.set_postfix(failed=summary.failed)
        bar.update()
    return again


def jobs_done(spec: StudySpec, study_dir: Path) -> tuple[int, int]:
    """``(done, total)``: jobs of ``spec``'s grid (runs, untrained references and from-scratch
    models) that are done in the study's job table, and all of them."""
    ids = {job_id(j) for j in all_jobs(spec)}
    path = Path(study_dir) / "results.sqlite"
    if not path.is_file():
        return 0, len(ids)
    table = Jobs(path).table()
    return int((table["job_id"].isin(ids) & (table["state"] == "done")).sum()), len(ids)


def grid_runs(spec: StudySpec, recorded: pd.DataFrame) -> pd.DataFrame:
    """The recorded runs of the spec's grid, one per coordinate: in a learning-rate sweep, a
    rung's sweep run at the rate it chose stands for the sweep (the others are in
    :func:`sweep_runs`)."""
    grid = recorded[recorded["run_id"].isin({r.run_id for r in expand(spec)})]
    swept = {r.run_id for r in expand(spec) if r.lr is not None}
    if not swept:
        return grid.reset_index(drop=True)
    choices = sweep_choices(spec, recorded)
    chosen = {r.run_id for r in expand(spec) if r.lr is not None and choices.get(r.rung) == r.lr}
    keep = ~grid["run_id"].isin(swept) | grid["run_id"].isin(chosen)
    return grid[keep].reset_index(drop=True)


def sweep_runs(spec: StudySpec, recorded: pd.DataFrame) -> pd.DataFrame:
    """The learning-rate sweep's recorded runs, with ``chosen`` marking each rung's pick."""
    sweep = [r for r in expand(spec) if r.lr is not None]
    frame = recorded[recorded["run_id"].isin({r.run_id for r in sweep})]
    choices = sweep_choices(spec, recorded)
    picked = {r.run_id for r in sweep if choices.get(r.rung) == r.lr}
    return frame.assign(chosen=frame["run_id"].isin(picked)).reset_index(drop=True)


def study_roles(study_dir: Path) -> pd.DataFrame:
    """The audit of the study's roles (:func:`ecgscale.evaluate.roles.role_table`), made from
    its spec and store: what each role holds and every overlap between roles."""
    spec = load_study_spec(study_dir)
    store = Store(store_dir(spec, study_dir))
    return role_table(assign_roles(spec, store.meta), store.meta)


def study_tables(study_dir: Path, spec: StudySpec | None = None) -> dict[str, pd.DataFrame]:
    """The results of the study's current grid: ``runs`` (wide; in a learning-rate sweep each
    rung's chosen run), ``sweep`` (:func:`sweep_runs`), ``evals``, ``tasks`` (with the runs'
    coordinates), ``scratch`` and ``references`` (the untrained encoders' probe losses:
    ``family``, ``target_params``, ``n_params``, ``seed``, ``eval_set``, ``loss``); rows of other
    settings are left out. ``spec``: the study's, if the caller has read it."""
    spec = spec or load_study_spec(study_dir)
    path = Path(study_dir) / "results.sqlite"
    if not path.is_file():
        raise FileNotFoundError(f"{study_dir}: no results.sqlite (run the study first)")
    results = Results(path)
    recorded = results.runs()
    wide = grid_runs(spec, results.wide())
    ids = set(wide["run_id"])
    evals = results.evals()
    coords = wide[
        ["run_id", "family", "paradigm", "target_params", *N_COLUMNS.values(), "data_size", "seed"]
    ]
    names = {t.name for t in spec.tasks}
    tasks = results.tasks()
    tasks = coords.merge(tasks[tasks["run_id"].isin(ids) & tasks["task"].isin(names)], on="run_id")
    scratch = results.scratch()
    scratch = scratch[scratch["scratch_id"].isin({j.scratch_id for j in expand_scratch(spec)})]
    reference_runs = recorded[
        recorded["run_id"].isin({r.run_id for r in expand_references(spec)})
        & (recorded["status"] == "done")
    ]
    references = reference_runs[["run_id", "family", "target_params", "n_params", "seed"]].merge(
        evals[evals["method"] == "probe"][["run_id", "eval_set", "loss", "loss_lo", "loss_hi"]],
        on="run_id",
    )
    return {
        "runs": wide,
        "sweep": sweep_runs(spec, recorded),
        "evals": evals[evals["run_id"].isin(ids)].reset_index(drop=True),
        "tasks": tasks.reset_index(drop=True),
        "scratch": scratch.reset_index(drop=True),
        "references": references.drop(columns="run_id"),
    }


def training_curves(study_dir: Path, run_ids: list[str]) -> pd.DataFrame:
    """The training curves of the runs: ``run_id``, ``step``, ``train_loss``, ``val_loss`` from
    each run's ``metrics.csv``, else from its ``train.json`` history (validations only)."""
    frames = []
    for run_id in run_ids:
        run_dir = Path(study_dir) / "runs" / run_id
        rows = read_metrics(run_dir / "metrics.csv")
        if rows.empty and (run_dir / "train.json").is_file():
            rows = pd.DataFrame(json.loads((run_dir / "train.json").read_text()).get("history"))
        if not rows.empty:
            frames.append(rows.reindex(columns=CURVE_COLUMNS).assign(run_id=run_id))
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=CURVE_COLUMNS)


def fit_laws(
    study_dir: Path,
    *,
    workers: int | None = None,
    progress: bool = False,
    spec: StudySpec | None = None,
    tables: dict[str, pd.DataFrame] | None = None,
) -> Path:
    """Fit the study's laws, their efficiency ratios and backtests, and its transfer analysis
    from ``results.sqlite``; write and return ``fits.json``. ``spec`` and ``tables``
    (:func:`study_tables`): what the caller has already read of the study, else read here.

    Keys: ``fits``, ``gaps``, ``joint``, ``loss_to_loss``, ``efficiency`` (``parameter``,
    ``data`` and ``transfer`` lists), ``backtests``, ``analysis_gaps`` (see
    :func:`ecgscale.laws.analysis.analyse_study`) and ``transfer``.
    """
    spec = spec or load_study_spec(study_dir)
    tables = tables or study_tables(study_dir, spec)
    content = analyse_study(
        tables["runs"],
        delta=spec.laws.delta,
        n_boot=spec.laws.n_boot,
        n_convention=spec.laws.n,
        workers=workers,
        progress=progress,
    )
    transfer = None
    content["efficiency"]["transfer"] = []
    without = [t.name for t in spec.tasks if not spec.has_scratch(t.name)]
    for name in without:
        reason = "it has no from-scratch curves (transfer.scratch / transfer.tasks)"
        content["analysis_gaps"].append(
            {"what": f"transfer efficiency on {name}", "reason": reason}
        )
    if len(without) < len(spec.tasks):
        task_rows = tables["tasks"]
        with threadpool_limits(1):
            transfer = transfer_analysis(
                task_rows[~task_rows["task"].isin(without)],
                tables["scratch"],
                curve=spec.transfer.curve,
                delta=spec.laws.delta,
                n_boot=spec.laws.n_boot,
                n_column=N_COLUMNS[spec.laws.n],
            )
        content["efficiency"]["transfer"] = _transfer_efficiency(transfer, content)
    elif not spec.tasks:
        content["analysis_gaps"].append(
            {"what": "transfer efficiency", "reason": "the spec has no unseen task"}
        )
    content = {**_json_safe(content), "transfer": transfer, "fitted_on": fitted_on(tables)}
    path = Path(study_dir) / "fits.json"
    path.write_text(json.dumps(content, indent=1))
    return path


def _transfer_efficiency(transfer: dict, content: dict) -> list[dict]:
    """The transfer analysis's SSL/SL summaries (see
    :func:`ecgscale.laws.transfer.transfer_summary`) as efficiency entries of kind
    ``"transfer"``; an analysis gap for each task and method without a matched pair that has
    effective data on both sides."""
    eff = pd.DataFrame(transfer.get("effective") or [])
    if eff.empty or not {"sl", "ssl"} <= set(eff.get("paradigm", pd.Series()).astype(str)):
        content["analysis_gaps"].append(
            {"what": "transfer efficiency", "reason": "it needs effective data of SSL and SL"}
        )
        return []
    out: list[dict] = []
    summarised = set()
    for entry in transfer.get("summary") or []:
        what = f"transfer efficiency {entry['task']}/{entry['method']}"
        summarised.add(what)
        if entry["n_pairs"] == entry["n_missing"]:
            reason = entry["reason"] + (
                f" ({entry['missing_reason']})" if entry.get("missing_reason") else ""
            )
            content["analysis_gaps"].append({"what": what, "reason": reason})
        else:
            out.append({"kind": "transfer", **entry})
    for task, method in eff.groupby(["task", "method"], sort=True).groups:
        what = f"transfer efficiency {task}/{method}"
        if what not in summarised:
            reason = "no matched SSL and SL results (same family, N, pre-training D, D_F, seed)"
            content["analysis_gaps"].append({"what": what, "reason": reason})
    return out


def _json_safe(value):
    """``value`` with NaN replaced by None and ±inf by ``"inf"``/``"-inf"`` (strict JSON)."""
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None if math.isnan(value) else ("inf" if value > 0 else "-inf")
    if isinstance(value, np.generic):
        return _json_safe(value.item())
    return value


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


def write_report(
    study_dir: Path,
    *,
    spec: StudySpec | None = None,
    tables: dict[str, pd.DataFrame] | None = None,
) -> Path:
    """Render ``report.html`` (and ``figures/*.png``, ``*.svg``) from the results, ``fits.json``
    (laws, efficiency ratios, backtests, transfer analysis), the runs' training curves and the
    spec; fits nothing. ``spec`` and ``tables`` as in :func:`fit_laws`."""
    from ecgscale.report import render_report

    study_dir = Path(study_dir)
    spec = spec or load_study_spec(study_dir)
    tables = tables or study_tables(study_dir, spec)
    wide = tables["runs"]
    runs = wide[[c for c in wide.columns if ":" not in c]]
    content = read_fits(study_dir, fitted_on(tables))
    done = runs[runs["status"] == "done"]
    train_flops = float((done["flops_per_sample"] * done["steps"]).sum() * spec.train.batch_size)
    scratch = tables["scratch"]
    done_scratch = scratch[scratch["status"] == "done"]
    meta = {
        **_software(),
        **provenance(
            [*done["code"], *done_scratch["code"]],
            store_dir(spec, study_dir) if spec.data.source == "synthetic" else None,
        ),
        "runs": f"{len(done)} done of {len(runs)}",
        "jobs of the spec's grid": "{} done of {}".format(*jobs_done(spec, study_dir)),
        "from-scratch task models": f"{(scratch['status'] == 'done').sum()} done of {len(scratch)}",
        "runs' wall time (training + evaluation, sum)": f"{runs['wall_s'].sum() / 60:.1f} min",
        "from-scratch wall time (sum)": f"{scratch['wall_s'].sum() / 60:.1f} min",
        "training compute": f"{train_flops:.3g} FLOPs",
    }
    return render_report(
        runs,
        tables["evals"],
        content["fits"],
        spec_text=spec.to_yaml(),
        out_dir=study_dir,
        title=f"ecgscale study: {spec.name}",
        meta=meta,
        task_results=tables["tasks"],
        transfer=content.get("transfer"),
        analysis=content,
        roles=read_role_table(roles) if (roles := study_dir / "roles.csv").is_file() else None,
        sweep=tables["sweep"],
        curves=training_curves(study_dir, runs["run_id"].tolist()),
        references=tables["references"],
    )


def run_study(
    spec: StudySpec, study_dir: Path, *, progress: bool = True, retry_failed: bool = False
) -> Path:
    """The whole study: data → training and evaluation → laws → report. Returns the report."""
    prepare_data(spec, study_dir, progress=progress)
    train_runs(spec, study_dir, progress=progress, retry_failed=retry_failed)
    tables = study_tables(study_dir, spec)  # read once for both stages
    fit_laws(study_dir, progress=progress, spec=spec, tables=tables)
    return write_report(study_dir, spec=spec, tables=tables)
