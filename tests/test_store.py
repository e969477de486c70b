"""Store: round trip, random access, atomic completion, validation."""

import numpy as np
import pandas as pd
import pytest

from ecgscale.data.schema import LABELS
from ecgscale.data.store import Store, StoreError, StoreWriter


def _meta(n: int, start: int = 0) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "record_id": [f"r{start + i}" for i in range(n)],
            "patient_id": np.arange(start, start + n) // 2,
            "source": "test",
            "site": "a",
            "fs_origin": 100.0,
            "age": 50.0,
            "is_male": True,
            **{label: 0 for label in LABELS},
        }
    )


def test_round_trip_across_shards(tmp_path):
    rng = np.random.default_rng(0)
    sig = rng.normal(size=(25, 12, 40)).astype(np.float32)
    w = StoreWriter(tmp_path / "s", fs=100, n_samples=40, dtype="float32", shard_size=7)
    w.add(sig[:10], _meta(10))
    w.add(sig[10:], _meta(15, 10))
    store = w.close()
    assert len(store) == 25 and len(store.info.shards) == 4
    rows = np.array([24, 0, 7, 13, 6, 6])
    np.testing.assert_array_equal(store.read(rows), sig[rows])
    reopened = Store(tmp_path / "s")
    assert list(reopened.meta["row"]) == list(range(25))
    assert reopened.meta["record_id"].iloc[24] == "r24"


def test_float16_default_is_close(tmp_path):
    sig = np.random.default_rng(1).normal(scale=0.5, size=(5, 12, 30)).astype(np.float32)
    w = StoreWriter(tmp_path / "s", fs=100, n_samples=30)
    w.add(sig, _meta(5))
    np.testing.assert_allclose(w.close().read(np.arange(5)), sig, atol=2e-3)


def test_incomplete_store_is_not_opened(tmp_path):
    w = StoreWriter(tmp_path / "s", fs=100, n_samples=30, shard_size=2)
    w.add(np.zeros((3, 12, 30), np.float32), _meta(3))
    with pytest.raises(StoreError, match="not a complete store"):
        Store(tmp_path / "s")


@pytest.mark.parametrize(
    "bad, match",
    [
        (np.zeros((2, 11, 30), np.float32), "shape"),
        (np.full((2, 12, 30), np.nan, np.float32), "NaN"),
    ],
)
def test_bad_signals_rejected(tmp_path, bad, match):
    w = StoreWriter(tmp_path / "s", fs=100, n_samples=30)
    with pytest.raises(StoreError, match=match):
        w.add(bad, _meta(2))


def test_duplicate_record_ids_rejected(tmp_path):
    w = StoreWriter(tmp_path / "s", fs=100, n_samples=30)
    w.add(np.zeros((2, 12, 30), np.float32), _meta(2))
    w.add(np.zeros((2, 12, 30), np.float32), _meta(2))
    with pytest.raises(StoreError, match="duplicate record_id"):
        w.close()


def test_read_out_of_range(tmp_path):
    w = StoreWriter(tmp_path / "s", fs=100, n_samples=30)
    w.add(np.zeros((2, 12, 30), np.float32), _meta(2))
    with pytest.raises(IndexError):
        w.close().read(np.array([2]))
