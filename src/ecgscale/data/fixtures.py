"""Real dataset layouts filled with synthetic ECGs, written to disk for tests and benchmarks.

Each writer produces files of exactly a publisher's layout (names, datasets, dtypes, columns,
zero padding), with signals and metadata from :func:`ecgscale.data.synthetic.generate`, so that
the readers in :mod:`ecgscale.data.sources` can be exercised without the real data. Signals are
written in chunks, so tens of thousands of records never sit in memory at once.

* :func:`write_code15`: a CODE-15% folder (``exams_part{k}.hdf5`` + ``exams.csv``).
* :func:`write_code_test_tracings`: CODE-test's ``ecg_tracings.hdf5`` beside real labels.

CODE values are millivolts (see :mod:`ecgscale.data.sources.code15`), as the generator's are, so
the signals are stored unscaled. Whether each real HDF5 dataset is chunked or compressed is not
documented; these files use HDF5's default contiguous layout.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np
import pandas as pd

from ecgscale.data.schema import LABELS
from ecgscale.data.synthetic import generate

CODE15_COLUMNS: tuple[str, ...] = (
    "exam_id",
    "age",
    "is_male",
    "nn_predicted_age",
    *LABELS,
    "patient_id",
    "normal_ecg",
    "death",
    "timey",
    "trace_file",
)
"""Columns of CODE-15%'s ``exams.csv``, in the order of the dataset's description."""

_MAX_EXAM_ID = 4_000_000  # CODE exam ids are positive integers of up to 7 digits
_DEATH_RATE = 0.07  # fraction of patients whose first exam records a death


@dataclass(frozen=True)
class _Synth:
    """How to synthesise records: the generator's site, rate, length and record durations."""

    site: str
    fs: float
    n_samples: int
    durations_s: tuple[float, ...]
    chunk: int

    def __post_init__(self) -> None:
        object.__setattr__(self, "fs", float(self.fs))
        object.__setattr__(self, "durations_s", tuple(float(d) for d in self.durations_s))


def write_code15(
    folder: Path | str,
    n_records: int,
    n_parts: int,
    *,
    seed: int,
    fs: float = 400.0,
    n_samples: int = 4096,
    durations_s: Sequence[float] = (7.0, 10.0),
    site: str = "code",
    chunk: int = 256,
) -> pd.DataFrame:
    """Write a CODE-15% folder of ``n_records`` exams in ``n_parts`` parts; return its table.

    Each ``exams_part{k}.hdf5`` holds ``tracings`` ``(N + 1, n_samples, 12)`` float32 (leads
    DI, DII, DIII, AVR, AVL, AVF, V1-V6; records of ``durations_s``, drawn per record, centred in
    zeros) and ``exam_id`` ``(N + 1,)`` int64, the last row being CODE-15%'s padding row (exam
    id 0, all-zero tracing). ``exams.csv`` has :data:`CODE15_COLUMNS`, rows in random order,
    ``death`` and ``timey`` only on a patient's first exam. The returned frame is the CSV's
    rows plus ``duration_s`` (each record's length before padding).
    """
    if n_parts < 1 or n_records < n_parts:
        raise ValueError(f"need 1 <= n_parts <= n_records, got {n_parts} and {n_records}")
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    synth = _Synth(site, fs, n_samples, tuple(durations_s), chunk)
    rng = np.random.default_rng([seed, 15])
    exam_ids = rng.choice(_MAX_EXAM_ID, n_records, replace=False).astype(np.int64) + 1
    bounds = np.linspace(0, n_records, n_parts + 1).round().astype(int)
    tables, first_patient = [], 1
    for k, (start, stop) in enumerate(zip(bounds[:-1], bounds[1:], strict=True)):
        name = f"exams_part{k}.hdf5"
        meta = _write_part(folder / name, exam_ids[start:stop], synth, [seed, k], first_patient)
        tables.append(meta.assign(exam_id=exam_ids[start:stop], trace_file=name))
        first_patient = int(meta["patient_id"].max()) + 1
    exams = _exams_table(pd.concat(tables, ignore_index=True), rng)
    exams.drop(columns="duration_s").to_csv(folder / "exams.csv", index=False)
    return exams


def write_code_test_tracings(
    path: Path | str,
    labels_dir: Path | str,
    *,
    seed: int = 0,
    fs: float = 400.0,
    n_samples: int = 4096,
    durations_s: Sequence[float] = (7.0, 10.0),
    site: str = "code",
    chunk: int = 256,
) -> pd.DataFrame:
    """Write CODE-test's ``ecg_tracings.hdf5`` at ``path`` for the labels in ``labels_dir``.

    The file holds one dataset, ``tracings`` ``(n, n_samples, 12)`` float32, with ``n`` the
    rows of ``labels_dir/annotations/gold_standard.csv`` (827 in the real set). The signals are
    synthetic and do not follow those labels: the file is for testing readers, not models.
    Returns the generator's metadata of the rows written (with ``duration_s``).
    """
    n = len(pd.read_csv(Path(labels_dir) / "annotations" / "gold_standard.csv"))
    synth = _Synth(site, fs, n_samples, tuple(durations_s), chunk)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with h5py.File(path, "w") as file:
        tracings = file.create_dataset("tracings", (n, n_samples, 12), np.float32)
        return _fill(tracings, n, synth, [seed, 827], 0)


def _write_part(
    path: Path, exam_ids: np.ndarray, synth: _Synth, seed: list[int], first_patient: int
) -> pd.DataFrame:
    """One ``exams_part{k}.hdf5`` with a trailing padding row; the generator's metadata."""
    n = exam_ids.size
    with h5py.File(path, "w") as file:
        tracings = file.create_dataset("tracings", (n + 1, synth.n_samples, 12), np.float32)
        file.create_dataset("exam_id", data=np.append(exam_ids, 0).astype(np.int64))
        meta = _fill(tracings, n, synth, seed, first_patient)
        tracings[n] = 0.0
    return meta


def _fill(
    tracings: h5py.Dataset, n: int, synth: _Synth, seed: list[int], first_patient: int
) -> pd.DataFrame:
    """Write ``n`` synthetic records into the first rows of ``tracings``, a chunk at a time;
    return their metadata."""
    frames = []
    for start, signals, meta in _chunks(n, synth, seed, first_patient):
        tracings[start : start + len(meta)] = signals
        frames.append(meta)
    return pd.concat(frames, ignore_index=True)


def _chunks(
    n: int, synth: _Synth, seed: list[int], first_patient: int
) -> Iterator[tuple[int, np.ndarray, pd.DataFrame]]:
    """``(start, signals (m, n_samples, 12), metadata)`` for ``n`` records, ``synth.chunk`` at a
    time; patient ids run on from ``first_patient`` across chunks."""
    for start in range(0, n, synth.chunk):
        m = min(synth.chunk, n - start)
        rng = np.random.default_rng([*seed, start])
        durations = rng.choice(synth.durations_s, m)
        signals = np.empty((m, synth.n_samples, 12), np.float32)
        frames = []
        for duration in np.unique(durations):
            rows = np.flatnonzero(durations == duration)
            block, meta = generate(
                synth.site,
                rows.size,
                fs=synth.fs,
                n_samples=synth.n_samples,
                duration_s=float(duration),
                seed=int(rng.integers(2**31)),
                patient_id_start=first_patient,
            )
            signals[rows] = block.transpose(0, 2, 1)
            frames.append(meta.set_index(rows))
            first_patient = int(meta["patient_id"].max()) + 1
        yield start, signals, pd.concat(frames).sort_index().reset_index(drop=True)


def _exams_table(meta: pd.DataFrame, rng: np.random.Generator) -> pd.DataFrame:
    """CODE-15% ``exams.csv`` rows (plus ``duration_s``) from the generator's metadata."""
    n = len(meta)
    age = meta["age"].round().astype(np.int64)
    labels = meta[list(LABELS)].astype(bool)
    first_exam = ~meta["patient_id"].duplicated().to_numpy()
    death = pd.array(rng.random(n) < _DEATH_RATE, dtype="boolean")
    death[~first_exam] = pd.NA
    table = pd.DataFrame(
        {
            "exam_id": meta["exam_id"],
            "age": age,
            "is_male": meta["is_male"].astype(bool),
            "nn_predicted_age": (age + rng.normal(0.0, 8.0, n)).round(4),
            **labels,
            "patient_id": meta["patient_id"].astype(np.int64),
            "normal_ecg": ~labels.any(axis=1),
            "death": death,
            "timey": np.where(first_exam, rng.uniform(0.1, 8.0, n).round(4), np.nan),
            "trace_file": meta["trace_file"],
            "duration_s": meta["duration_s"],
        }
    )
    return table.iloc[rng.permutation(n)].reset_index(drop=True)
