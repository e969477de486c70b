"""Trained encoders out of a study: export (model card, config, weights), reload (checked, also
by Hugging Face's conventions), features and label predictions for one's own recordings."""

import json
import shutil
import sys
from pathlib import Path

import h5py
import numpy as np
import pandas as pd
import pytest
import torch
import wfdb
from click.testing import CliRunner

from ecgscale.card import model_card, pretraining_data
from ecgscale.cli import main
from ecgscale.data.harmonize import Target
from ecgscale.data.ingest import ingest
from ecgscale.data.schema import LABELS, LEADS
from ecgscale.data.sources import RawRecord, SourceError, create_source
from ecgscale.data.store import StoreError
from ecgscale.evaluate.embed import embed, features, harmonized
from ecgscale.evaluate.predict import predict
from ecgscale.evaluate.probe import load_probe
from ecgscale.export import export_run, pretraining_objective
from ecgscale.models import build
from ecgscale.models.exported import (
    ECGModel,
    EncoderError,
    load_encoder,
    load_head,
    load_model,
    read_config,
)
from ecgscale.objectives import create_objective
from ecgscale.study.results import Results
from ecgscale.study.runner import prepare_data, train_runs
from ecgscale.study.specfile import load_spec, parse_spec
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
        "families": {"transformer": {"lr": 0.004, "time_shift": True}},
    },
    "eval": {"probe_records": 20, "probe_val_records": 10, "test_records": 10, "l2_grid": [1.0]},
    "executor": {"workers": 1},
    "laws": {"n_boot": 0},
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


def test_config_records_the_settings_each_run_trained_with(exported):
    """The family's own settings (train.families), not the spec's defaults."""
    for name, folder in exported.items():
        pre = json.loads((folder / "config.json").read_text())["pretraining"]
        transformer = name.startswith("transformer")
        assert pre["lr"] == (0.004 if transformer else 0.002), name
        assert pre["max_steps"] == 10 and pre["time_shift"] is transformer
        card = (folder / "README.md").read_text()
        assert ("circularly shifted by a random offset" in card) is transformer, name


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


def card_line(card: str, start: str) -> str:
    """The one line of the model card that starts with ``start``."""
    lines = [line for line in card.splitlines() if line.startswith(start)]
    assert len(lines) == 1, (start, lines)
    return lines[0]


def expected_cell(figures: dict) -> str:
    """A label's AUROC as the card shows it: with its interval, alone, or n/a."""
    auroc, lo, hi = (figures[k] for k in ("auroc", "auroc_lo", "auroc_hi"))
    if not np.isfinite(auroc):
        return "n/a"
    if not (np.isfinite(lo) and np.isfinite(hi)):
        return f"{auroc:.3f}"
    return f"{auroc:.3f} [{lo:.3f}, {hi:.3f}]"


def test_sl_export_has_model_card_config_and_weights(runs, exported):
    out = exported["resnet-sl"]
    assert sorted(p.name for p in out.iterdir()) == [
        "README.md",
        "config.json",
        "model.safetensors",
    ]
    config = read_config(out)
    run = json.loads((runs["resnet-sl"] / "train.json").read_text())["run"]
    assert config["run"] == run and config["study"] == "tiny-export"
    assert config["family"] == "resnet" and config["target_params"] == 20000
    assert config["paradigm"] == "sl" and config["labels"] == list(LABELS)
    assert config["input"] == {
        "fs": FS,
        "n_samples": N_SAMPLES,
        "leads": list(LEADS),
        "units": "mV",
        "align": "center",
        "bandpass": None,
    }
    assert list(config["predictors"]) == ["head", "probe"]
    model = load_model(out)
    encoder, head = load_encoder(out), load_head(out)
    assert not model.training and model.config == config == encoder.config
    assert config["n_params"] == sum(p.numel() for p in encoder.parameters())
    assert config["n_params"] > config["n_params_nonembed"] > 0
    assert config["dim"] == encoder.dim == head.in_features and head.out_features == len(LABELS)
    objective = run_objective(runs["resnet-sl"])
    x = torch.randn(3, 12, N_SAMPLES)
    with torch.no_grad():
        assert torch.equal(head(encoder.features(x)), objective.logits(x))
        assert torch.equal(model.probabilities(x), torch.sigmoid(objective.logits(x)))

    saved = load_probe(runs["resnet-sl"] / "probe.safetensors")
    assert np.array_equal(model.thresholds("probe"), saved.probe.thresholds)
    assert np.array_equal(model.thresholds(), saved.head_thresholds)
    with torch.no_grad():
        from_probe = model.probabilities(x, "probe").numpy()
        features = objective.encoder.features(x).double().numpy()
    np.testing.assert_allclose(from_probe, saved.probe.predict(features), atol=1e-5)


def test_model_card_states_what_the_model_is_and_how_it_did(runs, exported):
    card = (exported["resnet-sl"] / "README.md").read_text()
    config = read_config(exported["resnet-sl"])
    assert card.startswith("---\nlibrary_name: ecgscale\nlicense: mit\n")
    assert card_line(card, "# ") == "# ResNet SL ECG encoder, N = 20.5K, D = 50"
    assert f"{config['n_params']:,} ({config['n_params_nonembed']:,} non-embedding" in card
    assert "multi-label binary cross-entropy on the six labels" in card
    assert "synthetic CODE-like records of site `code`" in card_line(card, "| data |")
    assert card_line(card, "| sampling rate |") == "| sampling rate | 100 Hz |"
    assert card_line(card, "| length |") == "| length | 250 samples (2.5 s) |"
    assert "I, II, III, aVR, aVL, aVF, V1, V2, V3, V4, V5, V6" in card_line(card, "| leads |")
    assert card_line(card, "| units |").startswith("| units | mV")
    for heading in ("## Licence", "## Citation", "## How to load", "```bibtex"):
        assert heading in card
    assert "How Do Electrocardiogram Models Scale?" in card
    assert "; its head and probe give the probabilities of the six CODE labels" in card
    ssl_card = (exported["resnet-ssl"] / "README.md").read_text()
    assert "; its probe gives the probabilities of the six CODE labels" in ssl_card

    evals = Results(runs["resnet-sl"].parent.parent / "results.sqlite").evals()
    evals = evals[evals["run_id"] == config["run"]["run_id"]]
    assert set(evals["method"]) == {"probe", "head"} and set(evals["eval_set"]) == {"id", "noisy"}
    tables = card.split("**frozen-encoder linear probe**")[1].split("**the SL model's own head**")
    for method, table in zip(("probe", "head"), tables, strict=True):
        for name, start in (("id", "| ID test |"), ("noisy", "| OOD `noisy` |")):
            row = evals[(evals["method"] == method) & (evals["eval_set"] == name)].iloc[0]
            per = json.loads(row["per_label"])
            line = card_line(table, start)
            cells = [c.strip() for c in line.strip("|").split("|")]
            assert cells[1] == str(row["n"])
            for label, cell in zip(LABELS, cells[2:8], strict=True):
                assert cell == expected_cell(per[label]), (method, name, label)


def test_model_card_of_a_model_pre_trained_on_an_ingested_site(exported, tmp_path):
    """A real-data study: the card names the store source holding the ID site (a site of an
    ingested source here), its reader options and its band-pass; the licence defaults to other."""
    store = tmp_path / "store"
    target = {"fs": 100.0, "n_samples": 250, "align": "center", "bandpass": [0.5, 40.0]}
    sources = []
    for name, kind, sites in (
        ("synthetic", "synthetic", ["code"]),
        ("cinc", "cinc2021", ["E", "A"]),
    ):
        (store / name).mkdir(parents=True)
        pd.DataFrame({"site": sites}).to_parquet(store / name / "meta.parquet")
        settings = {"kind": kind, "path": f"/data/{name}", "options": {}, "target": target}
        sources.append(
            {"name": name, "kind": kind, "settings": settings, "shards": [], "n_records": 2}
            | {"n_quarantined": 0}
        )
    info = {"fs": 100.0, "n_samples": 250, "format_version": 2, "sources": sources}
    (store / "store.json").write_text(json.dumps(info))
    data = {"source": "store", "store": str(store), "fs": 100, "n_samples": 250}
    spec = parse_spec({**TINY, "data": data | {"id_site": "E", "ood_sites": []}})
    described = pretraining_data(spec, tmp_path)
    assert described == {
        "id_site": "E",
        "source": "cinc",
        "kind": "cinc2021",
        "path": "/data/cinc",
        "options": {},
        "harmonize": {"align": "center", "bandpass": [0.5, 40.0]},
    }
    config = read_config(exported["resnet-ssl"])
    config["pretraining"]["data"] = described
    card = model_card(config, spec, tmp_path, "other")
    assert "license: other" in card and "`other`: set by whoever shares these weights" in card
    row = card_line(card, "| data |")
    assert row == (
        "| data | site `E` of the source `cinc` (kind `cinc2021`, read from `/data/cinc`, "
        "options {}) |"
    )
    assert "band-pass 0.5–40 Hz" in card_line(card, "| preprocessing |")
    assert "No evaluation of this run is recorded" in card
    with pytest.raises(StoreError, match="no source holds the ID site 'X'"):
        pretraining_data(
            parse_spec({**TINY, "data": data | {"id_site": "X", "ood_sites": []}}), tmp_path
        )


def test_ssl_export_has_the_probe_and_no_head(runs, exported):
    out = exported["transformer-ssl"]
    config = read_config(out)
    assert list(config["predictors"]) == ["probe"] and config["paradigm"] == "ssl"
    assert "masked reconstruction" in config["objective"]
    model = load_model(out)
    assert model.head is None and model.predictor() == "probe"
    with pytest.raises(EncoderError, match="only SL runs have one"):
        load_head(out)
    card = (out / "README.md").read_text()
    assert "**frozen-encoder linear probe**" in card and "own head" not in card
    saved = load_probe(runs["transformer-ssl"] / "probe.safetensors")
    x = torch.randn(2, 12, N_SAMPLES)
    with torch.no_grad():
        features = run_objective(runs["transformer-ssl"]).encoder.features(x).double().numpy()
        p = model.probabilities(x).numpy()
    np.testing.assert_allclose(p, saved.probe.predict(features), atol=1e-5)
    assert model.probabilities(x).numpy().shape == (2, 6)  # docs/export.md: no no_grad needed
    assert model.features(x).requires_grad  # features keep their gradients (fine-tuning)


@pytest.mark.parametrize(
    ("overrides", "words"),
    [
        ([], "a 0.5 share hidden in every lead at once, each patch's target standardised"),
        (["ssl.decoder_depth=2"], "standardised, decoded by a 2-block Transformer decoder"),
        (["ssl.objective=contrastive", "ssl.crop_s=2.5"], "two random 2.5 s segments"),
    ],
)
def test_the_config_names_the_ssl_objective_a_run_used(overrides, words):
    tree = {"name": "t", "models": {"sizes": [20000]}, "data_sizes": [100]}
    spec = parse_spec(tree, overrides=overrides)
    assert words in pretraining_objective("ssl", spec)


@pytest.mark.parametrize("name", ["resnet-sl", "resnet-ssl", "transformer-sl", "transformer-ssl"])
def test_exported_encoder_equals_the_runs(runs, exported, name):
    x = torch.randn(4, 12, N_SAMPLES)
    with torch.no_grad():
        expected = run_objective(runs[name]).encoder.features(x)
        assert torch.equal(load_encoder(exported[name]).features(x), expected)
        assert torch.equal(load_model(exported[name]).features(x), expected)


def test_export_cli_and_its_errors(runs, tmp_path):
    out = tmp_path / "enc"
    result = invoke("export", runs["resnet-ssl"], "--out", out, "--license", "cc-by-4.0")
    assert result.exit_code == 0 and str(out) in result.output and "with its probe" in result.output
    assert "license: cc-by-4.0" in (out / "README.md").read_text()
    assert "not empty (use --force" in one_line_error(
        invoke("export", runs["resnet-sl"], "--out", out)
    )
    assert invoke("export", runs["resnet-sl"], "--out", out, "--force").exit_code == 0
    assert read_config(out)["paradigm"] == "sl" and load_model(out).head is not None
    assert invoke("export", runs["resnet-ssl"], "--out", out, "--force").exit_code == 0
    assert load_model(out).head is None  # no stale head from the SL run

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
    no_probe = tmp_path / "study" / "runs" / runs["resnet-sl"].name
    shutil.copytree(runs["resnet-sl"], no_probe)
    shutil.copy(study / "spec.yaml", no_probe.parent.parent)
    (no_probe / "probe.safetensors").unlink()
    assert "no probe.safetensors (not evaluated, or evaluated by an older" in one_line_error(
        invoke("export", no_probe, "--out", tmp_path / "p")
    )
    assert not any((tmp_path / d).exists() for d in ("u", "s", "o", "p"))


def test_a_run_without_its_probe_is_evaluated_again(runs, tmp_path):
    study = tmp_path / "study"
    shutil.copytree(runs["resnet-ssl"].parent.parent, study)
    probe = study / "runs" / runs["resnet-ssl"].name / "probe.safetensors"
    kept = load_probe(probe)
    probe.unlink()
    summary = train_runs(load_spec(study / "spec.yaml"), study, progress=False)
    assert (summary.done, summary.reevaluated) == (1, 1)
    again = load_probe(probe)  # the same probe: the evaluation is deterministic
    assert (again.labels, again.probe.l2) == (kept.labels, kept.probe.l2)
    for field in ("mean", "std", "weights", "thresholds"):
        a, b = getattr(again.probe, field), getattr(kept.probe, field)
        assert np.array_equal(a, b), (field, a, b)


def copy_export(exported: dict[str, Path], name: str, to: Path) -> Path:
    shutil.copytree(exported[name], to)
    return to


def edit_config(folder: Path, **changes) -> None:
    config = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**config, **changes}))


def test_load_refuses_a_config_that_does_not_match_the_weights(exported, tmp_path):
    sl = copy_export(exported, "resnet-sl", tmp_path / "sl")
    config = read_config(sl)
    edit_config(sl, version=1)
    with pytest.raises(EncoderError, match="format version 1; this ecgscale reads 2"):
        load_model(sl)
    wider = {**config["shape"], "stem_width": config["shape"]["stem_width"] + 1}
    edit_config(sl, version=2, shape=wider)
    with pytest.raises(EncoderError, match=r"model.safetensors: weights do not match the config"):
        load_model(sl)
    edit_config(sl, shape=config["shape"], predictors={"probe": config["predictors"]["probe"]})
    with pytest.raises(EncoderError, match=r"\(unexpected: head.bias and 1 more\)"):
        load_encoder(sl)
    ssl = copy_export(exported, "resnet-ssl", tmp_path / "ssl")
    edit_config(ssl, predictors={"head": {"thresholds": [0.5] * 6}, "probe": {}})
    with pytest.raises(EncoderError, match=r"\(missing: head.bias and 1 more\)"):
        load_model(ssl)
    with pytest.raises(EncoderError, match="no config.json"):
        load_model(tmp_path)

    # on the command line: one line, exit status 2, no traceback
    line = one_line_error(invoke("embed", sl, sl, "--out", tmp_path / "f.csv"))
    assert line.startswith(f"ecgscale: error: {sl}/model.safetensors: weights do not match")
    assert "missing: head.bias" in one_line_error(
        invoke("predict", ssl, ssl, "--out", tmp_path / "p.csv")
    )


def test_load_refuses_a_truncated_weights_file(exported, tmp_path):
    out = copy_export(exported, "transformer-sl", tmp_path / "enc")
    weights = out / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:-100])
    with pytest.raises(EncoderError, match="unreadable, truncated or not safetensors"):
        load_model(out)
    line = one_line_error(invoke("predict", out, out, "--out", tmp_path / "p.csv"))
    assert line.startswith(f"ecgscale: error: {weights}: unreadable, truncated")
    assert not (tmp_path / "p.csv").exists()


# ---- Hugging Face Hub conventions -----------------------------------------------------------


def hub_cache(export: Path, cache: Path, repo_id: str) -> None:
    """``export`` as the Hugging Face Hub's cache holds a downloaded snapshot of ``repo_id``."""
    commit = "0" * 40
    repo = cache / ("models--" + repo_id.replace("/", "--"))
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(commit)
    shutil.copytree(export, repo / "snapshots" / commit)


def test_from_pretrained_offline(exported, tmp_path):
    pytest.importorskip("huggingface_hub", reason="the hub extra (huggingface_hub) not installed")
    x = torch.randn(2, 12, N_SAMPLES)
    reference = load_model(exported["resnet-ssl"])
    local = ECGModel.from_pretrained(exported["resnet-ssl"])
    hub_cache(exported["resnet-ssl"], tmp_path / "cache", "someone/ecg-resnet")
    cached = ECGModel.from_pretrained(
        "someone/ecg-resnet", cache_dir=tmp_path / "cache", local_files_only=True
    )
    with torch.no_grad():
        for model in (local, cached):
            assert not model.training
            assert torch.equal(model.features(x), reference.features(x))
            assert torch.equal(model.probabilities(x), reference.probabilities(x))
    with pytest.raises(EncoderError, match="someone/other: not a folder, and not found on the"):
        ECGModel.from_pretrained(
            "someone/other", cache_dir=tmp_path / "cache", local_files_only=True
        )


def test_from_pretrained_names_the_missing_extra(exported, monkeypatch):
    monkeypatch.setitem(sys.modules, "huggingface_hub", None)
    assert ECGModel.from_pretrained(exported["resnet-sl"]).head is not None  # a folder needs none
    with pytest.raises(
        EncoderError, match=r"needs huggingface_hub \(pip install 'ecgscale\[hub\]'"
    ):
        ECGModel.from_pretrained("someone/ecg-resnet")


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


# ---- predict --------------------------------------------------------------------------------


def write_wfdb(folder: Path, n: int = 3, fs: int = 250, seconds: float = 4) -> list[str]:
    """``n`` random WFDB records at ``fs`` Hz (not the encoders' rate) in ``folder``."""
    folder.mkdir(exist_ok=True)
    rng = np.random.default_rng(2)
    names = [f"mine{i}" for i in range(n)]
    for name in names:
        wfdb.wrsamp(
            name,
            fs=fs,
            units=["mV"] * 12,
            sig_name=list(LEADS),
            p_signal=rng.normal(0, 0.3, (int(seconds * fs), 12)),
            fmt=["16"] * 12,
            write_dir=str(folder),
        )
    return names


def expected_probabilities(run: Path, folder: Path, predictor: str) -> np.ndarray:
    """The run's own label probabilities for the records of ``folder``: its head, or its saved
    probe on its encoder's features."""
    x = torch.from_numpy(np.stack([s for _, s in harmonized(folder, Target(FS, N_SAMPLES))]))
    objective = run_objective(run)
    with torch.no_grad():
        if predictor == "head":
            return torch.sigmoid(objective.logits(x)).numpy()
        features = objective.encoder.features(x).double().numpy()
    return load_probe(run / "probe.safetensors").probe.predict(features)


@pytest.mark.parametrize("name, predictor", [("resnet-sl", "head"), ("transformer-ssl", "probe")])
def test_predict_wfdb_records_of_another_rate(runs, exported, tmp_path, name, predictor):
    """Acceptance: one row per record, six probabilities in [0, 1] and their calls; an SL
    export predicts with its own head, an SSL export with the study's probe."""
    folder = tmp_path / "ecgs"
    ids = write_wfdb(folder)
    out = tmp_path / "predictions.csv"
    result = invoke("predict", exported[name], folder, "--out", out, "--quiet")
    assert result.exit_code == 0, result.output
    assert result.output.strip() == (
        f"3 records x 6 label probabilities from the {predictor}, calls at its F1 thresholds: {out}"
    )
    frame = pd.read_csv(out, dtype={"record_id": str})
    calls = [f"{label}_call" for label in LABELS]
    assert list(frame.columns) == ["record_id", *LABELS, *calls]
    assert list(frame["record_id"]) == ids
    p = frame[list(LABELS)].to_numpy()
    assert ((p >= 0) & (p <= 1)).all()
    np.testing.assert_allclose(p, expected_probabilities(runs[name], folder, predictor), atol=1e-5)

    api = predict(exported[name], folder)
    assert api.attrs["predictor"] == predictor and api.attrs["rejected"] == []
    thresholds = load_model(exported[name]).thresholds(predictor)
    assert np.array_equal(api.attrs["thresholds"], thresholds)
    assert np.array_equal(api[calls].to_numpy(), api[list(LABELS)].to_numpy() >= thresholds)
    assert np.array_equal(frame[calls].to_numpy(), api[calls].to_numpy())

    one = tmp_path / "one.csv"  # one record, named by its header
    result = invoke("predict", exported[name], folder / f"{ids[1]}.hea", "--out", one, "--quiet")
    assert result.exit_code == 0, result.output
    assert result.output.strip().startswith("1 record x 6 label probabilities")
    single = pd.read_csv(one, dtype={"record_id": str})
    assert list(single["record_id"]) == [ids[1]]
    np.testing.assert_allclose(single[list(LABELS)].to_numpy()[0], p[1], atol=1e-6)


def test_predict_real_wfdb_folder(shared_data, runs, exported, tmp_path):
    """Real PTB-XL records at 500 Hz, resampled to the encoders' 100 Hz, as parquet."""
    folder = tmp_path / "ptbxl"
    folder.mkdir()
    headers = sorted((shared_data / "ptbxl-sample" / "records500" / "00000").glob("*.hea"))[:4]
    for header in headers:
        for ext in (".hea", ".dat"):
            shutil.copy(header.with_suffix(ext), folder)
    for name, predictor in (("transformer-sl", "head"), ("resnet-ssl", "probe")):
        out = tmp_path / f"{name}.parquet"
        result = invoke("predict", exported[name], folder, "--out", out, "--quiet")
        assert result.exit_code == 0, result.output
        frame = pd.read_parquet(out)
        assert list(frame["record_id"]) == [h.stem for h in headers]
        p = frame[list(LABELS)].to_numpy()
        assert p.shape == (4, 6) and ((p >= 0) & (p <= 1)).all()
        expected = expected_probabilities(runs[name], folder, predictor)
        np.testing.assert_allclose(p, expected, atol=1e-5)


def test_predict_with_the_probe_of_an_sl_export_and_its_errors(exported, tmp_path):
    folder = tmp_path / "ecgs"
    write_wfdb(folder, n=2)
    sl = exported["resnet-sl"]
    frame = predict(sl, folder, predictor="probe")
    assert frame.attrs["predictor"] == "probe"
    assert np.array_equal(frame.attrs["thresholds"], load_model(sl).thresholds("probe"))
    assert not np.allclose(frame[list(LABELS)], predict(sl, folder)[list(LABELS)])

    out = tmp_path / "p.csv"
    ssl = exported["resnet-ssl"]
    line = one_line_error(invoke("predict", ssl, folder, "--out", out, "--with", "head"))
    assert line == f"ecgscale: error: {ssl}: this export has no head (it has: probe)"
    assert "must end in .csv, .parquet" in one_line_error(
        invoke("predict", ssl, folder, "--out", tmp_path / "p.npy")
    )
    short = tmp_path / "short"
    write_wfdb(short, n=2, seconds=1)
    line = one_line_error(invoke("predict", ssl, short, "--out", out, "--quiet"))
    assert "no record could be read (2 records rejected: too_short 2;" in line
    assert not out.exists()


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
