"""WFDB-based readers (PTB-XL, PhysioNet/CinC 2020/2021, generic WFDB folder) on real samples."""

from __future__ import annotations

import ast
import functools
import math
import pickle
import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import scipy.io
import wfdb
from click.testing import CliRunner
from hypothesis import given
from hypothesis import strategies as st

from ecgscale.cli import main
from ecgscale.data.schema import LABELS
from ecgscale.data.sources.base import RawRecord, Rejection, Source, SourceError
from ecgscale.data.sources.cinc import (
    SNOMED_TO_LABEL,
    Cinc2020Source,
    CincSource,
    dx_labels,
    parse_age,
    parse_dx,
    parse_header_sex,
    site_of,
)
from ecgscale.data.sources.ptbxl import PtbxlSource, fold_split, ptbxl_age
from ecgscale.data.sources.wfdb_common import parse_header
from ecgscale.data.sources.wfdb_folder import WfdbFolderSource

README_CODE_COUNTS = {"1dAVb": 10, "RBBB": 8, "LBBB": 8, "SB": 9, "AF": 13, "ST": 5}
README_SUPERCLASS_COUNTS = {"NORM": 297, "MI": 88, "STTC": 109, "HYP": 45, "CD": 88}
"""The README's superclass numbers count diagnostic statements (IMI + ASMI is 2 for MI)."""
SUPERCLASS_RECORDS = {"NORM": 297, "MI": 73, "STTC": 96, "HYP": 40, "CD": 78}
"""Records with at least one diagnostic statement of the class (what the columns store)."""
CINC2020_QUIRK = ["E00009", "E00015", "E00018", "E00793"]


def read_all(source: Source) -> tuple[list[RawRecord], list[Rejection]]:
    """Every record of a source, split into records and rejections (read and scan)."""
    out = [item for unit in source.units() for item in source.read(unit)]
    rejected = [r for r in out if isinstance(r, Rejection)] + source.scan_rejections()
    return [r for r in out if isinstance(r, RawRecord)], rejected


@functools.cache
def _read_cached(kind: type[Source], path: Path, **options) -> tuple[list, list]:
    return read_all(kind(path, **options))


def reasons(rejections: list[Rejection]) -> dict[str, str]:
    return {r.record_id: r.reason for r in rejections}


def lead_ii_ptp(records: list[RawRecord]) -> np.ndarray:
    return np.array([np.ptp(r.signal[[n.upper() for n in r.leads].index("II")]) for r in records])


# --- PTB-XL ---------------------------------------------------------------------------------


@pytest.mark.parametrize("rate", [100, 500])
def test_ptbxl_reads_all_records_with_readme_label_counts(shared_data: Path, rate: int) -> None:
    root = shared_data / "ptbxl-sample"
    records, rejected = _read_cached(PtbxlSource, root, rate=rate)
    assert rejected == []
    assert len(records) == 500
    suffix = "_lr" if rate == 100 else "_hr"
    assert records[0].record_id == f"00001{suffix}"
    assert all(r.fs == rate and r.signal.shape == (12, 10 * rate) for r in records)
    assert records[0].leads == [
        "I",
        "II",
        "III",
        "AVR",
        "AVL",
        "AVF",
        *[f"V{i}" for i in range(1, 7)],
    ]
    assert {r.units for r in records} == {"mV"}
    assert {r.site for r in records} == {"PTB-XL"}
    assert {label: sum(r.labels[label] for r in records) for label in LABELS} == README_CODE_COUNTS
    stored = {name: sum(r.extras[name] for r in records) for name in SUPERCLASS_RECORDS}
    assert stored == SUPERCLASS_RECORDS
    assert _statement_counts(root, [r.extras["scp_codes"] for r in records]) == (
        README_SUPERCLASS_COUNTS
    )

    table = pd.read_csv(root / "ptbxl_database.csv").set_index("ecg_id")
    folds = [r.extras["strat_fold"] for r in records]
    assert folds == table.loc[[r.extras["ecg_id"] for r in records], "strat_fold"].tolist()
    source = PtbxlSource(root, rate=rate)
    splits = Counter(source.split(r) for r in records)
    assert splits == {
        "train": sum(f <= 8 for f in folds),
        "val": folds.count(9),
        "test": folds.count(10),
    }
    assert len({r.patient_id for r in records}) == 466
    first = records[0]
    assert (first.patient_id, first.age, first.is_male) == (15709, 56.0, False)  # sex 1: female
    assert np.mean((lead_ii_ptp(records) > 0.3) & (lead_ii_ptp(records) < 10)) > 0.95


def _statement_counts(root: Path, scp_codes: list[str]) -> dict[str, int]:
    statements = pd.read_csv(root / "scp_statements.csv", index_col=0)
    diagnostic = statements.loc[statements["diagnostic"] == 1, "diagnostic_class"]
    found = Counter(
        diagnostic[c] for text in scp_codes for c in ast.literal_eval(text) if c in diagnostic
    )
    return dict(found)


def test_ptbxl_both_rates_are_the_same_recordings(shared_data: Path) -> None:
    root = shared_data / "ptbxl-sample"
    low, _ = _read_cached(PtbxlSource, root, rate=100)
    high, _ = _read_cached(PtbxlSource, root, rate=500)
    assert [r.extras["ecg_id"] for r in low] == [r.extras["ecg_id"] for r in high]
    ratio = np.median(lead_ii_ptp(high) / lead_ii_ptp(low))
    assert 0.8 < ratio < 1.25


@pytest.mark.parametrize("rate", [100, 500])
def test_ptbxl_signals_equal_wfdb_rdrecord(shared_data: Path, rate: int) -> None:
    """The numpy format-16 path gives what ``wfdb.rdrecord(physical=True)`` gives."""
    root = shared_data / "ptbxl-sample"
    records, _ = _read_cached(PtbxlSource, root, rate=rate)
    for r in records[::50]:
        ref = wfdb.rdrecord(str(root / r.file.removesuffix(".hea")), physical=True)
        np.testing.assert_allclose(r.signal, ref.p_signal.T, rtol=1e-6, atol=1e-6)
        assert (r.fs, r.leads, r.units) == (ref.fs, ref.sig_name, ref.units[0])


def test_invalid_format16_samples_are_nan(shared_data: Path, tmp_path: Path) -> None:
    root = _wfdb_folder(shared_data, tmp_path)
    dat = root / "a" / "00001_lr.dat"
    data = bytearray(dat.read_bytes())
    data[2:4] = (-32768).to_bytes(2, "little", signed=True)  # lead II, first sample
    dat.write_bytes(bytes(data))
    record = next(WfdbFolderSource(root).read(WfdbFolderSource(root).units()[0]))
    ref = wfdb.rdrecord(str(dat.with_suffix("")), physical=True).p_signal.T
    assert np.isnan(record.signal[1, 0]) and np.isnan(ref[1, 0])
    np.testing.assert_allclose(record.signal, ref, rtol=1e-6, atol=1e-6)


def test_ptbxl_age_sex_and_folds() -> None:
    assert ptbxl_age(300.0) == 90.0
    assert ptbxl_age(56.0) == 56.0
    assert math.isnan(ptbxl_age(math.nan))
    assert [fold_split(f) for f in range(1, 11)] == ["train"] * 8 + ["val", "test"]


def _mini_ptbxl(shared_data: Path, tmp_path: Path, n: int = 6) -> Path:
    """The first ``n`` PTB-XL rows with their 100 Hz records copied into ``tmp_path``."""
    src = shared_data / "ptbxl-sample"
    root = tmp_path / "ptbxl"
    (root / "records100" / "00000").mkdir(parents=True)
    pd.read_csv(src / "ptbxl_database.csv").head(n).to_csv(root / "ptbxl_database.csv", index=False)
    shutil.copy(src / "scp_statements.csv", root)
    for i in range(1, n + 1):
        for ext in ("hea", "dat"):
            name = f"records100/00000/{i:05d}_lr.{ext}"
            shutil.copy(src / name, root / name)
    return root


def _edit_record_line(header: Path, old: str, new: str) -> None:
    lines = header.read_text().splitlines(keepends=True)
    lines[0] = lines[0].replace(old, new, 1)
    header.write_text("".join(lines))


def test_ptbxl_broken_records_become_rejections(shared_data: Path, tmp_path: Path) -> None:
    root = _mini_ptbxl(shared_data, tmp_path, n=7)
    folder = root / "records100" / "00000"
    dat = (folder / "00001_lr.dat").read_bytes()
    (folder / "00001_lr.dat").write_bytes(dat[: len(dat) // 3])  # truncated
    _edit_record_line(folder / "00002_lr.hea", " 12 ", " 11 ")  # wrong signal count
    _edit_record_line(folder / "00003_lr.hea", " 100 ", " 0 ")  # zero sampling rate
    (folder / "00004_lr.dat").unlink()  # header without signals
    (folder / "00005_lr.hea").write_text("this is not a header\n")
    for ext in ("hea", "dat"):
        (folder / f"00006_lr.{ext}").unlink()  # a CSV row without recording

    source = PtbxlSource(root, rate=100)
    records, rejected = read_all(source)
    assert [r.record_id for r in records] == ["00007_lr"]
    assert reasons(rejected) == {
        "00001_lr": "truncated",
        "00002_lr": "header_mismatch",
        "00003_lr": "impossible_fs",
        "00004_lr": "unreadable",
        "00005_lr": "unreadable",
        "00006_lr": "no_recording",
    }
    assert sum(u.n for u in source.units()) == 6


def test_ptbxl_folder_errors(shared_data: Path, tmp_path: Path) -> None:
    with pytest.raises(SourceError, match=r"ptbxl_database\.csv"):
        PtbxlSource(tmp_path).units()
    root = _mini_ptbxl(shared_data, tmp_path, n=1)
    (root / "scp_statements.csv").unlink()
    with pytest.raises(SourceError, match=str(root)):
        PtbxlSource(root).units()
    with pytest.raises(ValueError, match="100 or 500"):
        PtbxlSource(root, rate=250)
    with pytest.raises(TypeError):
        PtbxlSource(root, sampling=100)
    assert PtbxlSource(root, rate=100).settings()["options"] == {"rate": 100}


def test_ptbxl_units_are_deterministic_batches(shared_data: Path) -> None:
    source = PtbxlSource(shared_data / "ptbxl-sample", rate=100)
    units = source.units()
    assert units == PtbxlSource(shared_data / "ptbxl-sample", rate=100).units()
    assert [u.key for u in units[:2]] == ["00000", "00001"]
    assert [u.n for u in units] == [64] * 7 + [52]
    assert repr(pickle.loads(pickle.dumps(units))) == repr(units)


# --- PhysioNet/CinC Challenge ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("kind", "folder", "n", "sites"),
    [
        (Cinc2020Source, "cinc2020-sample", 28, {"CPSC-Extra": 22, "Georgia": 4, "PTB-XL": 2}),
        (
            CincSource,
            "cinc2021-sample",
            127,
            {"CPSC": 4, "Georgia": 31, "PTB-XL": 27, "Chapman-Ningbo": 65},
        ),
    ],
)
def test_cinc_reads_every_sample_record(
    shared_data: Path, kind: type[Source], folder: str, n: int, sites: dict[str, int]
) -> None:
    records, rejected = _read_cached(kind, shared_data / folder)
    assert rejected == []
    assert len(records) == n
    assert Counter(r.site for r in records) == sites
    assert all(r.fs == 500 and r.signal.shape[0] == 12 and r.units == "mV" for r in records)
    assert all(r.leads[:3] == ["I", "II", "III"] and r.leads[-1] == "V6" for r in records)
    assert all(r.labels[label] in (0, 1) for r in records for label in LABELS)
    assert all(r.age >= 0 and r.is_male is not None for r in records)
    ptp = lead_ii_ptp(records)
    assert np.mean((ptp > 0.3) & (ptp < 10)) > 0.9


def test_cinc_record_lengths_and_quirk_headers(shared_data: Path) -> None:
    records, _ = _read_cached(Cinc2020Source, shared_data / "cinc2020-sample")
    by_id = {r.record_id: r for r in records}
    assert set(CINC2020_QUIRK) <= set(by_id)
    assert by_id["Q0017"].signal.shape == (12, 28934)  # 57.9 s
    assert by_id["Q0010"].signal.shape == (12, 6000)
    assert by_id["E00009"].file == "E00009.hea"
    records21, _ = _read_cached(CincSource, shared_data / "cinc2021-sample")
    assert {r.file.split("/")[0] for r in records21} == {"training", "twelve_leads"}
    assert sum(r.file.startswith("training/") for r in records21) == 77


# Labels, age and sex read by hand from the headers.
KNOWN = {
    "E00009": (76.0, True, {"ST"}, "428750005,39732003,427084000"),
    "E00018": (82.0, False, {"SB"}, "445118002,426177001"),
    "Q0050": (63.0, True, {"1dAVb"}, "270492004,427172004,164865005"),
    "Q0077": (86.0, True, {"RBBB"}, "713426002,713427006,164867002,428750005,426627000"),
    "Q0033": (63.0, True, {"LBBB"}, "164873001,164909002,428750005"),
    "HR00599": (73.0, False, set(), "164865005,164947007,426783006"),
    "E05526": (73.0, True, {"1dAVb", "SB"}, "270492004,426177001,427393009"),
    "JS23847": (52.0, True, {"SB", "RBBB"}, "426177001,59118001"),
    "A1041": (66.0, True, {"AF", "LBBB"}, "164889003,164909002"),
}


def test_cinc_known_labels(shared_data: Path) -> None:
    records = _read_cached(Cinc2020Source, shared_data / "cinc2020-sample")[0]
    records += _read_cached(CincSource, shared_data / "cinc2021-sample")[0]
    by_id = {r.record_id: r for r in records}
    for record_id, (age, is_male, present, dx) in KNOWN.items():
        r = by_id[record_id]
        assert (r.age, r.is_male, r.extras["dx"]) == (age, is_male, dx), record_id
        assert r.labels == {label: int(label in present) for label in LABELS}, record_id


def test_cinc_signals_equal_wfdb_rdrecord(shared_data: Path) -> None:
    """Where ``wfdb`` can read a challenge header, it reads the same millivolts."""
    records, _ = _read_cached(CincSource, shared_data / "cinc2021-sample")
    for r in [r for r in records if r.site != "Georgia"][::10]:
        ref = wfdb.rdrecord(str(shared_data / "cinc2021-sample" / r.file.removesuffix(".hea")))
        np.testing.assert_allclose(r.signal, ref.p_signal.T, rtol=1e-6, atol=1e-6)


def test_cinc2020_gain_fix(shared_data: Path) -> None:
    fixed = {
        r.record_id: r for r in _read_cached(Cinc2020Source, shared_data / "cinc2020-sample")[0]
    }
    raw = {
        r.record_id: r
        for r in _read_cached(
            Cinc2020Source, shared_data / "cinc2020-sample", fix_2020_gains=False
        )[0]
    }
    for record_id, factor in [("E00009", 4.88), ("HR00599", 0.2), ("Q0001", 1.0)]:
        np.testing.assert_allclose(
            fixed[record_id].signal, raw[record_id].signal * factor, rtol=1e-5
        )
    georgia = [r for r in fixed.values() if r.site == "Georgia"]
    assert 0.3 < np.median(lead_ii_ptp(georgia)) < 3


def _cinc_copy(shared_data: Path, tmp_path: Path, names: list[str]) -> Path:
    root = tmp_path / "cinc"
    root.mkdir()
    for name in names:
        for ext in ("hea", "mat"):
            shutil.copy(shared_data / "cinc2020-sample" / f"{name}.{ext}", root)
    return root


def test_cinc_broken_records_become_rejections(shared_data: Path, tmp_path: Path) -> None:
    names = ["E00009", "E00015", "E00018", "E00793", "Q0001", "Q0010", "Q0012", "Q0017"]
    root = _cinc_copy(shared_data, tmp_path, names)
    mat = (root / "E00009.mat").read_bytes()
    (root / "E00009.mat").write_bytes(mat[: len(mat) // 2])  # truncated
    _edit_record_line(root / "E00015.hea", " 12 ", " 11 ")  # wrong signal count
    _edit_record_line(root / "E00018.hea", " 500 ", " 0 ")  # zero sampling rate
    (root / "E00793.mat").unlink()
    val = scipy.io.loadmat(root / "Q0001.mat")["val"]
    scipy.io.savemat(root / "Q0001.mat", {"val": val[:11]})  # .mat with 11 signals
    (root / "Q0010.hea").write_text("\x00\x01 garbage\n")
    lines = (root / "Q0012.hea").read_text().splitlines(keepends=True)
    (root / "Q0012.hea").write_text("".join(["Q0012 12 500\n", *lines[1:]]))  # no sample count

    records, rejected = read_all(Cinc2020Source(root))
    assert reasons(rejected) == {
        "E00009": "truncated",
        "E00015": "header_mismatch",
        "E00018": "impossible_fs",
        "E00793": "unreadable",
        "Q0001": "header_mismatch",
        "Q0010": "unreadable",
    }
    assert [(r.record_id, r.signal.shape) for r in records] == [
        ("Q0012", (12, 5000)),
        ("Q0017", (12, 28934)),
    ]


def test_cinc_folder_errors(tmp_path: Path) -> None:
    with pytest.raises(SourceError, match=r"\*\.hea"):
        CincSource(tmp_path).units()
    with pytest.raises(SourceError, match="not found"):
        Cinc2020Source(tmp_path / "absent").units()
    with pytest.raises(TypeError):
        CincSource(tmp_path, rate=500)


# --- header parsing (hypothesis) ------------------------------------------------------------

_codes = st.lists(st.sampled_from([*SNOMED_TO_LABEL, "164865005", "426783006", "10370003"]))


@given(
    name=st.sampled_from(["E00009", "E00009.mat", "Q0001", "JS00001"]),
    n_samples=st.integers(1, 100_000),
    fs=st.sampled_from([257, 500, 1000]),
    stamp=st.sampled_from(["", " 05-May-2020 14:50:55", " 14:50:55 05-May-2020", " 14:50:55"]),
)
def test_parse_header_record_line_variants(name: str, n_samples: int, fs: int, stamp: str) -> None:
    signal = f"{name.removesuffix('.mat')}.mat 16+24 1000/mV 16 0 -58 32720 0 I"
    head = parse_header(f"{name} 1 {fs} {n_samples}{stamp}\n{signal}\n")
    assert (head.n_sig, head.fs, head.n_samples) == (1, fs, n_samples)
    assert head.signals[0].gain == 1000 and head.signals[0].units == "mV"


@given(
    gain=st.sampled_from(["1000/mV", "1000/mv", "4880/mV", "1000.0(-3)/mV", "200", "0/mV"]),
    adc_zero=st.integers(-100, 100),
)
def test_parse_header_gain_field(gain: str, adc_zero: int) -> None:
    head = parse_header(f"X 1 500 10\nX.mat 16+24 {gain} 16 {adc_zero} 0 0 0 V1\n")
    spec = head.signals[0]
    expected_gain = {"200": 200.0, "0/mV": 200.0, "4880/mV": 4880.0}.get(gain, 1000.0)
    assert spec.gain == expected_gain
    assert spec.baseline == (-3 if "(" in gain else adc_zero)
    assert spec.units.lower() == "mv" and spec.name == "V1"


@given(
    age=st.one_of(st.integers(0, 110).map(str), st.floats(0, 110).map(str)),
    pad=st.sampled_from(["", " ", "  "]),
)
def test_parse_age_numbers(age: str, pad: str) -> None:
    assert parse_age(pad + age + pad) == float(age)


@pytest.mark.parametrize("text", ["NaN", "nan", "Unknown", "", None, "-1", "inf"])
def test_parse_age_missing(text: str | None) -> None:
    assert math.isnan(parse_age(text))


@given(
    sex=st.sampled_from(["Male", "Female", "M", "F", "male", "FEMALE", "Unknown", "", "NaN"]),
    pad=st.sampled_from(["", " ", "\t"]),
)
def test_parse_header_sex(sex: str, pad: str) -> None:
    expected = {"m": True, "male": True, "f": False, "female": False}.get(sex.lower())
    assert parse_header_sex(pad + sex + pad) is expected


@given(codes=_codes, sep=st.sampled_from([",", ", ", " ,"]))
def test_parse_dx_and_labels(codes: list[str], sep: str) -> None:
    assert parse_dx(sep.join(codes)) == codes
    labels = dx_labels(codes)
    if not codes:
        assert set(labels.values()) == {-1}
        return
    present = {SNOMED_TO_LABEL[c] for c in codes if c in SNOMED_TO_LABEL}
    assert labels == {label: int(label in present) for label in LABELS}


@given(
    age=st.sampled_from(["76", "NaN", "5"]),
    sex=st.sampled_from(["Male", "Female", "F"]),
    codes=_codes.filter(bool),
    hash_space=st.sampled_from(["#", "# "]),
)
def test_parse_header_comments(age: str, sex: str, codes: list[str], hash_space: str) -> None:
    text = (
        "E1.mat 1 500 10 05-May-2020 14:50:55\nE1.mat 16+24 1000/mV 16 0 0 0 0 I\n"
        f"{hash_space}Age: {age}\n{hash_space}Sex: {sex}\n{hash_space}Dx: {','.join(codes)}\n"
        "#Rx: Unknown\n"
    )
    comments = parse_header(text).comments
    assert (comments["age"], comments["sex"], parse_dx(comments["dx"])) == (age, sex, codes)


def test_site_of_prefixes() -> None:
    assert [site_of(x) for x in ["A0001", "Q0001", "E00009", "HR00001", "JS00001", "S0001"]] == [
        "CPSC",
        "CPSC-Extra",
        "Georgia",
        "PTB-XL",
        "Chapman-Ningbo",
        "PTB",
    ]
    assert site_of("I0001") == "INCART" and site_of("ZZ01") == "ZZ" and site_of("0001") is None


# --- generic WFDB folder --------------------------------------------------------------------


def _wfdb_folder(shared_data: Path, tmp_path: Path) -> Path:
    """Four PTB-XL 100 Hz records in nested folders."""
    root = tmp_path / "wfdb"
    for i, sub in zip(range(1, 5), ["a", "a", "b/c", "b/c"], strict=True):
        (root / sub).mkdir(parents=True, exist_ok=True)
        for ext in ("hea", "dat"):
            shutil.copy(shared_data / f"ptbxl-sample/records100/00000/{i:05d}_lr.{ext}", root / sub)
    return root


def test_wfdb_folder_with_labels_table(shared_data: Path, tmp_path: Path) -> None:
    root = _wfdb_folder(shared_data, tmp_path)
    table = tmp_path / "labels.csv"
    table.write_text(
        "record,afib,rbbb,pid,age,sex\n"
        "00001_lr,1,0,P-17,56,F\n"
        "00002_lr,0,yes,42,,male\n"
        "00003_lr,,false,42,37.5,\n"
        "09999_lr,0,0,7,50,M\n"
    )
    source = WfdbFolderSource(
        root,
        labels=table,
        label_map={"AF": "afib", "RBBB": "rbbb"},
        patient_column="pid",
        age_column="age",
        sex_column="sex",
    )
    records, rejected = read_all(source)
    assert {r.record_id: (r.reason, r.file) for r in rejected} == {
        "00004_lr": ("no_labels", "b/c/00004_lr.hea"),
        "09999_lr": ("no_recording", str(table)),
    }
    by_id = {r.record_id: r for r in records}
    assert sorted(by_id) == ["00001_lr", "00002_lr", "00003_lr"]
    unmapped = {"1dAVb": -1, "LBBB": -1, "SB": -1, "ST": -1}
    assert by_id["00001_lr"].labels == {**unmapped, "AF": 1, "RBBB": 0}
    assert by_id["00002_lr"].labels == {**unmapped, "AF": 0, "RBBB": 1}
    assert by_id["00003_lr"].labels == {**unmapped, "AF": -1, "RBBB": 0}
    assert [by_id[k].is_male for k in sorted(by_id)] == [False, True, None]
    assert by_id["00002_lr"].patient_id == by_id["00003_lr"].patient_id == 42
    assert isinstance(by_id["00001_lr"].patient_id, int)
    assert by_id["00003_lr"].age == 37.5 and math.isnan(by_id["00002_lr"].age)
    assert by_id["00003_lr"].file == "b/c/00003_lr.hea"
    assert all(r.fs == 100 and r.signal.shape == (12, 1000) and r.units == "mV" for r in records)
    assert source.settings()["options"]["labels"] == str(table.resolve())


def test_wfdb_folder_without_table_and_other_formats(shared_data: Path, tmp_path: Path) -> None:
    root = _wfdb_folder(shared_data, tmp_path)
    t = np.arange(2000) / 250
    lead_mv = np.stack([np.sin(2 * np.pi * t), 0.5 * np.cos(2 * np.pi * t)], axis=1)
    wfdb.wrsamp(
        "fmt212",
        fs=250,
        units=["mV", "mV"],
        sig_name=["I", "II"],
        p_signal=lead_mv,
        fmt=["212", "212"],
        write_dir=str(root),
    )
    records, rejected = read_all(WfdbFolderSource(root))
    assert rejected == []
    assert [r.record_id for r in records] == [
        "00001_lr",
        "00002_lr",
        "00003_lr",
        "00004_lr",
        "fmt212",
    ]
    assert all(set(r.labels.values()) == {-1} and r.patient_id is None for r in records)
    np.testing.assert_allclose(records[-1].signal, lead_mv.T, atol=0.01)


def test_wfdb_folder_option_errors(shared_data: Path, tmp_path: Path) -> None:
    root = _wfdb_folder(shared_data, tmp_path)
    table = tmp_path / "labels.csv"
    table.write_text("record,sex,af\n00001_lr,1,1\n00002_lr,0,maybe\n")
    with pytest.raises(ValueError, match="not labels"):
        WfdbFolderSource(root, labels=table, label_map={"AFIB": "af"})
    with pytest.raises(ValueError, match="labels table"):
        WfdbFolderSource(root, label_map={"AF": "af"})
    with pytest.raises(TypeError):
        WfdbFolderSource(root, label_column="af")
    unmapped = pytest.warns(UserWarning, match=r"labels.csv: no column is named like a label")
    with unmapped, pytest.raises(SourceError, match="male_value"):
        WfdbFolderSource(root, labels=table, sex_column="sex").units()
    with pytest.raises(SourceError, match="maybe"):
        WfdbFolderSource(root, labels=table, label_map={"AF": "af"}).units()
    with pytest.raises(SourceError, match=r"\['pid'\]"):
        WfdbFolderSource(root, labels=table, patient_column="pid").units()
    (tmp_path / "empty").mkdir()
    with pytest.raises(SourceError, match=r"\*\.hea"):
        WfdbFolderSource(tmp_path / "empty").units()
    coded = WfdbFolderSource(root, labels=table, sex_column="sex", male_value=1)
    with pytest.warns(UserWarning, match=r"every label is n/a \(columns: record, sex, af\)"):
        records, _ = read_all(coded)
    assert [r.is_male for r in records] == [True, False]


def test_wfdb_folder_reads_columns_named_like_labels(shared_data: Path, tmp_path: Path) -> None:
    """A labels table with columns 1dAVb, RBBB, ... needs no label_map; a map still wins."""
    root = _wfdb_folder(shared_data, tmp_path)
    table = tmp_path / "labels.csv"
    table.write_text(
        "record,1dAVb,RBBB,LBBB,SB,AF,ST,afib\n"
        "00001_lr,1,0,0,0,1,0,0\n"
        "00002_lr,0,1,0,1,0,,1\n"
        "00003_lr,0,0,1,0,0,1,0\n"
        "00004_lr,0,0,0,0,0,0,0\n"
    )
    records, rejected = read_all(WfdbFolderSource(root, labels=table))
    assert rejected == []
    by_id = {r.record_id: r.labels for r in records}
    assert by_id["00001_lr"] == {"1dAVb": 1, "RBBB": 0, "LBBB": 0, "SB": 0, "AF": 1, "ST": 0}
    assert by_id["00002_lr"] == {"1dAVb": 0, "RBBB": 1, "LBBB": 0, "SB": 1, "AF": 0, "ST": -1}
    assert by_id["00003_lr"]["LBBB"] == 1 and by_id["00003_lr"]["ST"] == 1
    mapped, _ = read_all(WfdbFolderSource(root, labels=table, label_map={"AF": "afib"}))
    assert [r.labels["AF"] for r in mapped] == [0, 1, 0, 0]
    assert [r.labels["RBBB"] for r in mapped] == [0, 1, 0, 0]


def test_wfdb_labels_table_that_maps_nothing_fails_in_one_line(
    shared_data: Path, tmp_path: Path
) -> None:
    root = _wfdb_folder(shared_data, tmp_path)
    table = tmp_path / "labels.csv"
    table.write_text("record,afib,rbbb\n00001_lr,1,0\n00002_lr,0,1\n")
    with pytest.raises(SourceError, match="maps nothing") as error:
        WfdbFolderSource(root, labels=table).units()
    assert str(error.value) == (
        f"{table}: maps nothing: no column is named like a label (1dAVb, RBBB, LBBB, SB, AF, "
        "ST) and no label_map or patient/age/sex column is given (columns: record, afib, rbbb)"
    )
    store = tmp_path / "store"
    result = CliRunner().invoke(
        main,
        ["data", "ingest", "wfdb", str(root), "--store", str(store), "-o", f"labels={table}"],
    )
    assert result.exit_code == 1
    assert result.output.strip() == f"ecgscale: error: {error.value}"


def test_wfdb_labels_table_without_labels_warns_in_one_line(
    shared_data: Path, tmp_path: Path
) -> None:
    """Ages only: the records ingest, and the command line says, in one line, that no label is
    annotated."""
    root = _wfdb_folder(shared_data, tmp_path)
    table = tmp_path / "ages.csv"
    rows = "".join(f"{i:05d}_lr,{50 + i}\n" for i in range(1, 5))
    table.write_text("record,age_years\n" + rows)
    store = tmp_path / "store"
    command = [sys.executable, "-m", "ecgscale", "data", "ingest", "wfdb", str(root)]
    options = ["-o", f"labels={table}", "-o", "age_column=age_years", "--workers", "1"]
    proc = subprocess.run(
        [*command, "--store", str(store), "--fs", "100", "--n-samples", "1000", *options],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    warned = [line for line in proc.stderr.splitlines() if "warning" in line]
    assert warned == [
        f"ecgscale: warning: {table}: no column is named like a label (1dAVb, RBBB, LBBB, SB, "
        "AF, ST) and no label_map is given: every label is n/a (columns: record, age_years)"
    ]


def test_wfdb_folder_broken_records(shared_data: Path, tmp_path: Path) -> None:
    root = _wfdb_folder(shared_data, tmp_path)
    dat = root / "a" / "00001_lr.dat"
    dat.write_bytes(dat.read_bytes()[:5000])
    _edit_record_line(root / "a" / "00002_lr.hea", " 12 ", " 13 ")
    _edit_record_line(root / "b" / "c" / "00003_lr.hea", " 100 ", " 0 ")
    records, rejected = read_all(WfdbFolderSource(root))
    assert reasons(rejected) == {
        "00001_lr": "truncated",
        "00002_lr": "header_mismatch",
        "00003_lr": "impossible_fs",
    }
    assert [r.record_id for r in records] == ["00004_lr"]


@pytest.mark.parametrize(
    ("source", "folder", "name"),
    [
        (WfdbFolderSource, "ptbxl-sample/records100/00000", "00002_lr"),
        (CincSource, "cinc2021-sample/training", "E00271"),
        (Cinc2020Source, "cinc2020-sample", "E00009"),  # the header wfdb refuses
    ],
)
def test_one_record_named_by_its_header(source, folder, name, shared_data: Path) -> None:
    """A source given one ``.hea`` file reads that record alone, as it reads it in its folder."""
    (one,), rejected = read_all(source(shared_data / folder / f"{name}.hea"))
    assert rejected == [] and one.record_id == name
    in_folder = next(r for r in read_all(source(shared_data / folder))[0] if r.record_id == name)
    np.testing.assert_array_equal(one.signal, in_folder.signal)
    assert one.labels == in_folder.labels and one.fs == in_folder.fs


def test_a_missing_header_is_named(tmp_path: Path) -> None:
    with pytest.raises(SourceError, match=r"nope\.hea: WFDB header not found"):
        WfdbFolderSource(tmp_path / "nope.hea").units()
