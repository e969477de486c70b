"""Issue 3 acceptance on real files: PTB-XL, the challenge samples, CODE-test, and a corrupted-input
suite, all through ``ecgscale data ingest`` into one store."""

import shutil
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pandas as pd
import pytest

from ecgscale.data.fixtures import write_code15, write_code_test_tracings
from ecgscale.data.ingest import ingest
from ecgscale.data.schema import LABELS
from ecgscale.data.store import Store

SIX = {"1dAVb": 10, "RBBB": 8, "LBBB": 8, "SB": 9, "AF": 13, "ST": 5}  # shared/data/README.md


def _ingest(kind, path, store, **kw):
    kw.setdefault("workers", 2)
    return ingest(kind, path, store, fs=100.0, n_samples=1000, progress=False, **kw)


@pytest.fixture(scope="module")
def real_store(tmp_path_factory, shared_data):
    data = shared_data
    store = tmp_path_factory.mktemp("real") / "store"
    for rate in (100, 500):
        _ingest("ptbxl", data / "ptbxl-sample", store, name=f"ptbxl{rate}", options={"rate": rate})
    _ingest("cinc2020", data / "cinc2020-sample", store)
    _ingest("cinc2021", data / "cinc2021-sample", store)
    return Store(store)


@pytest.mark.parametrize("name", ["ptbxl100", "ptbxl500"])
def test_ptbxl_500_of_500_with_the_published_label_counts(real_store, name):
    meta = real_store.meta[real_store.meta["source"] == name]
    assert len(meta) == 500 and meta["record_id"].is_unique
    assert {label: int(meta[label].sum()) for label in LABELS} == SIX
    assert set(meta["strat_fold"]) == set(range(1, 11))
    assert (meta.loc[meta["strat_fold"] == 10, "split"] == "test").all()
    assert meta["patient_id"].nunique() == 466
    assert meta["fs_origin"].eq(float(name.removeprefix("ptbxl"))).all()
    q = real_store.quarantine()
    assert q[q["source"] == name].empty


def test_both_ptbxl_rates_give_the_same_signals(real_store):
    meta = real_store.meta
    lo = meta.loc[meta["source"] == "ptbxl100", "row"].to_numpy()[:50]
    hi = meta.loc[meta["source"] == "ptbxl500", "row"].to_numpy()[:50]
    a, b = real_store.read(lo), real_store.read(hi)
    # the 100 Hz files are PTB-XL's own downsampling: same shape within a few percent
    corr = [np.corrcoef(x.ravel(), y.ravel())[0, 1] for x, y in zip(a, b, strict=True)]
    assert np.median(corr) > 0.95


def test_all_155_challenge_records_with_snomed_labels(real_store):
    meta = real_store.meta
    assert (meta["source"] == "cinc2020").sum() == 28
    assert (meta["source"] == "cinc2021").sum() == 127
    assert real_store.quarantine().empty
    challenge = meta[meta["source"].isin(["cinc2020", "cinc2021"])].set_index("record_id")
    assert {"E00009", "E00015", "E00018", "E00793"} <= set(challenge.index)  # Georgia quirk
    assert (challenge[list(LABELS)] >= 0).all().all()
    assert challenge[list(LABELS)].sum().sum() > 0
    for record_id, row in challenge.iterrows():  # labels agree with the header's #Dx codes
        codes = set(row["dx"].split(","))
        assert row["AF"] == int("164889003" in codes), record_id
        assert row["RBBB"] == int(bool(codes & {"59118001", "713427006"})), record_id
    assert challenge["site"].nunique() >= 4


def test_code_test_labels_join_a_generated_tracings_file(tmp_path, shared_data):
    labels = shared_data / "code-test-labels"
    write_code_test_tracings(tmp_path / "ecg_tracings.hdf5", labels, seed=1)
    with h5py.File(tmp_path / "ecg_tracings.hdf5") as f:
        assert f["tracings"].shape == (827, 4096, 12) and f["tracings"].dtype == np.float32
    report = _ingest(
        "codetest",
        labels,
        tmp_path / "s",
        options={"tracings": str(tmp_path / "ecg_tracings.hdf5")},
    )
    assert report.n_records == 827 and report.n_quarantined == 0
    meta = Store(tmp_path / "s").meta
    gold = pd.read_csv(labels / "annotations" / "gold_standard.csv")
    np.testing.assert_array_equal(meta[list(LABELS)].to_numpy(), gold[list(LABELS)].to_numpy())
    assert (meta["split"] == "test").all()
    attributes = pd.read_csv(labels / "attributes.csv")
    np.testing.assert_allclose(meta["age"].to_numpy(), attributes["age"].to_numpy())


def _corrupt_wfdb_folder(shared: Path, root: Path) -> tuple[Path, Path]:
    """Ten PTB-XL 100 Hz records as a generic WFDB folder, 4 broken, and a labels table
    that misses one record and names one that does not exist."""
    folder = root / "wfdb"
    folder.mkdir()
    src = shared / "ptbxl-sample" / "records100" / "00000"
    ids = [f"{i:05d}_lr" for i in range(1, 11)]
    for rid in ids:
        for ext in (".hea", ".dat"):
            shutil.copy(src / f"{rid}{ext}", folder / f"{rid}{ext}")
    dat = folder / "00001_lr.dat"
    dat.write_bytes(dat.read_bytes()[:5000])  # truncated signal file
    hea = folder / "00002_lr.hea"
    first, *rest = hea.read_text().splitlines()
    hea.write_text("\n".join([first.replace(" 12 ", " 11 ", 1), *rest]) + "\n")  # signal count
    raw = np.fromfile(folder / "00003_lr.dat", dtype="<i2")
    raw[120:130] = -32768  # WFDB's invalid-sample value: NaN in physical units
    raw.tofile(folder / "00003_lr.dat")
    hea = folder / "00004_lr.hea"
    first, *rest = hea.read_text().splitlines()
    parts = first.split()
    parts[2] = "7"  # no ECG is sampled at 7 Hz
    hea.write_text("\n".join([" ".join(parts), *rest]) + "\n")
    table = pd.DataFrame(
        {"record": [r for r in ids if r != "00005_lr"] + ["ghost"], "af": 0, "rbbb": 1}
    )
    table.to_csv(root / "labels.csv", index=False)
    return folder, root / "labels.csv"


def test_corrupted_inputs_each_get_a_named_reason(tmp_path, shared_data):
    folder, table = _corrupt_wfdb_folder(shared_data, tmp_path)
    store = tmp_path / "s"
    cmd = [
        sys.executable,
        "-m",
        "ecgscale",
        "data",
        "ingest",
        "wfdb",
        str(folder),
        "--store",
        str(store),
        "--fs",
        "100",
        "--n-samples",
        "1000",
        "--quiet",
        "-o",
        f"labels={table}",
        "-o",
        "label_map={AF: af, RBBB: rbbb}",
    ]
    loud = subprocess.run(cmd, capture_output=True, text=True)
    assert loud.returncode == 1 and "Traceback" not in loud.stderr
    assert "records rejected" in loud.stderr and "nothing was added" in loud.stderr
    ok = subprocess.run([*cmd, "--max-reject", "0.7"], capture_output=True, text=True)
    assert ok.returncode == 0, ok.stderr
    s = Store(store)
    reasons = dict(zip(s.quarantine()["record_id"], s.quarantine()["reason"], strict=True))
    assert reasons == {
        "00001_lr": "truncated",
        "00002_lr": "header_mismatch",
        "00003_lr": "nan",
        "00004_lr": "impossible_fs",
        "00005_lr": "no_labels",
        "ghost": "no_recording",
    }
    assert sorted(s.meta["record_id"]) == [f"{i:05d}_lr" for i in range(6, 11)]  # all valid kept
    assert (s.meta["RBBB"] == 1).all() and (s.meta["SB"] == -1).all()


def test_hdf5_part_without_exam_id(tmp_path):
    table = write_code15(tmp_path / "code15", 60, 2, seed=4)  # CODE: 400 Hz x 4096
    with h5py.File(tmp_path / "code15" / "exams_part1.hdf5", "a") as f:
        del f["exam_id"]
    report = _ingest("code15", tmp_path / "code15", tmp_path / "s", max_reject=0.9)
    q = Store(tmp_path / "s").quarantine()
    in_part1 = (table["trace_file"] == "exams_part1.hdf5").sum()
    assert report.n_records == len(table) - in_part1
    assert (q["reason"] == "missing_exam_id").sum() >= in_part1
    assert set(q["reason"]) == {"missing_exam_id"}


def test_study_with_real_ood_sets(tmp_path, shared_data):
    """A spec names ingested real sources: synthetic ID pre-training, PTB-XL and challenge OOD."""
    from ecgscale.study.runner import ingest_synthetic, run_study
    from ecgscale.study.specfile import parse_spec

    spec = {
        "name": "real-ood",
        "data": {
            "source": "store",
            "store": str(tmp_path / "store"),
            "fs": 100,
            "n_samples": 1000,
            "id_site": "code",
            "ood_sites": ["ptbxl100", "Georgia"],
        },
        "models": {"families": ["resnet"], "sizes": [20000]},
        "paradigms": ["sl"],
        "data_sizes": [200],
        "train": {
            "batch_size": 16,
            "max_steps": 3,
            "eval_every": 3,
            "warmup_steps": 1,
            "val_records": 32,
        },
        "eval": {
            "probe_records": 100,
            "probe_val_records": 40,
            "test_records": 60,
            "l2_grid": [1.0],
        },
        "executor": {"workers": 1},
        "laws": {"n_boot": 0},
    }
    synthetic = parse_spec(
        {
            **spec,
            "data": {
                "n_records": 600,
                "ood_sites": ["noisy"],
                "n_ood_records": 20,
                "fs": 100,
                "n_samples": 1000,
            },
        }
    )
    ingest_synthetic(synthetic.data, tmp_path / "store", progress=False)
    _ingest(
        "ptbxl",
        shared_data / "ptbxl-sample",
        tmp_path / "store",
        name="ptbxl100",
        options={"rate": 100},
    )
    _ingest("cinc2021", shared_data / "cinc2021-sample", tmp_path / "store")
    run_study(parse_spec(spec), tmp_path / "study", progress=False)
    from ecgscale.study.results import Results

    evals = Results(tmp_path / "study" / "results.sqlite").evals()
    evals = evals[evals["method"] == "probe"]
    assert sorted(evals["eval_set"]) == ["Georgia", "id", "ptbxl100"]
    assert evals["loss"].notna().all() and (evals["n"] > 0).all()
    bad = parse_spec({**spec, "data": {**spec["data"], "ood_sites": ["nowhere"]}})
    with pytest.raises(Exception, match="no source or site named 'nowhere'"):
        run_study(bad, tmp_path / "study2", progress=False)
