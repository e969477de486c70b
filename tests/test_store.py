"""Store: reading committed sources, shard handles, incomplete and foreign folders."""

import json

import numpy as np
import pytest

from ecgscale.data import store as store_module
from ecgscale.data.ingest import ingest
from ecgscale.data.store import Store, StoreError, records_of


@pytest.fixture(scope="module")
def two_sources(tmp_path_factory):
    root = tmp_path_factory.mktemp("store")
    for name, sites in (("a", {"code": 700}), ("b", {"noisy": 300, "ptbxl_like": 200})):
        ingest(
            "synthetic",
            "",
            root,
            name=name,
            progress=False,
            workers=1,
            fs=100.0,
            n_samples=300,
            options={"sites": sites, "n_samples": 300, "chunk": 100, "seed": 1},
        )
    return root


def test_sources_in_commit_order_with_global_rows(two_sources):
    store = Store(two_sources)
    assert store.sources == ["a", "b"] and len(store) == 1200
    assert list(store.meta["row"]) == list(range(1200))
    assert list(store.meta["source"].unique()) == ["a", "b"]
    assert len(store.info.sources[1].shards) == 5


def test_random_access_matches_sequential_and_float16_rounding(two_sources):
    store = Store(two_sources)
    everything = store.read(np.arange(len(store)))
    rows = np.random.default_rng(0).choice(len(store), size=64)
    np.testing.assert_array_equal(store.read(rows), everything[rows])
    assert everything.dtype == np.float32
    np.testing.assert_array_equal(everything, everything.astype(np.float16).astype(np.float32))
    with pytest.raises(IndexError):
        store.read(np.array([1200]))


def test_few_open_shards_at_a_time(two_sources, monkeypatch):
    monkeypatch.setattr(store_module, "_OPEN_SHARDS", 2)
    store = Store(two_sources)
    rows = np.arange(0, 1200, 37)
    np.testing.assert_array_equal(store.read(rows), Store(two_sources).read(rows))
    assert len(store._open) <= 3


def test_records_of_site_or_source(two_sources):
    meta = Store(two_sources).meta
    assert len(records_of(meta, "noisy")) == 300
    assert len(records_of(meta, "b")) == 500
    assert records_of(meta, "nowhere").empty


def test_not_a_store_and_foreign_format(tmp_path):
    with pytest.raises(StoreError, match="not a store"):
        Store(tmp_path)
    (tmp_path / "store.json").write_text(json.dumps({"format_version": 1, "fs": 100}))
    with pytest.raises(StoreError, match="format 1"):
        Store(tmp_path)


def test_missing_source_table_is_named(two_sources, tmp_path):
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(two_sources, copy)
    (copy / "b" / "meta.parquet").unlink()
    with pytest.raises(StoreError, match="b/meta.parquet: missing"):
        Store(copy)
