"""Features of one's own recordings from an exported encoder (and the readers ``predict`` uses).

Records are read by any registered source (a WFDB folder, an HDF5 file, a PTB-XL folder, ...)
and harmonised to the encoder's input form exactly as ingest does (:func:`harmonize` with the
default rules, :class:`Target` of the encoder's ``fs`` and ``n_samples`` and pre-training's
alignment and band-pass). A record that cannot be harmonised, or whose id was seen before, is
left out and listed with its reason.
"""

from __future__ import annotations

import functools
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from tqdm.auto import tqdm

from ecgscale.data.harmonize import Target, harmonize
from ecgscale.data.sources.base import Rejection, create_source
from ecgscale.evaluate.inference import batch_size_for, device_of, pooled, resolve_device
from ecgscale.models import Encoder
from ecgscale.models.exported import ECGModel, EncoderError, load_encoder

FEATURE_FORMATS = (".parquet", ".csv", ".npy")
"""Extensions :func:`write_features` writes."""

HDF5_SUFFIXES = (".h5", ".hdf5")

CPU_BATCH = 64
"""Records per forward pass on a CPU (on a GPU: as many as its free memory holds)."""


def detect_kind(recordings: Path | str) -> str:
    """``hdf5`` for a .h5/.hdf5 file, ``wfdb`` for one WFDB record's header (``.hea``) or a
    folder with ``*.hea`` files below it."""
    recordings = Path(recordings)
    if recordings.is_file() and recordings.suffix.lower() in HDF5_SUFFIXES:
        return "hdf5"
    if recordings.is_file() and recordings.suffix.lower() == ".hea":
        return "wfdb"
    if recordings.is_dir() and next(recordings.rglob("*.hea"), None) is not None:
        return "wfdb"
    raise EncoderError(
        f"{recordings}: neither a .h5/.hdf5 file, a WFDB header (.hea) nor a folder of WFDB "
        "records (*.hea); give the reader with --kind (see `ecgscale data sources`)"
    )


def harmonized(
    recordings: Path | str,
    target: Target,
    *,
    kind: str | None = None,
    options: dict[str, Any] | None = None,
    progress: bool = False,
) -> Iterator[tuple[str, np.ndarray] | Rejection]:
    """Each record of ``recordings`` as ``(record_id, (12, n_samples) float32 mV)`` in the
    source's order, or the Rejection that says why it cannot be."""
    source = create_source(kind or detect_kind(recordings), recordings, **(options or {}))
    units = source.units()
    yield from source.scan_rejections()
    seen: set[str] = set()
    total = sum(unit.n for unit in units)
    with tqdm(total=total, desc="embedding", unit="rec", disable=not progress) as bar:
        for unit in units:
            for item in source.read(unit):
                bar.update()
                if isinstance(item, Rejection):
                    yield item
                elif item.record_id in seen:
                    yield Rejection(item.record_id, item.file, "duplicate", "record id seen before")
                else:
                    seen.add(item.record_id)
                    done = harmonize(item, target)
                    yield done if isinstance(done, Rejection) else (item.record_id, done[0])


def input_target(encoder: Encoder | ECGModel) -> Target:
    """The harmonisation target of a model from :func:`load_model` or :func:`load_encoder`:
    its config's input (rate, length, alignment and band-pass of pre-training)."""
    config = getattr(encoder, "config", None)
    if config is None:
        raise EncoderError("the encoder has no config: load it with ecgscale.load_encoder(DIR)")
    i = config["input"]
    bandpass = tuple(i["bandpass"]) if i["bandpass"] else None
    return Target(fs=i["fs"], n_samples=i["n_samples"], align=i["align"], bandpass=bandpass)


def batches(
    recordings: Path | str,
    target: Target,
    rejected: list[Rejection],
    *,
    batch_size: int,
    kind: str | None = None,
    options: dict[str, Any] | None = None,
    progress: bool = False,
) -> Iterator[tuple[list[str], list[np.ndarray]]]:
    """(record ids, harmonised signals) of ``recordings``, ``batch_size`` at a time; records
    that cannot be harmonised are appended to ``rejected``."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    ids: list[str] = []
    signals: list[np.ndarray] = []
    for item in harmonized(recordings, target, kind=kind, options=options, progress=progress):
        if isinstance(item, Rejection):
            rejected.append(item)
            continue
        ids.append(item[0])
        signals.append(item[1])
        if len(ids) == batch_size:
            yield ids, signals
            ids, signals = [], []
    if ids:
        yield ids, signals


def computed(
    recordings: Path | str,
    target: Target,
    compute: Callable[[list[np.ndarray]], np.ndarray],
    what: str,
    batch_size: int,
    reader: dict[str, Any],
) -> tuple[list[str], np.ndarray, list[Rejection]]:
    """``compute`` (rows of a batch of harmonised signals) over ``recordings``, ``batch_size``
    records at a time, read with :func:`batches`' ``reader`` options (kind, options,
    progress): the record ids, their rows stacked, and the records left out; :func:`none_left`'s
    error (``what``: embedded, read) when no record is left."""
    ids: list[str] = []
    rows: list[np.ndarray] = []
    rejected: list[Rejection] = []
    for batch_ids, signals in batches(
        recordings, target, rejected, batch_size=batch_size, **reader
    ):
        ids += batch_ids
        rows.append(compute(signals))
    if not ids:
        raise none_left(recordings, rejected, what)
    return ids, np.concatenate(rows), rejected


def none_left(recordings: Path | str, rejected: list[Rejection], what: str) -> EncoderError:
    """The error of a set of recordings none of which could be used (``what``: embedded...)."""
    reasons = "; ".join(describe_rejections(rejected)) if rejected else "none found"
    return EncoderError(f"{recordings}: no record could be {what} ({reasons})")


def features(encoder: Encoder, signals: list[np.ndarray], precision: str = "fp32") -> np.ndarray:
    """Pooled features ``(n, dim)`` float32 of harmonised signals, as one batch on the encoder's
    device (bf16 autocast on a GPU under ``precision`` bf16)."""
    x = torch.from_numpy(np.stack(signals)).to(device_of(encoder))
    return pooled(encoder, x, precision)


def embed(
    encoder_or_dir: Encoder | Path | str,
    recordings: Path | str,
    *,
    kind: str | None = None,
    options: dict[str, Any] | None = None,
    batch_size: int | None = None,
    device: str | torch.device | None = None,
    precision: str = "fp32",
    progress: bool = False,
) -> pd.DataFrame:
    """One row per embedded record: ``record_id``, then its features ``f0..f{dim-1}`` (float32).

    ``encoder_or_dir`` is an exported encoder's folder or :func:`load_encoder`'s result (put in
    eval mode); ``kind`` a source kind (default: told by :func:`detect_kind`), ``options`` its
    reader options. ``device`` runs the encoder there (``auto``: the GPU if there is one; None:
    a folder's encoder on the CPU, a given encoder where it is); ``precision`` bf16 autocasts
    on a GPU; ``batch_size`` records go through at once (default: :data:`CPU_BATCH` on a CPU,
    as many as the GPU's free memory holds on a GPU). Records that cannot be harmonised are
    left out and listed in ``frame.attrs["rejected"]`` (Rejection objects: record_id, file,
    reason, detail); EncoderError if none is left.
    """
    if batch_size is not None and batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    encoder = encoder_or_dir
    if not isinstance(encoder, Encoder):
        encoder = load_encoder(encoder_or_dir)
    if device is not None:
        encoder.to(resolve_device(device))
    encoder.eval()
    target = input_target(encoder)
    if batch_size is None:
        batch_size = batch_size_for(encoder, target.n_samples, precision, CPU_BATCH)
    reader = {"kind": kind, "options": options, "progress": progress}
    compute = functools.partial(features, encoder, precision=precision)
    ids, rows, rejected = computed(recordings, target, compute, "embedded", batch_size, reader)
    frame = feature_frame(ids, rows)
    frame.attrs["rejected"] = rejected
    return frame


def feature_frame(ids: list[str], values: np.ndarray) -> pd.DataFrame:
    """``record_id`` and ``f0..f{dim-1}`` columns."""
    columns = pd.DataFrame(values, columns=[f"f{i}" for i in range(values.shape[1])])
    return pd.concat([pd.DataFrame({"record_id": pd.array(ids, dtype="string")}), columns], axis=1)


def describe_rejections(rejected: list[Rejection], first: int = 3) -> list[str]:
    """How many were rejected for each reason, then the first few records and why."""
    counts = Counter(r.reason for r in rejected).most_common()
    records = "record" if len(rejected) == 1 else "records"
    total = f"{len(rejected)} {records} rejected: " + ", ".join(f"{k} {n}" for k, n in counts)
    return [total, *(f"{r.record_id}: {r.reason} ({r.detail})" for r in rejected[:first])]


def check_features_path(path: Path | str) -> str:
    """The format of a features file, told by its extension; EncoderError if not one we write."""
    suffix = Path(path).suffix.lower()
    if suffix not in FEATURE_FORMATS:
        raise EncoderError(f"{path}: the features file must end in {', '.join(FEATURE_FORMATS)}")
    return suffix


def ids_path(path: Path | str) -> Path:
    """Where the record ids of a ``.npy`` features file go: ``<name>.ids.txt`` beside it."""
    return Path(path).with_suffix(".ids.txt")


def write_features(frame: pd.DataFrame, path: Path | str) -> None:
    """Write ``feature_frame`` output as .parquet, .csv, or .npy (features) + ``.ids.txt``."""
    path = Path(path)
    suffix = check_features_path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    plain = frame.copy(deep=False)
    plain.attrs = {}  # pandas would write attrs into the parquet metadata
    if suffix == ".parquet":
        plain.to_parquet(path, index=False)
    elif suffix == ".csv":
        plain.to_csv(path, index=False)
    else:
        np.save(path, plain.drop(columns="record_id").to_numpy(np.float32))
        ids_path(path).write_text("".join(f"{record_id}\n" for record_id in plain["record_id"]))
