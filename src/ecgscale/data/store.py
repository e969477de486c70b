"""On-disk record store: sharded memory-mapped signal arrays plus a columnar metadata table.

Layout of a store folder::

    store.json            format, sampling rate, length, leads, dtype, shard list (written last)
    signals-00000.npy     (n, 12, T) arrays, memory-mapped on read
    meta.parquet          one row per record, in store order (column ``row`` = global index)

A store is complete when ``store.json`` exists; shards are written under a temporary
name and renamed, so an interrupted write never leaves a half-written shard behind.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from ecgscale.data.schema import LEADS, META_COLUMNS

FORMAT_VERSION = 1


class StoreError(RuntimeError):
    """A store folder is missing, incomplete or inconsistent."""


@dataclass
class StoreInfo:
    """The contents of ``store.json``."""

    fs: float
    n_samples: int
    dtype: str = "float16"
    leads: list[str] = field(default_factory=lambda: list(LEADS))
    shards: list[dict] = field(default_factory=list)
    n_records: int = 0
    format_version: int = FORMAT_VERSION


def _atomic_write_text(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


class StoreWriter:
    """Append canonical records to a new store, one shard per ``shard_size`` records."""

    def __init__(
        self,
        root: Path,
        *,
        fs: float,
        n_samples: int,
        dtype: str = "float16",
        shard_size: int = 8192,
    ) -> None:
        self.root = Path(root)
        if (self.root / "store.json").exists():
            raise StoreError(f"{self.root}: a store already exists here")
        self.root.mkdir(parents=True, exist_ok=True)
        self.info = StoreInfo(fs=float(fs), n_samples=int(n_samples), dtype=dtype)
        self.shard_size = shard_size
        self._buffer: list[np.ndarray] = []
        self._buffered = 0
        self._meta: list[pd.DataFrame] = []

    def add(self, signals: np.ndarray, meta: pd.DataFrame) -> None:
        """Queue records ``signals`` (n, 12, T) with their metadata rows."""
        expected = (len(LEADS), self.info.n_samples)
        if signals.ndim != 3 or signals.shape[1:] != expected:
            raise StoreError(f"signals of shape {signals.shape}, expected (n, *{expected})")
        if len(meta) != len(signals):
            raise StoreError(f"{len(signals)} signals but {len(meta)} metadata rows")
        if not np.isfinite(signals).all():
            raise StoreError("signals contain NaN or inf")
        missing = [c for c in META_COLUMNS if c not in meta.columns]
        if missing:
            raise StoreError(f"metadata lacks columns {missing}")
        self._buffer.append(signals.astype(self.info.dtype, copy=False))
        self._buffered += len(signals)
        self._meta.append(meta.reset_index(drop=True))
        while self._buffered >= self.shard_size:
            self._flush(self.shard_size)

    def _flush(self, n: int) -> None:
        data = np.concatenate(self._buffer) if len(self._buffer) > 1 else self._buffer[0]
        shard, rest = data[:n], data[n:]
        name = f"signals-{len(self.info.shards):05d}.npy"
        tmp = self.root / (name + ".tmp")
        with open(tmp, "wb") as f:
            np.save(f, shard)
        os.replace(tmp, self.root / name)
        self.info.shards.append({"file": name, "n": int(len(shard))})
        self.info.n_records += int(len(shard))
        self._buffer = [rest] if len(rest) else []
        self._buffered = len(rest)

    def close(self) -> Store:
        """Write the remaining shard, the metadata table and ``store.json``; return the store."""
        if self._buffered:
            self._flush(self._buffered)
        meta = pd.concat(self._meta, ignore_index=True) if self._meta else pd.DataFrame()
        if len(meta) != self.info.n_records:
            raise StoreError(f"{self.info.n_records} records but {len(meta)} metadata rows")
        if meta["record_id"].duplicated().any():
            dup = meta.loc[meta["record_id"].duplicated(), "record_id"].iloc[0]
            raise StoreError(f"duplicate record_id {dup!r}")
        meta = meta.astype({c: t for c, t in META_COLUMNS.items()})
        meta.insert(0, "row", np.arange(len(meta), dtype=np.int64))
        tmp = self.root / "meta.parquet.tmp"
        meta.to_parquet(tmp, index=False)
        os.replace(tmp, self.root / "meta.parquet")
        _atomic_write_text(self.root / "store.json", json.dumps(asdict(self.info), indent=2))
        return Store(self.root)


class Store:
    """Read access to a complete store: metadata table and random-access signals."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        info_path = self.root / "store.json"
        if not info_path.exists():
            raise StoreError(f"{self.root}: not a complete store (no store.json)")
        self.info = StoreInfo(**json.loads(info_path.read_text()))
        if self.info.format_version != FORMAT_VERSION:
            raise StoreError(f"{info_path}: format version {self.info.format_version} unsupported")
        self.meta = pd.read_parquet(self.root / "meta.parquet")
        self._shards = [np.load(self.root / s["file"], mmap_mode="r") for s in self.info.shards]
        sizes = np.array([s["n"] for s in self.info.shards], dtype=np.int64)
        self._starts = np.concatenate([[0], np.cumsum(sizes)])
        if self._starts[-1] != len(self.meta):
            raise StoreError(
                f"{self.root}: shards hold {self._starts[-1]} records, "
                f"meta.parquet {len(self.meta)}"
            )

    @property
    def fs(self) -> float:
        return self.info.fs

    @property
    def n_samples(self) -> int:
        return self.info.n_samples

    def __len__(self) -> int:
        return int(self._starts[-1])

    def read(self, rows: np.ndarray) -> np.ndarray:
        """Signals of the given global rows as float32 (k, 12, T), in the order given."""
        rows = np.asarray(rows, dtype=np.int64)
        if rows.size and (rows.min() < 0 or rows.max() >= len(self)):
            raise IndexError(f"row out of range 0..{len(self) - 1}")
        out = np.empty((len(rows), len(LEADS), self.n_samples), dtype=np.float32)
        shard_of = np.searchsorted(self._starts, rows, side="right") - 1
        for s in np.unique(shard_of):
            sel = np.flatnonzero(shard_of == s)
            local = rows[sel] - self._starts[s]
            order = np.argsort(local, kind="stable")
            out[sel[order]] = self._shards[s][local[order]]
        return out
