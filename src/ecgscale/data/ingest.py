"""Ingest a source into a store: read, harmonise, split, quarantine — in parallel and resumable.

Work is done unit by unit (see :class:`~ecgscale.data.sources.base.Unit`). Each finished
unit leaves, under ``<store>/<name>/units/``, its signal shard, metadata and quarantine
rows, and last a ``.done.json`` marker; an interrupted ingest run again skips every unit
with a marker and redoes the others, so it never duplicates or drops a record and ends with
the same store as an uninterrupted run. When every unit is done the source's tables are
assembled and its entry is added to ``store.json``: only then do studies see it.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import shutil
import time
from collections import Counter
from concurrent.futures import FIRST_COMPLETED, wait
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from ecgscale.data.harmonize import Target, harmonize
from ecgscale.data.schema import LABELS, LEADS, META_COLUMNS
from ecgscale.data.sources.base import (
    RawRecord,
    Rejection,
    Source,
    Unit,
    create_source,
    patient_from_record,
)
from ecgscale.data.splits import assign_split
from ecgscale.data.store import (
    MADE_BY_FILE,
    QUARANTINE_COLUMNS,
    SourceEntry,
    StoreError,
    atomic_write,
    locked_info,
)
from ecgscale.interrupts import POLL_S, WorkerPool

SMALL_INGEST = 2000
"""records below which ingest runs in the calling process by default."""
EARLY_ABORT_AFTER = 2000
"""records seen before a source rejecting most of them is stopped early."""


class IngestError(StoreError):
    """An ingest that cannot go on or whose result would be wrong; finished units are kept."""


@dataclass(frozen=True)
class SplitRule:
    """Patient-level split fractions for sources that do not fix their own split."""

    val: float = 0.1
    test: float = 0.1
    seed: int = 0


@dataclass
class IngestReport:
    """What an ingest did."""

    store: Path
    name: str
    n_records: int
    n_quarantined: int
    reasons: dict[str, int]
    units_done: int
    units_resumed: int
    wall_s: float
    already_there: bool = False

    def summary(self) -> str:
        if self.already_there:
            return f"{self.name}: already in {self.store} ({self.n_records} records), nothing to do"
        reasons = ", ".join(f"{r} {n}" for r, n in sorted(self.reasons.items())) or "none"
        resumed = (
            f", {self.units_resumed} units kept from an earlier run" if self.units_resumed else ""
        )
        return (
            f"{self.name}: {self.n_records} records stored, {self.n_quarantined} quarantined "
            f"({reasons}) in {self.wall_s:.1f} s{resumed} -> {self.store}"
        )


@dataclass(frozen=True)
class _Job:
    """Everything a worker process needs to ingest one unit (picklable)."""

    kind: str
    path: str
    options: dict[str, Any]
    unit: Unit
    target: Target
    split: SplitRule
    name: str
    out: Path


@dataclass
class _UnitResult:
    key: str
    n: int
    n_rejected: int
    n_lost: int = 0
    reasons: dict[str, int] = field(default_factory=dict)

    @property
    def bad(self) -> int:
        """Records rejected or lost (one quarantine row stands for all that a unit lost)."""
        return self.n_rejected + max(0, self.n_lost - 1)


def _normalise(x: Any) -> Any:
    return json.loads(json.dumps(x, default=str))


def _meta_row(rec: RawRecord, name: str, n_source_samples: int, flags: str) -> dict[str, Any]:
    return {
        "record_id": rec.record_id,
        "patient_id": rec.patient_id
        if rec.patient_id is not None
        else patient_from_record(f"{name}/{rec.record_id}"),
        "source": name,
        "site": rec.site or name,
        "split": None,
        "fs_origin": float(rec.fs),
        "duration_s": n_source_samples / float(rec.fs),
        "flags": flags,
        "age": rec.age,
        "is_male": rec.is_male,
        **{label: int(rec.labels.get(label, -1)) for label in LABELS},
        **rec.extras,
    }


def _read_unit(job: _Job, source: Source) -> tuple[np.ndarray, list[dict], list[Rejection], int]:
    """Harmonise every record of the unit: (signals, metadata rows, rejections, records lost)."""
    t = job.target.n_samples
    signals = np.empty((max(job.unit.n, 1), len(LEADS), t), dtype=np.float16)
    rows: list[dict] = []
    rejected: list[Rejection] = []
    seen: set[str] = set()
    splits: list[str | None] = []
    try:
        for item in source.read(job.unit):
            if isinstance(item, Rejection):
                rejected.append(item)
                continue
            if item.record_id in seen:
                rejected.append(
                    Rejection(item.record_id, item.file, "duplicate", "record id seen before")
                )
                continue
            seen.add(item.record_id)
            done = harmonize(item, job.target)
            if isinstance(done, Rejection):
                rejected.append(done)
                continue
            if len(rows) == len(signals):
                signals = np.concatenate([signals, np.empty_like(signals)])
            signals[len(rows)] = done[0]
            rows.append(_meta_row(item, job.name, np.shape(item.signal)[-1], done[1]))
            splits.append(source.split(item))
    except Exception as exc:  # a reader must not raise; if one does, keep what it gave and say so
        lost = max(1, job.unit.n - len(rows) - len(rejected))
        rejected.append(
            Rejection(
                f"unit:{job.unit.key}",
                str(job.path),
                "unreadable",
                f"reading stopped after {len(rows) + len(rejected)} records "
                f"(about {lost} not read): {type(exc).__name__}: {exc}",
            )
        )
        return signals[: len(rows)], _with_splits(rows, splits, job.split), rejected, lost
    return signals[: len(rows)], _with_splits(rows, splits, job.split), rejected, 0


def _with_splits(rows: list[dict], fixed: list[str | None], rule: SplitRule) -> list[dict]:
    if not rows:
        return rows
    hashed = assign_split(
        np.array([r["patient_id"] for r in rows], dtype=np.int64),
        val=rule.val,
        test=rule.test,
        seed=rule.seed,
    )
    for row, f, h in zip(rows, fixed, hashed, strict=True):
        row["split"] = f or h
    return rows


def _meta_frame(rows: list[dict], extra_columns: dict[str, str]) -> pd.DataFrame:
    dtypes = META_COLUMNS | extra_columns
    frame = pd.DataFrame(rows, columns=list(dtypes))
    return frame.astype(dtypes)


def _quarantine_frame(rejections: list[Rejection]) -> pd.DataFrame:
    return pd.DataFrame(
        [[r.record_id, r.file, r.reason, r.detail] for r in rejections],
        columns=list(QUARANTINE_COLUMNS),
    ).astype("string")


def _run_unit(job: _Job) -> _UnitResult:
    """Ingest one unit and commit it: shard, metadata, quarantine, then the done marker."""
    source = create_source(job.kind, job.path, **job.options)
    signals, rows, rejected, lost = _read_unit(job, source)
    base = job.out / job.unit.key
    if len(rows):
        with open(f"{base}.npy.tmp", "wb") as f:
            np.save(f, signals)
        os.replace(f"{base}.npy.tmp", f"{base}.npy")
    for suffix, frame in (
        ("meta", _meta_frame(rows, source.extra_columns)),
        ("quarantine", _quarantine_frame(rejected)),
    ):
        frame.to_parquet(f"{base}.{suffix}.parquet.tmp", index=False)
        os.replace(f"{base}.{suffix}.parquet.tmp", f"{base}.{suffix}.parquet")
    result = _UnitResult(
        job.unit.key, len(rows), len(rejected), lost, dict(Counter(r.reason for r in rejected))
    )
    atomic_write(Path(f"{base}.done.json"), json.dumps(asdict(result)))
    return result


def _done(out: Path, key: str) -> _UnitResult | None:
    marker = out / f"{key}.done.json"
    return _UnitResult(**json.loads(marker.read_text())) if marker.exists() else None


def _prepare_folder(folder: Path, settings: dict, restart: bool) -> None:
    """Start or resume the source's work folder; refuse to mix two different ingests."""
    marker = folder / "ingest.json"
    if marker.exists() and restart:
        shutil.rmtree(folder)
    elif marker.exists() and _normalise(json.loads(marker.read_text())) != _normalise(settings):
        raise IngestError(
            f"{folder}: holds an unfinished ingest with other settings; run again with the "
            "same settings to resume it, or with --restart to discard it"
        )
    (folder / "units").mkdir(parents=True, exist_ok=True)
    atomic_write(marker, json.dumps(_normalise(settings), indent=2))


def _run_units(jobs: list[_Job], workers: int, bar: tqdm, max_reject: float) -> list[_UnitResult]:
    """Run the jobs (in worker processes when ``workers > 1``), stopping early on a bad source."""
    results: list[_UnitResult] = []

    def record(result: _UnitResult) -> None:
        results.append(result)
        bar.update(result.n + result.bad)
        seen = sum(r.n + r.bad for r in results)
        bad = sum(r.bad for r in results)
        bar.set_postfix(rejected=bad)
        if seen >= EARLY_ABORT_AFTER and bad / seen > max(0.5, max_reject):
            raise IngestError(
                f"stopped early: {bad} of {seen} records rejected so far "
                f"({_top_reasons(results)}); see the unit quarantine files in {jobs[0].out}"
            )

    if workers <= 1:
        for job in jobs:
            record(_run_unit(job))
        return results
    ctx = multiprocessing.get_context("spawn")
    with WorkerPool(max_workers=workers, mp_context=ctx) as pool:  # stopped at once by Ctrl-C
        pending = {pool.submit(_run_unit, job): job for job in jobs}
        try:
            while pending:  # waking up often, to see a Ctrl-C at once
                finished, _ = wait(pending, timeout=POLL_S, return_when=FIRST_COMPLETED)
                for fut in finished:
                    job = pending.pop(fut)
                    try:
                        result = fut.result()
                    except Exception as exc:
                        raise IngestError(
                            f"unit {job.unit.key} of {job.path} failed: {type(exc).__name__}: "
                            f"{exc}; finished units are kept, run again to resume"
                        ) from exc
                    record(result)
        except BaseException:
            for fut in pending:
                fut.cancel()
            raise
    return results


def _default_workers(jobs: list[_Job]) -> int:
    """One per CPU, but none for small work: a worker takes seconds to start (imports)."""
    if sum(job.unit.n for job in jobs) < SMALL_INGEST:
        return 1
    return min(os.cpu_count() or 1, len(jobs))


def _top_reasons(results: list[_UnitResult]) -> str:
    total: Counter[str] = Counter()
    for r in results:
        total.update(r.reasons)
    return ", ".join(f"{reason} {n}" for reason, n in total.most_common(3))


def _assemble(
    folder: Path, source: Source, units: list[Unit], results: dict[str, _UnitResult]
) -> tuple[list[dict], pd.DataFrame, pd.DataFrame]:
    """Shards, metadata and quarantine of the whole source, in unit order."""
    shards, metas, quarantines = [], [], [_quarantine_frame(source.scan_rejections())]
    for unit in units:
        base = folder / "units" / unit.key
        if results[unit.key].n:
            shards.append({"file": f"units/{unit.key}.npy", "n": results[unit.key].n})
            metas.append(pd.read_parquet(f"{base}.meta.parquet"))
        quarantines.append(pd.read_parquet(f"{base}.quarantine.parquet"))
    meta = pd.concat(metas, ignore_index=True) if metas else _meta_frame([], source.extra_columns)
    dup = meta["record_id"][meta["record_id"].duplicated()]
    if len(dup):
        raise IngestError(
            f"{source.path}: record id {dup.iloc[0]!r} occurs in more than one place "
            f"({len(dup)} duplicate ids); remove the copies or ingest the folders separately"
        )
    return shards, meta, pd.concat(quarantines, ignore_index=True)


def ingest(
    kind: str,
    path: Path | str,
    store: Path | str,
    *,
    name: str | None = None,
    options: dict[str, Any] | None = None,
    fs: float | None = None,
    n_samples: int | None = None,
    harmonize_options: dict[str, Any] | None = None,
    split: SplitRule = SplitRule(),
    workers: int | None = None,
    max_reject: float = 0.05,
    restart: bool = False,
    progress: bool = True,
) -> IngestReport:
    """Ingest the source ``kind`` at ``path`` into the store at ``store`` as source ``name``.

    A new store takes its form from ``fs`` and ``n_samples`` (default 400 Hz x 4096, CODE's);
    an existing one keeps its own, and ``fs``/``n_samples`` given must match it. A source
    already committed with the same settings is left as it is; one with other settings is an
    error. If more than ``max_reject`` of the records are rejected the source is not
    committed and :class:`IngestError` says why; its units stay on disk, so a second run
    with a higher ``max_reject`` commits it without reading anything again.
    """
    t0 = time.perf_counter()
    store = Path(store)
    name = name or kind
    if not name.replace("-", "").replace("_", "").isalnum():
        raise IngestError(f"source name {name!r}: use letters, digits, '-' and '_' only")
    source = create_source(kind, path, **(options or {}))
    if not (store / "store.json").exists():
        fs = 400.0 if fs is None else fs
        n_samples = 4096 if n_samples is None else n_samples
        Target(fs=fs, n_samples=n_samples, **(harmonize_options or {}))  # before a store is made
    if not 0 <= max_reject <= 1:
        raise IngestError(f"max_reject must lie in [0, 1] (a fraction), got {max_reject:g}")
    with locked_info(store, fs=fs, n_samples=n_samples) as info:
        form = (info.fs, info.n_samples)
    target = Target(fs=form[0], n_samples=form[1], **(harmonize_options or {}))
    settings = {**source.settings(), "target": asdict(target), "split": asdict(split)}
    committed = info.source(name)
    if committed is not None:
        if _normalise(committed.settings) != _normalise(settings):
            raise IngestError(
                f"{store}: already holds a source named {name!r} ingested with other "
                "settings; choose another --name or another store folder"
            )
        return IngestReport(
            store,
            name,
            committed.n_records,
            committed.n_quarantined,
            {},
            0,
            0,
            0.0,
            already_there=True,
        )
    folder = store / name
    _prepare_folder(folder, settings, restart)
    units = source.units()
    keys = [u.key for u in units]
    if len(set(keys)) != len(keys):
        raise IngestError(f"{kind} reader gave duplicate unit keys for {path}")
    results = {u.key: r for u in units if (r := _done(folder / "units", u.key)) is not None}
    resumed = len(results)
    jobs = [
        _Job(kind, str(path), source.options, u, target, split, name, folder / "units")
        for u in units
        if u.key not in results
    ]
    with tqdm(
        total=sum(u.n for u in units),
        initial=sum(r.n + r.bad for r in results.values()),
        desc=f"ingesting {name}",
        unit="rec",
        disable=not progress,
    ) as bar:
        for result in _run_units(jobs, workers or _default_workers(jobs), bar, max_reject):
            results[result.key] = result
    shards, meta, quarantine = _assemble(folder, source, units, results)
    n_bad = len(quarantine) + sum(max(0, r.n_lost - 1) for r in results.values())
    reasons = dict(Counter(quarantine["reason"]))
    quarantine.to_parquet(folder / "quarantine.parquet", index=False)
    seen = len(meta) + n_bad
    if seen == 0:
        raise IngestError(f"{path}: the {kind} reader found no records")
    if n_bad / seen > max_reject:
        top = ", ".join(f"{r} {n}" for r, n in Counter(quarantine["reason"]).most_common(3))
        lost = sum(r.n_lost for r in results.values())
        if lost:  # a unit that failed as a whole is one quarantine row for all it lost
            top += f" (of them, about {lost} in unit(s) that failed as a whole: one row each)"
        raise IngestError(
            f"{name}: {n_bad} of {seen} records rejected ({100 * n_bad / seen:.1f}% > "
            f"--max-reject {100 * max_reject:g}%): {top}. Reasons per record: "
            f"{folder / 'quarantine.parquet'}; nothing was added to the store"
        )
    meta.to_parquet(folder / "meta.parquet", index=False)
    atomic_write(folder / MADE_BY_FILE, json.dumps(source.made_by(), indent=1))
    wall = time.perf_counter() - t0
    entry = SourceEntry(
        name=name,
        kind=kind,
        settings=_normalise(settings),
        shards=shards,
        n_records=len(meta),
        n_quarantined=n_bad,
        wall_s=round(wall, 3),
        finished_at=datetime.now(timezone.utc).isoformat(timespec="seconds"),
    )
    with locked_info(store) as info:
        if info.source(name) is not None:
            raise StoreError(f"{store}: source {name!r} was committed by another ingest meanwhile")
        info.sources.append(entry)
    return IngestReport(store, name, len(meta), n_bad, reasons, len(units), resumed, wall)
