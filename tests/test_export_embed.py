"""Trained encoders out of a study: export, reload, and features of one's own recordings."""

import json
import shutil
from pathlib import Path

import h5py
import numpy as np
import pandas as pd
import pytest
import torch
import wfdb
from click.testing import CliRunner

from ecgscale.cli import main
from ecgscale.data.harmonize import Target
from ecgscale.data.ingest import ingest
from ecgscale.data.schema import LABELS, LEADS
from ecgscale.data.sources import RawRecord, SourceError, create_source
from ecgscale.evaluate.embed import embed, features, harmonized
from ecgscale.export import EncoderError, export_run, load_encoder, load_head, read_config
from ecgscale.models import build
from ecgscale.objectives import create_objective
from ecgscale.study.runner import prepare_data, train_runs
from ecgscale.study.spec import parse_spec
from ecgscale.train import load_weights

FS, N_SAMPLES = 100, 250
TINY = {
    "name": "tiny-export",
    "data": {
        "fs": FS,
        "n_samples": N_SAMPLES,
        "n_records": 200,
        "n_ood_records": 20,
        "ood_sites": ["noisy"],
    },
    "models": {"families": ["resnet", "transformer"], "sizes": [20000]},
    "paradigms": ["sl", "ssl"],
    "data_sizes": [50],
    "train": {
        "batch_size": 8,
        "max_steps": 10,
        "eval_every": 5,
        "warmup_steps": 1,
        "val_records": 16,
    },
    "eval": {"probe_records": 20, "probe_val_records": 10, "test_records": 10, "l2_grid": [1.0]},
    "executor": {"workers": 1},
    "laws": {"n_bootstrap": 0},
}


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict[str, Path]:
    """The four trained run folders of a tiny study, by ``<family>-<paradigm>``."""
    spec = parse_spec(TINY)
    study = tmp_path_factory.mktemp("study")
    prepare_data(spec, study, progress=False)
    summary = train_runs(spec, study, progress=False)
    assert summary.done == 4
    return {"-".join(p.name.split("-")[:2]): p for p in (study / "runs").iterdir()}


@pytest.fixture(scope="module")
def exported(runs, tmp_path_factory) -> dict[str, Path]:
    """Each run exported to a folder of its own."""
    out = tmp_path_factory.mktemp("exported")
    return {name: export_run(run, out / name) for name, run in runs.items()}


def run_objective(run: Path):
    """The run's trained objective, rebuilt from the ladder and model.safetensors directly."""
    meta = json.loads((run / "train.json").read_text())["run"]
    encoder = build(meta["family"], meta["target_params"], input_len=N_SAMPLES, fs=FS)
    objective = create_objective(
        meta["paradigm"], encoder, fs=FS, mask_ratio=0.5, mask_patch_s=0.25
    )
    return load_weights(objective, run / "model.safetensors").eval()


def invoke(*args: str):
    return CliRunner().invoke(main, [str(a) for a in args])


def one_line_error(result, exit_code: int = 2) -> str:
    assert result.exit_code == exit_code, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("ecgscale: error: "), result.output
    return lines[0]


def write_hdf5(path: Path, *, leads_first: bool, n: int = 5, nan_row: int | None = None) -> None:
    """``n`` random 5 s records at 100 Hz with ids ``exam_id`` and an ``fs`` attribute."""
    signals = np.random.default_rng(0).normal(0, 0.3, (n, 12, 500)).astype(np.float32)
    if nan_row is not None:
        signals[nan_row, 3, 100:120] = np.nan
    with h5py.File(path, "w") as file:
        data = file.create_dataset(
            "tracings", data=signals if leads_first else signals.swapaxes(1, 2)
        )
        data.attrs["fs"] = 100.0
        file.create_dataset("exam_id", data=np.arange(1000, 1000 + n))


# ---- export and load -----------------------------------------------------------------------


def test_sl_export_has_encoder_head_and_config(runs, exported):
    out = exported["resnet-sl"]
    assert sorted(p.name for p in out.iterdir()) == [
        "config.json",
        "encoder.safetensors",
        "head.safetensors",
    ]
    config = read_config(out)
    run = json.loads((runs["resnet-sl"] / "train.json").read_text())["run"]
    assert config["run"] == run and config["study"] == "tiny-export"
    assert config["family"] == "resnet" and config["target_params"] == 20000
    assert config["input"] == {
        "fs": FS,
        "n_samples": N_SAMPLES,
        "leads": list(LEADS),
        "units": "mV",
    }
    assert config["labels"] == list(LABELS)
    encoder, head = load_encoder(out), load_head(out)
    assert not encoder.training and encoder.config == config
    assert config["n_params"] == sum(p.numel() for p in encoder.parameters())
    assert config["dim"] == encoder.dim == head.in_features and head.out_features == len(LABELS)
    objective = run_objective(runs["resnet-sl"])
    x = torch.randn(3, 12, N_SAMPLES)
    with torch.no_grad():
        assert torch.equal(head(encoder.features(x)), objective.logits(x))


def test_ssl_export_has_no_head(exported):
    out = exported["transformer-ssl"]
    assert not (out / "head.safetensors").exists() and "labels" not in read_config(out)
    with pytest.raises(EncoderError, match="only SL runs have a head"):
        load_head(out)


@pytest.mark.parametrize("name", ["resnet-sl", "resnet-ssl", "transformer-sl", "transformer-ssl"])
def test_exported_encoder_equals_the_runs(runs, exported, name):
    x = torch.randn(4, 12, N_SAMPLES)
    with torch.no_grad():
        expected = run_objective(runs[name]).encoder.features(x)
        assert torch.equal(load_encoder(exported[name]).features(x), expected)


def test_export_cli_and_its_errors(runs, tmp_path):
    out = tmp_path / "enc"
    result = invoke("export", runs["resnet-ssl"], "--out", out)
    assert result.exit_code == 0 and str(out) in result.output
    assert "not empty (use --force" in one_line_error(
        invoke("export", runs["resnet-sl"], "--out", out)
    )
    assert invoke("export", runs["resnet-sl"], "--out", out, "--force").exit_code == 0
    assert read_config(out)["run"]["paradigm"] == "sl" and (out / "head.safetensors").exists()
    assert invoke("export", runs["resnet-ssl"], "--out", out, "--force").exit_code == 0
    assert not (out / "head.safetensors").exists()  # no stale head from the SL run

    unfinished = tmp_path / "runs" / "resnet-sl-unfinished"
    (unfinished / "checkpoints").mkdir(parents=True)
    assert "run not finished" in one_line_error(
        invoke("export", unfinished, "--out", tmp_path / "u")
    )
    study = runs["resnet-sl"].parent.parent
    assert "not a run folder" in one_line_error(invoke("export", study, "--out", tmp_path / "s"))
    orphan = tmp_path / "elsewhere" / "runs" / "r"
    shutil.copytree(runs["resnet-sl"], orphan)
    assert "no spec.yaml" in one_line_error(invoke("export", orphan, "--out", tmp_path / "o"))
    assert not any((tmp_path / d).exists() for d in ("u", "s", "o"))


def test_load_encoder_checks_format_and_weights(exported, tmp_path):
    out = tmp_path / "enc"
    shutil.copytree(exported["resnet-sl"], out)
    config = read_config(out)
    (out / "config.json").write_text(json.dumps({**config, "version": 2}))
    with pytest.raises(EncoderError, match="version 2"):
        load_encoder(out)
    wider = {**config["shape"], "stem_width": config["shape"]["stem_width"] + 1}
    (out / "config.json").write_text(json.dumps({**config, "shape": wider}))
    with pytest.raises(EncoderError, match="encoder.safetensors: weights do not match"):
        load_encoder(out)
    with pytest.raises(EncoderError, match="no config.json"):
        load_encoder(tmp_path)


# ---- embed ----------------------------------------------------------------------------------


def test_embed_wfdb_folder_matches_the_run_encoder(shared_data, runs, exported, tmp_path):
    """Acceptance: one row per record of a real WFDB folder; features equal the run's own."""
    records = shared_data / "ptbxl-sample" / "records100"
    headers = sorted(records.rglob("*.hea"))
    out = tmp_path / "features.parquet"
    result = invoke("embed", exported["resnet-sl"], records, "--out", out, "--quiet")
    assert result.exit_code == 0, result.output
    frame = pd.read_parquet(out)
    assert list(frame["record_id"]) == [h.stem for h in headers]
    assert list(frame.columns[1:]) == [f"f{i}" for i in range(frame.shape[1] - 1)]
    assert (frame.dtypes.iloc[1:] == np.float32).all()

    target = Target(fs=FS, n_samples=N_SAMPLES)
    signals = [item[1] for item in harmonized(records, target)]
    run_encoder = run_objective(runs["resnet-sl"]).encoder
    exported_encoder = load_encoder(exported["resnet-sl"])
    for start in range(0, len(signals), 64):
        batch = signals[start : start + 64]
        expected = features(run_encoder, batch)
        assert np.array_equal(features(exported_encoder, batch), expected)
        assert np.array_equal(frame.iloc[start : start + 64, 1:].to_numpy(), expected)


@pytest.mark.parametrize("leads_first", [True, False])
def test_embed_hdf5_both_layouts_with_ids_and_a_bad_row(exported, tmp_path, leads_first):
    path = tmp_path / "mine.h5"
    write_hdf5(path, leads_first=leads_first, nan_row=2)
    out = tmp_path / "features.csv"
    result = invoke("embed", exported["transformer-ssl"], path, "--out", out, "-o", "ids=exam_id")
    assert result.exit_code == 0, result.output
    assert "ecgscale: 1 record rejected: nan 1" in result.output and "1002: nan" in result.output
    frame = pd.read_csv(out, dtype={"record_id": str})
    assert list(frame["record_id"]) == ["1000", "1001", "1003", "1004"]
    api = embed(exported["transformer-ssl"], path, options={"ids": "exam_id"})
    assert np.array_equal(frame.iloc[:, 1:].to_numpy(np.float32), api.iloc[:, 1:].to_numpy())
    assert [(r.record_id, r.reason) for r in api.attrs["rejected"]] == [("1002", "nan")]


def test_embed_outputs_agree(exported, tmp_path):
    path = tmp_path / "mine.hdf5"
    write_hdf5(path, leads_first=False)
    frames = {}
    for suffix in (".parquet", ".csv", ".npy"):
        out = tmp_path / f"features{suffix}"
        assert invoke("embed", exported["resnet-ssl"], path, "--out", out).exit_code == 0
        frames[suffix] = out
    parquet = pd.read_parquet(frames[".parquet"])
    csv = pd.read_csv(frames[".csv"])
    npy = np.load(frames[".npy"])
    ids = (tmp_path / "features.ids.txt").read_text().split()
    assert (
        ids
        == list(parquet["record_id"])
        == list(csv["record_id"])
        == [f"mine#{i}" for i in range(5)]
    )
    assert npy.dtype == np.float32 and npy.shape == (5, read_config(exported["resnet-ssl"])["dim"])
    assert np.array_equal(parquet.iloc[:, 1:].to_numpy(), npy)
    assert np.array_equal(csv.iloc[:, 1:].to_numpy(np.float32), npy)


def test_embed_on_a_device_under_a_precision(exported, tmp_path):
    """``--device cpu --precision bf16`` is the fp32 CPU embedding (bf16 autocasts on GPUs);
    a device this machine lacks is one line."""
    path = tmp_path / "mine.h5"
    write_hdf5(path, leads_first=True)
    enc = exported["resnet-sl"]
    plain = embed(enc, path)
    on_cpu = embed(enc, path, device="cpu", precision="bf16")
    assert np.array_equal(plain.iloc[:, 1:].to_numpy(), on_cpu.iloc[:, 1:].to_numpy())
    small = embed(load_encoder(enc), path, device="cpu", batch_size=2)
    assert np.allclose(plain.iloc[:, 1:].to_numpy(), small.iloc[:, 1:].to_numpy(), atol=1e-6)
    out = tmp_path / "f.csv"
    assert invoke("embed", enc, path, "--out", out, "--device", "cpu").exit_code == 0
    line = one_line_error(invoke("embed", enc, path, "--out", out, "--device", "cuda:99"), 1)
    assert "device 'cuda:99'" in line and "CUDA GPU(s) here" in line


def test_embed_reports_a_too_short_record(shared_data, exported, tmp_path):
    folder = tmp_path / "ecgs"
    folder.mkdir()
    for stem in ("00001_lr", "00002_lr"):
        for ext in (".hea", ".dat"):
            shutil.copy(shared_data / "ptbxl-sample/records100/00000" / f"{stem}{ext}", folder)
    short = np.random.default_rng(1).normal(0, 0.3, (100, 12))  # 1 s
    wfdb.wrsamp(
        "short",
        fs=100,
        units=["mV"] * 12,
        sig_name=list(LEADS),
        p_signal=short,
        fmt=["16"] * 12,
        write_dir=str(folder),
    )
    out = tmp_path / "f.parquet"
    result = invoke("embed", exported["resnet-sl"], folder, "--out", out)
    assert result.exit_code == 0, result.output
    assert (
        "ecgscale: 1 record rejected: too_short 1" in result.output
        and "short: too_short" in result.output
    )
    assert list(pd.read_parquet(out)["record_id"]) == ["00001_lr", "00002_lr"]


def test_embed_errors_are_one_line(exported, tmp_path):
    path = tmp_path / "flat.h5"
    with h5py.File(path, "w") as file:
        file.create_dataset("tracings", data=np.zeros((3, 500, 12), np.float32))
    enc = exported["resnet-sl"]
    line = one_line_error(
        invoke("embed", enc, path, "--out", tmp_path / "f.csv", "-o", "fs=100", "--quiet")
    )
    assert "no record could be embedded (3 records rejected: flat_lead 3; flat#0: flat_lead" in line
    assert "must end in" in one_line_error(invoke("embed", enc, path, "--out", tmp_path / "f.txt"))
    other = tmp_path / "notes.txt"
    other.write_text("hello")
    assert "--kind" in one_line_error(invoke("embed", enc, other, "--out", tmp_path / "f.csv"))
    assert "fs=HZ" in one_line_error(invoke("embed", enc, path, "--out", tmp_path / "f.csv"), 1)
    assert not list(tmp_path.glob("f.*"))


# ---- the generic HDF5 source ------------------------------------------------------------------


def test_hdf5_source_reads_in_units_with_options(tmp_path):
    path = tmp_path / "x.h5"
    signals = np.random.default_rng(0).normal(0, 1, (7, 300, 8)).astype(np.float32)
    with h5py.File(path, "w") as file:
        file.create_dataset("ecg", data=signals)
        file.create_dataset("name", data=[f"p{i}".encode() for i in range(7)])
    leads = ["I", "II", "V1", "V2", "V3", "V4", "V5", "V6"]
    source = create_source(
        "hdf5", path, dataset="ecg", fs=250, ids="name", leads=leads, gain=0.001, unit_size=3
    )
    units = source.units()
    assert [u.n for u in units] == [3, 3, 1]
    records = [r for u in units for r in source.read(u)]
    assert all(isinstance(r, RawRecord) for r in records)
    assert [r.record_id for r in records] == [f"p{i}" for i in range(7)]
    first = records[0]
    assert first.fs == 250 and first.leads == leads and first.labels == {k: -1 for k in LABELS}
    assert np.allclose(first.signal, signals[0].T * 0.001)


@pytest.mark.parametrize(
    "shape, options, message",
    [
        ((2, 12, 12), {"fs": 100}, "lead axis cannot be told"),
        ((2, 300, 9), {"fs": 100}, "no axis has 12"),
        ((2, 300, 12), {}, "sampling rate unknown"),
        ((2, 300, 12), {"fs": 100, "ids": "exam_id"}, "ids dataset 'exam_id'"),
        ((2, 300, 12), {"fs": 100, "dataset": "signals"}, "no dataset 'signals'"),
    ],
)
def test_hdf5_source_layout_errors(tmp_path, shape, options, message):
    path = tmp_path / "x.h5"
    with h5py.File(path, "w") as file:
        file.create_dataset("tracings", data=np.ones(shape, np.float32))
    with pytest.raises(SourceError, match=message):
        create_source("hdf5", path, **options).units()


def test_hdf5_source_ingests(tmp_path):
    path = tmp_path / "mine.h5"
    write_hdf5(path, leads_first=True, n=6)
    report = ingest(
        "hdf5",
        path,
        tmp_path / "store",
        fs=FS,
        n_samples=N_SAMPLES,
        options={"ids": "exam_id"},
        progress=False,
    )
    assert report.n_records == 6 and report.n_quarantined == 0
