"""Bad input on the command line and in the files it reads: one line naming the file, the
option or the record and the problem, and nothing written that a later run would trip on
(each case found by running the tool as a careless user would, 2026-12-06)."""

from __future__ import annotations

import json
import re
import sqlite3
import warnings
from pathlib import Path

import h5py
import numpy as np
import pandas as pd
import pytest
import wfdb
from click.testing import CliRunner

from ecgscale.cli import main
from ecgscale.data.ingest import IngestError, ingest
from ecgscale.data.sources.base import SourceError, create_source
from ecgscale.data.sources.wfdb_common import record_ids
from ecgscale.data.sources.wfdb_folder import WfdbFolderSource
from ecgscale.spec import SpecError
from ecgscale.study.results import Results, ResultsError, read_fits
from ecgscale.study.specfile import load_spec, parse_spec

GOOD = {"name": "t", "models": {"sizes": [20000]}, "data_sizes": [100]}


def _cli(*args: str):
    return CliRunner().invoke(main, list(args))


def _h5(path: Path, n: int = 3) -> Path:
    t = np.arange(1000) / 100
    beat = np.sin(2 * np.pi * 1.2 * t)[None, :, None] * np.linspace(0.5, 1.5, 12)
    with h5py.File(path, "w") as f:
        f["tracings"] = np.repeat(beat, n, axis=0).astype(np.float32)
    return path


def _patient_folders(root: Path) -> Path:
    """Three patients' folders, each holding one record named ``ecg``."""
    t = np.arange(1000) / 100
    for i in range(3):
        folder = root / f"p{i + 1}"
        folder.mkdir(parents=True)
        leads = np.stack([np.sin(2 * np.pi * (1 + i / 4) * t + k) for k in range(12)], axis=1)
        names = ["I", "II", "III", "aVR", "aVL", "aVF", "V1", "V2", "V3", "V4", "V5", "V6"]
        wfdb.wrsamp(
            "ecg", fs=100, units=["mV"] * 12, sig_name=names, p_signal=leads,
            fmt=["16"] * 12, write_dir=str(folder),
        )  # fmt: skip
    return root


@pytest.mark.parametrize(
    "args, message",
    [
        (["--fs", "0"], "'--fs': 0.0 is not in the range x>0"),
        (["--n-samples", "0"], "'--n-samples': 0 is not in the range x>=1"),
        (["--workers", "0"], "'--workers': 0 is not in the range x>=1"),
        (["--max-reject", "2"], "'--max-reject': 2.0 is not in the range 0<=x<=1"),
        (["--bandpass", "40,0.5"], "--bandpass 40,0.5: needs 0 < LOW < HIGH < 200 Hz"),
        (["--bandpass", "0.5,300"], "--bandpass 0.5,300: needs 0 < LOW < HIGH < 200 Hz"),
        (["-o", "bogus=1"], "hdf5 reader: unknown option(s) bogus (its options: dataset, fs,"),
        (["-o", "fs=abc"], "hdf5 reader (options: fs='abc'): could not convert string to float"),
        (["-o", "gain=-1"], "gain must be a positive factor to millivolts, got -1"),
        (["-o", "leads=[I"], "'leads=[I': '[I' is not a valid YAML value"),
    ],
)
def test_ingest_refuses_bad_options_before_it_makes_a_store(
    tmp_path: Path, args: list[str], message: str
) -> None:
    """``--fs 0`` once made a store of 0 Hz that no later run could use or inspect."""
    source = _h5(tmp_path / "x.h5")
    store = tmp_path / "store"
    result = _cli("data", "ingest", "hdf5", str(source), "--store", str(store), "--quiet",
                  "-o", "fs=100", *args)  # fmt: skip
    assert result.exit_code != 0
    assert message in " ".join(result.output.split()), result.output
    assert "Traceback" not in result.output
    assert not (store / "store.json").exists()


def test_a_good_ingest_still_works_and_takes_leads_as_text(tmp_path: Path) -> None:
    store = tmp_path / "store"
    leads = "leads=I,II,III,aVR,aVL,aVF,V1,V2,V3,V4,V5,V6"
    result = _cli("data", "ingest", "hdf5", str(_h5(tmp_path / "x.h5")), "--store", str(store),
                  "--quiet", "-o", "fs=100", "-o", leads)  # fmt: skip
    assert result.exit_code == 0, result.output
    assert json.loads((store / "store.json").read_text())["fs"] == 400.0


def test_ingest_api_checks_the_form_first(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="must be positive, got 0"):
        ingest("hdf5", _h5(tmp_path / "x.h5"), tmp_path / "s", options={"fs": 100}, fs=0.0)
    with pytest.raises(IngestError, match="max_reject must lie in"):
        ingest("hdf5", tmp_path / "x.h5", tmp_path / "s", options={"fs": 100}, max_reject=5)
    assert not (tmp_path / "s" / "store.json").exists()


def test_reader_options_are_checked_by_name() -> None:
    with pytest.raises(SourceError, match=r"wfdb reader: unknown option\(s\) fs \(its options:"):
        create_source("wfdb", ".", fs=100)
    with pytest.raises(SourceError, match=r"synthetic reader: needs option\(s\) sites"):
        create_source("synthetic", ".")
    with pytest.raises(SourceError, match=r"ptbxl reader \(options: rate=7\)"):
        create_source("ptbxl", ".", rate=7)
    listed = _cli("data", "sources").output
    assert "-o options: dataset, fs, ids, leads, gain, unit_size" in listed


def test_per_patient_folders_keep_one_record_each(tmp_path: Path) -> None:
    """Folders p1/, p2/, p3/, each with ecg.hea: all three were named ``ecg`` and two were
    rejected as duplicates; a unique stem keeps its short id."""
    assert record_ids(["a/x.hea", "b/x.hea", "b/y.hea"]) == {
        "a/x.hea": "a/x",
        "b/x.hea": "b/x",
        "b/y.hea": "y",
    }
    root = _patient_folders(tmp_path / "patients")
    source = WfdbFolderSource(root)
    got = [r for unit in source.units() for r in source.read(unit)]
    assert sorted(r.record_id for r in got) == ["p1/ecg", "p2/ecg", "p3/ecg"]
    store = tmp_path / "store"
    result = _cli("data", "ingest", "wfdb", str(root), "--store", str(store), "--quiet")
    assert result.exit_code == 0 and "3 records stored, 0 quarantined" in result.output


def test_a_damaged_results_file_is_named(tmp_path: Path) -> None:
    (tmp_path / "results.sqlite").write_bytes(b"not a database" * 100)
    with pytest.raises(ResultsError, match="results.sqlite: not a readable results database"):
        Results(tmp_path / "results.sqlite")
    good = tmp_path / "good.sqlite"
    Results(good)
    with sqlite3.connect(good) as con:  # a healthy file still opens
        assert con.execute("PRAGMA user_version").fetchone()[0] >= 2


@pytest.mark.parametrize(
    "text, message",
    [
        ("{\n", "fits.json: not valid JSON"),
        ("{}", "fits.json: not a fits file (no 'fits' list)"),
        ("[1, 2]", "fits.json: not a fits file (no 'fits' list)"),
    ],
)
def test_a_damaged_fits_file_is_named(tmp_path: Path, text: str, message: str) -> None:
    (tmp_path / "fits.json").write_text(text)
    with pytest.raises(ValueError, match=re.escape(message)):
        read_fits(tmp_path)
    with pytest.raises(FileNotFoundError, match="no fits.json"):
        read_fits(tmp_path / "elsewhere")


def test_spec_overrides_and_files_fail_in_one_line(tmp_path: Path) -> None:
    with pytest.raises(SpecError, match=r"override 'models.sizes=\[20000,': '\[20000,' is not"):
        parse_spec(GOOD, overrides=["models.sizes=[20000,"])
    with pytest.raises(SpecError, match=r"train.max_steps: .* \(set by --set train.max_steps=-3\)"):
        parse_spec(GOOD, overrides=["train.max_steps=-3"])
    binary = tmp_path / "spec.yaml"
    binary.write_bytes(b"\x89PNG\r\n\x1a\n\x00")
    with pytest.raises(SpecError, match="spec.yaml: not a YAML spec"):
        load_spec(binary)


@pytest.mark.parametrize(
    "override, message",
    [
        ("seeds=[0,0]", "seeds[1]: seed 0 is listed twice"),
        ("data_sizes=[100,100]", "data_sizes[1]: data size 100 is listed twice"),
        ("models.sizes=[20000,20000]", "models.sizes[1]: model size 20000 is listed twice"),
        ("paradigms=[sl,sl]", "paradigms[1]: paradigm 'sl' is listed twice"),
        ("name=../../etc", "name: '../../etc': use letters, digits"),
        ("name=.x", "name: '.x': use letters"),
    ],
)
def test_grid_axes_are_distinct_and_names_stay_in_studies(override: str, message: str) -> None:
    """Seeds [0, 0] failed with pandas' 'truth value of a Series is ambiguous'; a name such as
    ../../etc made the default study folder studies/../../etc."""
    with pytest.raises(SpecError, match=message.replace("[", r"\[").replace("(", r"\(")):
        parse_spec(GOOD, overrides=[override])


def test_fit_will_not_write_over_its_own_table(tmp_path: Path) -> None:
    table = tmp_path / "law.csv"
    pd.DataFrame({"N": [1e4, 1e5, 1e6, 1e7], "loss": [1.0, 0.8, 0.7, 0.65]}).to_csv(table)
    before = table.read_text()
    result = _cli("fit", str(table), "--form", "power", "--x", "N", "--out", str(table))
    assert result.exit_code != 0 and "is the table being fitted" in result.output
    assert table.read_text() == before
    bad = tmp_path / "nan.csv"
    pd.DataFrame({"N": [1e4, 1e5, 1e6, 1e7], "loss": [1.0, np.nan, 0.7, 0.6]}).to_csv(bad)
    result = _cli("fit", str(bad), "--form", "power", "--x", "N")
    assert result.exit_code != 0 and f"{bad}: column 'loss'" in result.output, result.output
    nested = tmp_path / "new" / "law.fits.json"
    result = _cli("fit", str(table), "--form", "power", "--x", "N", "--out", str(nested))
    assert result.exit_code == 0 and nested.is_file(), result.output


def test_a_damaged_store_description_is_named(tmp_path: Path) -> None:
    from ecgscale.data.store import StoreError, StoreInfo

    where = tmp_path / "store.json"
    for text, problem in (("{oops", "not valid JSON"), ("[1]", "not a store description")):
        with pytest.raises(StoreError, match=f"store.json: {problem}"):
            StoreInfo.from_json(text, where)
    with pytest.raises(StoreError, match=r"store.json: not a store description \(.*unexpected"):
        StoreInfo.from_json('{"format_version": 2, "fs": 400, "n_samples": 9, "x": 1}', where)


def test_an_export_config_missing_its_input_or_other_leads_is_refused(tmp_path: Path) -> None:
    from ecgscale.models.exported import FORMAT, VERSION, EncoderError, read_config

    config = {"format": FORMAT, "version": VERSION, "family": "resnet", "shape": {}}
    config |= {"labels": [], "predictors": {}}
    (tmp_path / "config.json").write_text(json.dumps(config))
    with pytest.raises(EncoderError, match=r"config.json: lacks input, input.fs, input.n_samples"):
        read_config(tmp_path)
    config["input"] = {"fs": 400, "n_samples": 4096, "align": "center", "bandpass": None}
    (tmp_path / "config.json").write_text(json.dumps(config | {}))
    assert read_config(tmp_path)["input"]["fs"] == 400
    config["input"] |= {"leads": ["I", "II"], "units": "mV"}
    (tmp_path / "config.json").write_text(json.dumps(config))
    with pytest.raises(EncoderError, match=r"input leads \['I', 'II'\] in 'mV'; the encoders"):
        read_config(tmp_path)


def test_an_override_a_family_setting_keeps_is_named() -> None:
    """--set train.lr=0.002 on the demo left its ResNets at their own 6e-3 without a word."""
    tree = json.loads(json.dumps(load_spec(None).model_dump(mode="json")))
    with pytest.warns(UserWarning, match=r"train.lr=0.002: resnet keeps its own train.families"):
        parse_spec(tree, overrides=["train.lr=0.002"])
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # cleared too: nothing to say
        parse_spec(tree, overrides=["train.lr=0.002", "train.families={}"])
