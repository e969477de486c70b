"""CODE-15% and CODE-test readers on generated files of the real layouts (and CODE-test's real
labels): joins, padding, streaming, and every corruption as a named rejection."""

import math
import shutil
from pathlib import Path

import h5py
import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ecgscale.data.fixtures import write_code15, write_code_test_tracings
from ecgscale.data.schema import LABELS
from ecgscale.data.sources import RawRecord, Rejection, SourceError, create_source, list_sources
from ecgscale.data.sources.code15 import READ_ROWS, Code15Source, strip_zero_padding
from ecgscale.data.sources.codetest import CodeTestSource

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"  # as in conftest

CODE_TEST = "code-test-labels"


def _read_all(source) -> list:
    return [item for unit in source.units() for item in source.read(unit)]


def _split(items: list) -> tuple[dict[str, RawRecord], list[Rejection]]:
    records = {r.record_id: r for r in items if isinstance(r, RawRecord)}
    return records, [r for r in items if isinstance(r, Rejection)]


@pytest.fixture(scope="module")
def code15(tmp_path_factory) -> tuple[Path, pd.DataFrame]:
    """A generated CODE-15% folder: 300 exams in 2 parts, and its exams table."""
    folder = tmp_path_factory.mktemp("code15")
    return folder, write_code15(folder, 300, 2, seed=7).set_index("exam_id")


@pytest.fixture(scope="module")
def small_template(tmp_path_factory) -> tuple[Path, pd.DataFrame]:
    folder = tmp_path_factory.mktemp("small")
    return folder, write_code15(folder, 40, 2, seed=1).set_index("exam_id")


@pytest.fixture
def small(small_template, tmp_path) -> tuple[Path, pd.DataFrame]:
    """A fresh copy of a CODE-15% folder of 40 exams in 2 parts, for corrupting."""
    folder = shutil.copytree(small_template[0], tmp_path / "code15")
    return folder, small_template[1]


def test_readers_are_registered(code15):
    assert {"code15", "codetest"} <= set(list_sources())
    source = create_source("code15", code15[0], unit_size=100)
    assert isinstance(source, Code15Source)
    assert source.settings()["options"] == {"unit_size": 100}


def test_code15_reads_every_exam_joined_to_exams_csv(code15):
    folder, exams = code15
    records, rejections = _split(_read_all(Code15Source(folder, unit_size=64)))
    assert rejections == []
    assert set(records) == {str(i) for i in exams.index}  # the padding rows are skipped
    for exam_id, row in exams.iterrows():
        r = records[str(exam_id)]
        assert r.labels == {label: int(row[label]) for label in LABELS}
        assert (r.age, r.is_male, r.patient_id) == (row["age"], row["is_male"], row["patient_id"])
        death = None if pd.isna(row["death"]) else bool(row["death"])
        assert r.extras["death"] == death and r.extras["exam_id"] == exam_id
        assert r.extras["timey"] == row["timey"] or math.isnan(r.extras["timey"])
        assert r.file == r.extras["trace_file"] == row["trace_file"]
        assert (r.fs, r.units, r.leads[:4]) == (400.0, "mV", ["DI", "DII", "DIII", "AVR"])
        assert r.signal.shape == (12, round(400 * row["duration_s"]))  # 7 s -> 2800 samples


def test_code15_parts_keep_the_real_layout(code15):
    folder, exams = code15
    with h5py.File(folder / "exams_part1.hdf5", "r") as f:
        n = int((exams["trace_file"] == "exams_part1.hdf5").sum())
        assert f["tracings"].shape == (n + 1, 4096, 12) and f["tracings"].dtype == np.float32
        assert f["exam_id"].dtype == np.int64 and f["exam_id"][-1] == 0
        assert not f["tracings"][-1].any()
        seven = np.flatnonzero(exams.loc[f["exam_id"][:-1], "duration_s"].to_numpy() == 7.0)[0]
        tracing = f["tracings"][seven]
    assert not tracing[:648].any() and not tracing[-648:].any() and tracing[648].any()


def test_code15_units_and_reads_are_deterministic(code15):
    source = Code15Source(code15[0], unit_size=100)
    units = source.units()
    assert [u.key for u in units] == [
        "exams_part0-0000000",
        "exams_part0-0000100",
        "exams_part1-0000000",
        "exams_part1-0000100",
    ]
    assert sum(u.n for u in units) == 300
    first, again = (
        list(source.read(units[2])),
        list(Code15Source(code15[0], unit_size=100).read(units[2])),
    )
    assert [r.record_id for r in first] == [r.record_id for r in again]
    assert all(np.array_equal(a.signal, b.signal) for a, b in zip(first, again, strict=True))


def test_code15_streams_contiguous_blocks_of_a_unit(code15, monkeypatch):
    """units() reads no tracing; read(unit) reads only contiguous slices of its own rows."""
    calls = []
    getitem = h5py.Dataset.__getitem__

    def spy(self, args, *more, **kwargs):
        calls.append((self.name, args))
        return getitem(self, args, *more, **kwargs)

    monkeypatch.setattr(h5py.Dataset, "__getitem__", spy)
    source = Code15Source(code15[0], unit_size=150)
    unit = source.units()[0]
    assert calls and all(name == "/exam_id" for name, _ in calls)
    calls.clear()
    assert len(list(source.read(unit))) == unit.n
    slices = [args for name, args in calls if name == "/tracings"]
    assert len(slices) == math.ceil(150 / READ_ROWS)
    start, stop = unit.payload.start, unit.payload.stop
    for s in slices:
        assert isinstance(s, slice) and s.step is None
        assert start <= s.start < s.stop <= stop and s.stop - s.start <= READ_ROWS


@settings(max_examples=60, deadline=None)
@given(
    left=st.integers(0, 700),
    right=st.integers(0, 700),
    length=st.integers(1, 300),
    gap=st.integers(0, 5),
    seed=st.integers(0, 2**16),
)
def test_strip_zero_padding_recovers_the_recording(left, right, length, gap, seed):
    signal = np.random.default_rng(seed).normal(size=(length, 12)).astype(np.float32)
    signal[length // 2 : length // 2 + gap] = 0.0  # zeros inside a recording stay
    signal[0] = signal[-1] = 1.0
    padded = np.concatenate([np.zeros((left, 12)), signal, np.zeros((right, 12))])
    np.testing.assert_array_equal(strip_zero_padding(padded), signal)


def test_strip_zero_padding_keeps_an_all_zero_tracing_whole():
    assert strip_zero_padding(np.zeros((4096, 12))).shape == (4096, 12)


def test_code15_part_without_exam_id(small):
    folder, exams = small
    with h5py.File(folder / "exams_part1.hdf5", "r+") as f:
        del f["exam_id"]
        n_rows = f["tracings"].shape[0]
    source = Code15Source(folder)
    records, rejections = _split(_read_all(source))
    assert set(records) == {str(i) for i in exams.index[exams["trace_file"] == "exams_part0.hdf5"]}
    assert [r.record_id for r in rejections] == [f"exams_part1.hdf5#{i}" for i in range(n_rows)]
    assert {r.reason for r in rejections} == {"missing_exam_id"}
    assert source.scan_rejections() == []


def test_code15_exam_without_csv_row_and_row_without_tracing(small):
    folder, exams = small
    table = pd.read_csv(folder / "exams.csv")
    dropped = int(table["exam_id"][table["trace_file"] == "exams_part0.hdf5"].iloc[3])
    extra = table.iloc[:2].copy()
    extra["exam_id"] = [99, 98]
    extra["trace_file"] = ["exams_part1.hdf5", "exams_part7.hdf5"]  # part 7 was not downloaded
    pd.concat([table[table["exam_id"] != dropped], extra]).to_csv(folder / "exams.csv", index=False)
    source = Code15Source(folder)
    records, rejections = _split(_read_all(source))
    assert len(records) == len(exams) - 1
    assert [(r.record_id, r.reason) for r in rejections] == [(str(dropped), "no_labels")]
    assert [(r.record_id, r.reason) for r in source.scan_rejections()] == [("99", "no_recording")]


@pytest.mark.parametrize("damage", ["truncate", "garbage"])
def test_code15_unreadable_part_rejects_its_exams(small, damage):
    folder, exams = small
    part = folder / "exams_part1.hdf5"
    data = part.read_bytes()
    part.write_bytes(data[: len(data) // 2] if damage == "truncate" else b"\x89HDF junk" * 99)
    (folder / "exams_part2.hdf5").write_bytes(b"not hdf5")  # a part exams.csv does not name
    source = Code15Source(folder)
    assert [u.key for u in source.units()][-2:] == [
        "exams_part1-unreadable",
        "exams_part2-unreadable",
    ]
    records, rejections = _split(_read_all(source))
    in_part1 = exams.index[exams["trace_file"] == "exams_part1.hdf5"]
    assert set(records) == {str(i) for i in exams.index.difference(in_part1)}
    assert [r.record_id for r in rejections] == [*map(str, in_part1), "exams_part2.hdf5"]
    assert {r.reason for r in rejections} == {"unreadable"}
    assert all(r.detail for r in rejections)


def test_code15_corrupt_chunk_rejects_only_its_row(small):
    folder, exams = small
    part = folder / "exams_part0.hdf5"
    with h5py.File(part, "r") as f:
        tracings, ids = f["tracings"][:], f["exam_id"][:]
    with h5py.File(part, "w") as f:
        f.create_dataset("tracings", data=tracings, chunks=(1, 4096, 12), compression="gzip")
        f.create_dataset("exam_id", data=ids)
    with h5py.File(part, "r") as f:
        chunk = f["tracings"].id.get_chunk_info_by_coord((5, 0, 0))
    with open(part, "r+b") as raw:
        raw.seek(chunk.byte_offset)
        raw.write(b"\xff" * chunk.size)
    records, rejections = _split(_read_all(Code15Source(folder)))
    assert [(r.record_id, r.reason) for r in rejections] == [(str(ids[5]), "unreadable")]
    assert len(records) == len(exams) - 1


def test_code15_duplicate_exam_id(small):
    folder, exams = small
    with h5py.File(folder / "exams_part0.hdf5", "r") as f:
        first = int(f["exam_id"][0])
    with h5py.File(folder / "exams_part1.hdf5", "r+") as f:
        replaced = int(f["exam_id"][0])
        f["exam_id"][0] = first
    source = Code15Source(folder)
    records, rejections = _split(_read_all(source))
    assert [(r.record_id, r.reason) for r in rejections] == [(str(first), "duplicate")]
    assert [(r.record_id, r.reason) for r in source.scan_rejections()] == [
        (str(replaced), "no_recording")
    ]
    assert len(records) == len(exams) - 1


def test_code15_not_a_code15_folder(tmp_path):
    with pytest.raises(SourceError, match="not found"):
        Code15Source(tmp_path / "absent").units()
    with pytest.raises(SourceError, match=r"no exams_part\{k\}.hdf5"):
        Code15Source(tmp_path).units()
    write_code15(tmp_path, 2, 1, seed=0)
    (tmp_path / "exams.csv").unlink()
    with pytest.raises(SourceError, match="no exams.csv"):
        Code15Source(tmp_path).units()


# --- CODE-test -------------------------------------------------------------------------------


@pytest.fixture
def labels_dir(shared_data) -> Path:
    """The real CODE-test labels folder (skips when ``../shared/data`` is absent)."""
    return shared_data / CODE_TEST


@pytest.fixture(scope="module")
def code_test_tracings(tmp_path_factory) -> Path:
    """A generated ``ecg_tracings.hdf5`` with one row per row of the real CODE-test labels."""
    labels = SHARED_DATA / CODE_TEST
    if not labels.is_dir():
        pytest.skip(f"real CODE-test labels not found at {labels}")
    path = tmp_path_factory.mktemp("codetest") / "ecg_tracings.hdf5"
    write_code_test_tracings(path, labels, seed=2)
    return path


def test_codetest_joins_the_real_labels_by_row(labels_dir, code_test_tracings):
    source = CodeTestSource(labels_dir, tracings=code_test_tracings)
    items = _read_all(source)
    gold = pd.read_csv(labels_dir / "annotations" / "gold_standard.csv")
    attributes = pd.read_csv(labels_dir / "attributes.csv")
    assert len(gold) == 827 and all(isinstance(r, RawRecord) for r in items)
    assert [r.record_id for r in items] == [f"codetest-{i:03d}" for i in range(827)]
    counts = {label: sum(r.labels[label] for r in items) for label in LABELS}
    assert counts == gold[list(LABELS)].sum().to_dict()
    for i, r in enumerate(items):
        assert r.labels == gold.iloc[i].to_dict()
        assert r.age == attributes["age"][i] and r.is_male == (attributes["sex"][i] == "M")
        assert source.split(r) == "test" and r.fs == 400.0 and r.units == "mV"
    assert len({r.patient_id for r in items}) == 827
    assert {r.signal.shape[1] for r in items} == {2800, 4000}
    assert source.scan_rejections() == []


def test_codetest_other_annotator(labels_dir, code_test_tracings):
    source = CodeTestSource(labels_dir, annotator="cardiologist1", tracings=code_test_tracings)
    expected = pd.read_csv(labels_dir / "annotations" / "cardiologist1.csv")
    unit = source.units()[0]
    first = next(iter(source.read(unit)))
    assert first.labels == expected.iloc[0].to_dict()
    assert source.settings()["options"]["annotator"] == "cardiologist1"
    with pytest.raises(SourceError, match="gold_standard"):
        CodeTestSource(labels_dir, annotator="nobody", tracings=code_test_tracings).units()
    with pytest.raises(SourceError, match="tracings not found"):
        CodeTestSource(labels_dir).units()


def _labels_folder(real: Path, folder: Path, n: int) -> Path:
    """A CODE-test labels folder with the first ``n`` rows of the ``real`` one."""
    (folder / "annotations").mkdir(parents=True)
    pd.read_csv(real / "annotations" / "gold_standard.csv").iloc[:n].to_csv(
        folder / "annotations" / "gold_standard.csv", index=False
    )
    pd.read_csv(real / "attributes.csv").iloc[:n].to_csv(folder / "attributes.csv", index=False)
    return folder


def _tracings(source: Path, path: Path, n: int) -> Path:
    with h5py.File(source, "r") as f, h5py.File(path, "w") as out:
        out.create_dataset("tracings", data=f["tracings"][:n])
    return path


def test_codetest_row_count_mismatch(labels_dir, code_test_tracings, tmp_path):
    with h5py.File(tmp_path / "few.hdf5", "w") as f:
        f.create_dataset("tracings", (820, 4096, 12), np.float32)
    source = CodeTestSource(labels_dir, tracings=tmp_path / "few.hdf5")
    assert sum(unit.n for unit in source.units()) == 820
    missing = source.scan_rejections()
    assert [r.record_id for r in missing] == [f"codetest-{i}" for i in range(820, 827)]
    assert {r.reason for r in missing} == {"no_recording"}

    labels = _labels_folder(labels_dir, tmp_path / "labels", 3)
    source = CodeTestSource(labels, tracings=_tracings(code_test_tracings, tmp_path / "t.h5", 5))
    records, rejections = _split(_read_all(source))
    assert sorted(records) == ["codetest-000", "codetest-001", "codetest-002"]
    assert [(r.record_id, r.reason) for r in rejections] == [
        ("codetest-003", "no_labels"),
        ("codetest-004", "no_labels"),
    ]


def test_codetest_unreadable_tracings(labels_dir, tmp_path):
    (tmp_path / "ecg_tracings.hdf5").write_bytes(b"\x89HDF\r\n\x1a\n" + b"\0" * 100)
    source = CodeTestSource(labels_dir, tracings=tmp_path / "ecg_tracings.hdf5")
    items = _read_all(source)
    assert len(items) == 827 and {r.reason for r in items} == {"unreadable"}
    assert items[0].record_id == "codetest-000"


def test_code15_csv_without_optional_columns(small):
    folder, exams = small
    table = pd.read_csv(folder / "exams.csv")
    table[["exam_id", "age", "trace_file"]].to_csv(folder / "exams.csv", index=False)
    records, rejections = _split(_read_all(Code15Source(folder)))
    assert rejections == [] and len(records) == len(exams)
    r = next(iter(records.values()))
    assert r.labels == dict.fromkeys(LABELS, -1) and r.age == exams.loc[int(r.record_id), "age"]
    assert (r.patient_id, r.is_male, r.extras["death"]) == (None, None, None)
    assert math.isnan(r.extras["timey"])
