"""On-disk record store: sharded memory-mapped signal arrays plus a columnar metadata table.

A store holds records of one canonical form (sampling rate, length, 12 leads) from one or
more *sources*, each added by one ingest (:mod:`ecgscale.data.ingest`). Layout::

    store.json                    form, and the list of committed sources (rewritten atomically)
    <source>/units/<key>.npy      (n, 12, T) signal shards, memory-mapped on read
    <source>/meta.parquet         one row per stored record of the source, in shard order
    <source>/quarantine.parquet   one row per rejected record: record_id, file, reason, detail

A source counts only once its entry is in ``store.json``, which ingest writes last; anything
else in the folder is work in progress that a later ingest resumes.
"""

from __future__ import annotations

import fcntl
import json
import os
from collections import OrderedDict
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ecgscale.data.schema import LEADS, META_COLUMNS

FORMAT_VERSION = 2
MADE_BY_FILE = "made_by.json"
"""Beside a source's records: which code made them (:meth:`Store.made_by`)."""
QUARANTINE_COLUMNS = ("record_id", "file", "reason", "detail")
_OPEN_SHARDS = 256  # memory maps kept open at once (each holds a file descriptor)


class StoreError(RuntimeError):
    """A store folder is missing, incomplete or inconsistent."""


@dataclass
class SourceEntry:
    """One committed ingest: where it came from, how it was made, what it holds."""

    name: str
    kind: str
    settings: dict[str, Any]
    shards: list[dict]
    n_records: int
    n_quarantined: int
    wall_s: float = 0.0
    finished_at: str = ""


@dataclass
class StoreInfo:
    """The contents of ``store.json``."""

    fs: float
    n_samples: int
    dtype: str = "float16"
    leads: list[str] = field(default_factory=lambda: list(LEADS))
    sources: list[SourceEntry] = field(default_factory=list)
    format_version: int = FORMAT_VERSION

    @classmethod
    def from_json(cls, text: str, where: Path) -> StoreInfo:
        try:
            raw = json.loads(text)
        except json.JSONDecodeError as error:
            raise StoreError(f"{where}: not valid JSON ({error})") from None
        if not isinstance(raw, dict):
            raise StoreError(f"{where}: not a store description (a JSON object)")
        if raw.get("format_version") != FORMAT_VERSION:
            raise StoreError(
                f"{where}: store format {raw.get('format_version')} is not {FORMAT_VERSION}; "
                "ingest the data again into a new folder"
            )
        try:
            raw["sources"] = [SourceEntry(**s) for s in raw.get("sources", [])]
            return cls(**raw)
        except TypeError as error:
            raise StoreError(f"{where}: not a store description ({error})") from None

    def source(self, name: str) -> SourceEntry | None:
        return next((s for s in self.sources if s.name == name), None)


def read_made_by(root: Path, name: str) -> dict[str, str]:
    """Which code made the records of source ``name`` of the store at ``root`` (``{}`` in a
    store older than the record); reads no more of the store."""
    path = Path(root) / name / MADE_BY_FILE
    return json.loads(path.read_text()) if path.is_file() else {}


def atomic_write(path: Path, data: bytes | str) -> None:
    """Write ``path`` through a temporary file and a rename: all or nothing."""
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as f:
        f.write(data.encode() if isinstance(data, str) else data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


@contextmanager
def locked_info(
    root: Path, *, fs: float | None = None, n_samples: int | None = None, dtype: str = "float16"
) -> Iterator[StoreInfo]:
    """Read ``store.json`` under an exclusive lock, yield it, write back what the caller changed.

    A missing store is created when ``fs`` and ``n_samples`` are given; an existing one must
    have the ``fs`` and ``n_samples`` that are given.
    """
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    with open(root / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        path = root / "store.json"
        if path.exists():
            info = StoreInfo.from_json(path.read_text(), path)
            if (fs is not None and info.fs != float(fs)) or (
                n_samples is not None and info.n_samples != int(n_samples)
            ):
                raise StoreError(
                    f"{root}: holds {info.fs:g} Hz x {info.n_samples} samples records, "
                    f"not {fs or info.fs:g} Hz x {n_samples or info.n_samples}; "
                    "use another store folder"
                )
        elif fs is None or n_samples is None:
            raise StoreError(f"{root}: not a store (no store.json)")
        else:
            info = StoreInfo(fs=float(fs), n_samples=int(n_samples), dtype=dtype)
        yield info
        atomic_write(path, json.dumps(asdict(info), indent=2))


class Store:
    """Read access to the committed sources of a store: metadata table and random-access signals.

    ``meta`` has one row per record across all sources (in ``store.json`` order) with a
    global ``row`` index; :meth:`read` takes those rows.
    """

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        info_path = self.root / "store.json"
        if not info_path.exists():
            raise StoreError(f"{self.root}: not a store (no store.json)")
        self.info = StoreInfo.from_json(info_path.read_text(), info_path)
        metas = [self._source_meta(s) for s in self.info.sources]
        meta = pd.concat(metas, ignore_index=True) if metas else _empty_meta()
        meta.insert(0, "row", np.arange(len(meta), dtype=np.int64))
        self.meta = meta
        self._files = [
            self.root / s.name / sh["file"] for s in self.info.sources for sh in s.shards
        ]
        sizes = [sh["n"] for s in self.info.sources for sh in s.shards]
        self._starts = np.concatenate([[0], np.cumsum(sizes, dtype=np.int64)])
        if self._starts[-1] != len(self.meta):
            raise StoreError(
                f"{self.root}: shards hold {self._starts[-1]} records, metadata {len(self.meta)}"
            )
        self._open: OrderedDict[int, np.ndarray] = OrderedDict()

    def _source_meta(self, entry: SourceEntry) -> pd.DataFrame:
        path = self.root / entry.name / "meta.parquet"
        if not path.exists():
            raise StoreError(f"{path}: missing, but store.json lists source {entry.name!r}")
        meta = pd.read_parquet(path)
        if len(meta) != entry.n_records:
            raise StoreError(f"{path}: {len(meta)} rows, store.json says {entry.n_records}")
        return meta

    @property
    def fs(self) -> float:
        return self.info.fs

    @property
    def n_samples(self) -> int:
        return self.info.n_samples

    @property
    def sources(self) -> list[str]:
        return [s.name for s in self.info.sources]

    def made_by(self, name: str) -> dict[str, str]:
        """:func:`read_made_by` of source ``name`` of this store."""
        return read_made_by(self.root, name)

    def __len__(self) -> int:
        return int(self._starts[-1])

    def quarantine(self) -> pd.DataFrame:
        """Every rejected record of every committed source, with a ``source`` column."""
        parts = []
        for entry in self.info.sources:
            q = pd.read_parquet(self.root / entry.name / "quarantine.parquet")
            parts.append(q.assign(source=entry.name))
        return (
            pd.concat(parts, ignore_index=True)
            if parts
            else pd.DataFrame(columns=[*QUARANTINE_COLUMNS, "source"])
        )

    def _shard(self, s: int) -> np.ndarray:
        arr = self._open.get(s)
        if arr is None:
            arr = np.load(self._files[s], mmap_mode="c")  # copy-on-write: never writes back
            self._open[s] = arr
            if len(self._open) > _OPEN_SHARDS:
                self._open.popitem(last=False)
        else:
            self._open.move_to_end(s)
        return arr

    def read(self, rows: np.ndarray) -> np.ndarray:
        """Signals of the given global rows as float32 (k, 12, T), in the order given."""
        import torch  # here, not at module level: the CLI imports this module on every command

        rows = np.asarray(rows, dtype=np.int64)
        if rows.size and (rows.min() < 0 or rows.max() >= len(self)):
            raise IndexError(f"row out of range 0..{len(self) - 1}")
        out = torch.empty((len(rows), len(LEADS), self.n_samples), dtype=torch.float32)
        shard_of = np.searchsorted(self._starts, rows, side="right") - 1
        for j, (row, s) in enumerate(zip(rows.tolist(), shard_of.tolist(), strict=True)):
            # one pass per record: memory map → float32 (torch converts ~20x faster than numpy)
            out[j].copy_(torch.from_numpy(self._shard(s)[row - self._starts[s]]))
        return out.numpy()


def _empty_meta() -> pd.DataFrame:
    return pd.DataFrame({c: pd.Series(dtype=t) for c, t in META_COLUMNS.items()})


def records_of(meta: pd.DataFrame, name: str) -> pd.DataFrame:
    """The records of the site called ``name`` or, if no site is, of the source called so."""
    by_site = meta[meta["site"] == name]
    return by_site if len(by_site) else meta[meta["source"] == name]
