"""Ingest: parallel and inline give the same store, resume after SIGKILL, quarantine, limits."""

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from ecgscale import __version__
from ecgscale.data.fixtures import write_code15
from ecgscale.data.ingest import IngestError, SplitRule, ingest
from ecgscale.data.schema import LABELS, LEADS
from ecgscale.data.sources import base as sources
from ecgscale.data.sources.base import RawRecord, Rejection, Source, Unit, register_source
from ecgscale.data.store import Store, StoreError

READS: list[str] = []


class ScriptedSource(Source):
    """Records described by the ``records`` option: (id, what) pairs, in units of ``per_unit``."""

    kind = "scripted"
    extra_columns = {"note": "string"}

    def __init__(self, path, *, records: list[list], per_unit: int = 3) -> None:
        super().__init__(path, records=records, per_unit=per_unit)

    def units(self) -> list[Unit]:
        recs, k = self.options["records"], self.options["per_unit"]
        return [
            Unit(f"{i // k:03d}", len(recs[i : i + k]), recs[i : i + k])
            for i in range(0, len(recs), k)
        ]

    def read(self, unit: Unit) -> Iterator[RawRecord | Rejection]:
        READS.append(unit.key)
        for record_id, what in unit.payload:
            if what == "raise":
                raise OSError("disk on fire")
            if what == "reject":
                yield Rejection(record_id, f"{record_id}.dat", "truncated", "3 of 5000 samples")
                continue
            rng = np.random.default_rng(abs(hash(record_id)) % 2**32)
            x = np.cumsum(rng.normal(scale=0.05, size=(12, 1000)), axis=1)
            if what == "nan":
                x[3, 10] = np.nan
            yield RawRecord(
                record_id,
                x,
                100.0,
                list(LEADS),
                f"{record_id}.dat",
                patient_id=int(record_id.split("-")[0].removeprefix("p")),
                age=50.0,
                is_male=True,
                labels={"AF": 1},
                extras={"note": what},
            )

    def split(self, record: RawRecord) -> str | None:
        return "test" if record.record_id.startswith("p99") else None


@pytest.fixture(autouse=True, scope="module")
def _scripted_source():
    """``scripted`` is a reader of this module's tests only: registered while they run, so
    that other tests (``ecgscale data sources`` in the docs) see the real readers alone."""
    register_source(ScriptedSource)
    yield
    del sources._REGISTRY[ScriptedSource.kind]


def _scripted(store, records, **kw):
    kw.setdefault("max_reject", 1.0)
    return ingest(
        "scripted",
        ".",
        store,
        options={"records": records},
        fs=100.0,
        n_samples=1000,
        workers=1,
        progress=False,
        **kw,
    )


def _synthetic(store, workers, n=3000, **kw):
    return ingest(
        "synthetic",
        "",
        store,
        options={
            "sites": {"code": n, "noisy": 200},
            "fs": 100.0,
            "n_samples": 500,
            "seed": 3,
            "chunk": 400,
        },
        fs=100.0,
        n_samples=500,
        workers=workers,
        progress=False,
        max_reject=0.0,
        **kw,
    )


def _same_store(a: Path, b: Path) -> None:
    sa, sb = Store(a), Store(b)
    pd.testing.assert_frame_equal(sa.meta, sb.meta)
    pd.testing.assert_frame_equal(sa.quarantine(), sb.quarantine())
    assert sa.sources == sb.sources
    for ea, eb in zip(sa.info.sources, sb.info.sources, strict=True):
        assert (ea.shards, ea.n_records, ea.n_quarantined) == (
            eb.shards,
            eb.n_records,
            eb.n_quarantined,
        )
        for shard in ea.shards:
            pa, pb = a / ea.name / shard["file"], b / eb.name / shard["file"]
            assert pa.read_bytes() == pb.read_bytes(), shard
    np.testing.assert_array_equal(sa.read(np.arange(len(sa))), sb.read(np.arange(len(sb))))


def test_parallel_equals_inline(tmp_path):
    r1 = _synthetic(tmp_path / "one", workers=1, n=1200)
    r2 = _synthetic(tmp_path / "two", workers=2, n=1200)
    assert r1.n_records == r2.n_records == 1400 and r1.n_quarantined == 0
    _same_store(tmp_path / "one", tmp_path / "two")
    meta = Store(tmp_path / "two").meta
    assert set(meta["site"]) == {"code", "noisy"} and meta["record_id"].is_unique
    # patients never straddle splits
    assert (meta.groupby("patient_id")["split"].nunique() == 1).all()


def test_second_ingest_of_the_same_source_does_nothing(tmp_path):
    _synthetic(tmp_path / "s", workers=1, n=600)
    again = _synthetic(tmp_path / "s", workers=1, n=600)
    assert again.already_there and again.n_records == 800
    with pytest.raises(IngestError, match="other settings"):
        _synthetic(tmp_path / "s", workers=1, n=700)


def test_store_form_must_match(tmp_path):
    _synthetic(tmp_path / "s", workers=1, n=100)
    with pytest.raises(StoreError, match="500 samples"):
        ingest(
            "synthetic",
            "",
            tmp_path / "s",
            name="other",
            options={"sites": {"code": 10}, "n_samples": 1000},
            fs=100.0,
            n_samples=1000,
            progress=False,
        )


def test_quarantine_reasons_and_nothing_valid_dropped(tmp_path):
    records = [
        ["p1-a", "good"],
        ["p1-b", "reject"],
        ["p2-a", "nan"],
        ["p3-a", "good"],
        ["p3-a", "good"],
        ["p99-a", "good"],
        ["p4-a", "good"],
    ]
    report = _scripted(tmp_path / "s", records)
    store = Store(tmp_path / "s")
    assert list(store.meta["record_id"]) == ["p1-a", "p3-a", "p99-a", "p4-a"]
    q = store.quarantine().set_index("record_id")
    assert q.loc["p1-b", "reason"] == "truncated" and q.loc["p1-b", "file"] == "p1-b.dat"
    assert q.loc["p2-a", "reason"] == "nan" and "aVR" in q.loc["p2-a", "detail"]
    assert q.loc["p3-a", "reason"] == "duplicate"
    assert report.reasons == {"truncated": 1, "nan": 1, "duplicate": 1}
    meta = store.meta.set_index("record_id")
    assert meta.loc["p99-a", "split"] == "test"  # the source's own split wins
    assert (meta["AF"] == 1).all() and (meta[[c for c in LABELS if c != "AF"]] == -1).all().all()
    assert list(meta["note"]) == ["good"] * 4 and meta["duration_s"].eq(10.0).all()
    assert store.made_by(store.sources[0]) == {"ecgscale": __version__}  # which code read them


def test_too_many_rejections_fail_loudly_then_commit_without_rereading(tmp_path):
    records = [[f"p{i}-a", "reject" if i % 2 else "good"] for i in range(12)]
    READS.clear()
    with pytest.raises(
        IngestError, match=r"6 of 12 records rejected \(50.0% > --max-reject 5%\): truncated 6"
    ):
        _scripted(tmp_path / "s", records, max_reject=0.05)
    assert Store(tmp_path / "s").sources == []  # nothing committed
    assert len(READS) == 4
    report = _scripted(tmp_path / "s", records, max_reject=0.6)
    assert len(READS) == 4 and report.units_resumed == 4  # committed from the finished units
    assert report.n_records == 6 and report.n_quarantined == 6


def test_a_reader_that_raises_keeps_what_it_read(tmp_path):
    records = [["p1-a", "good"], ["p2-a", "raise"], ["p3-a", "good"], ["p4-a", "good"]]
    report = _scripted(tmp_path / "s", records)
    store = Store(tmp_path / "s")
    assert list(store.meta["record_id"]) == ["p1-a", "p4-a"]
    q = store.quarantine()
    assert q["reason"].tolist() == ["unreadable"] and "disk on fire" in q["detail"].iloc[0]
    assert q["record_id"].iloc[0] == "unit:000" and report.n_quarantined == 2  # 2 not read
    # over --max-reject, the count of rejected records says that one row stood for several
    with pytest.raises(IngestError, match=r"2 of 4 records rejected .*: unreadable 1 \(of them"):
        _scripted(tmp_path / "t", records, max_reject=0.1)


def test_unfinished_ingest_with_other_settings_is_not_mixed(tmp_path):
    records = [[f"p{i}-a", "reject"] for i in range(6)]
    with pytest.raises(IngestError):
        _scripted(tmp_path / "s", records, max_reject=0.1)
    with pytest.raises(IngestError, match="--restart"):
        _scripted(tmp_path / "s", records[:3], max_reject=0.1)
    assert _scripted(tmp_path / "s", records[:3], restart=True).n_quarantined == 3


SYNTHETIC_ARGS = [
    "synthetic",
    ".",
    "-o",
    "sites={code: 4000}",
    "-o",
    "chunk=500",
    "-o",
    "fs=100",
    "-o",
    "n_samples=500",
    "-o",
    "seed=5",
]


@pytest.fixture(scope="module")
def code15_folder(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("code15")
    write_code15(folder, 2400, 2, seed=9)
    return folder


def _ingest_cmd(store: Path, source: list[str]) -> list[str]:
    return [
        sys.executable,
        "-m",
        "ecgscale",
        "data",
        "ingest",
        *source,
        "--store",
        str(store),
        "--fs",
        "100",
        "--n-samples",
        "500",
        "--workers",
        "2",
        "--quiet",
    ]


# code15 in the default run; the synthetic source goes through the same units and resume
@pytest.mark.parametrize("kind", [pytest.param("synthetic", marks=pytest.mark.slow), "code15"])
def test_sigkill_halfway_then_resume_equals_uninterrupted(tmp_path, kind, request):
    if kind == "code15":
        folder = request.getfixturevalue("code15_folder")
        source, n_units, n = ["code15", str(folder), "-o", "unit_size=300"], 8, 2400
    else:
        source, n_units, n = SYNTHETIC_ARGS, 8, 4000
    ref = subprocess.run(
        _ingest_cmd(tmp_path / "ref", source), capture_output=True, text=True, cwd=tmp_path
    )
    assert ref.returncode == 0, ref.stderr
    units = tmp_path / "cut" / kind / "units"
    proc = subprocess.Popen(
        _ingest_cmd(tmp_path / "cut", source),
        cwd=tmp_path,
        start_new_session=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.time() + 120
    while time.time() < deadline and len(list(units.glob("*.done.json"))) < 2:
        time.sleep(0.02)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    done = len(list(units.glob("*.done.json")))
    assert 2 <= done < n_units, done  # killed halfway
    assert Store(tmp_path / "cut").sources == []
    again = subprocess.run(
        _ingest_cmd(tmp_path / "cut", source), capture_output=True, text=True, cwd=tmp_path
    )
    assert again.returncode == 0, again.stderr
    assert "units kept from an earlier run" in again.stdout
    _same_store(tmp_path / "ref", tmp_path / "cut")
    stores = [json.loads((tmp_path / d / "store.json").read_text()) for d in ("ref", "cut")]
    assert stores[0]["sources"][0]["n_records"] == stores[1]["sources"][0]["n_records"] == n


def test_cli_errors_are_one_line(tmp_path):
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "ecgscale",
            "data",
            "ingest",
            "nosuch",
            str(tmp_path),
            "--store",
            str(tmp_path / "s"),
        ],
        capture_output=True,
        text=True,
    )
    assert out.returncode == 1 and "Traceback" not in out.stderr
    assert (
        out.stderr.strip().splitlines() == [out.stderr.strip().splitlines()[0]]
        and "unknown source kind 'nosuch'" in out.stderr
    )


def test_split_rule_changes_the_split(tmp_path):
    a = _synthetic(tmp_path / "a", workers=1, n=1000)
    b = _synthetic(tmp_path / "b", workers=1, n=1000, split=SplitRule(val=0.3, test=0.3))
    assert a.n_records == b.n_records
    share = Store(tmp_path / "b").meta["split"].value_counts(normalize=True)
    assert 0.2 < share["val"] < 0.4 and 0.2 < share["test"] < 0.4
