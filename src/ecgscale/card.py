"""The model card (``README.md``) of an exported encoder: what it is, what it was pre-trained
on, what it takes, how well its label predictors did on every evaluation set, and how to load
it. The front matter carries the Hugging Face Hub's model-card metadata."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pandas as pd

from ecgscale import __version__
from ecgscale.data.store import StoreError, StoreInfo
from ecgscale.models.ladder import shape_summary
from ecgscale.numformat import compact_caps
from ecgscale.spec import StudySpec
from ecgscale.study.results import Results

PAPER = "How Do Electrocardiogram Models Scale? (2026)"
METHODS = {"probe": "frozen-encoder linear probe", "head": "the SL model's own head"}


def pretraining_data(spec: StudySpec, study_dir: Path) -> dict[str, Any]:
    """The store source holding the ID site's records (name, kind, path, reader options) and
    the harmonisation its records went through (``store.json``'s target, less fs and length)."""
    from ecgscale.study.runs import store_dir

    root = store_dir(spec, study_dir)
    info_path = root / "store.json"
    if not info_path.is_file():
        raise StoreError(f"{root}: the study's store is not there (no store.json)")
    info = StoreInfo.from_json(info_path.read_text(), info_path)
    site = spec.data.id_site
    entry = info.source(site) or next(
        (
            s
            for s in info.sources
            if site in set(pd.read_parquet(root / s.name / "meta.parquet", columns=["site"]).site)
        ),
        None,
    )
    if entry is None:
        raise StoreError(f"{root}: no source holds the ID site {site!r}")
    target = entry.settings["target"]
    return {
        "id_site": site,
        "source": entry.name,
        "kind": entry.kind,
        "path": entry.settings.get("path"),
        "options": entry.settings["options"],
        "harmonize": {k: v for k, v in target.items() if k not in ("fs", "n_samples")},
    }


def model_card(config: dict[str, Any], spec: StudySpec, study_dir: Path, license: str) -> str:
    """The README.md of an export whose ``config`` :func:`ecgscale.export.export_run` made."""
    family, paradigm = config["family"], config["paradigm"]
    tags = ["ecg", "electrocardiogram", "ecgscale", family, paradigm]
    sections = [
        "---",
        "library_name: ecgscale",
        f"license: {license}",
        f"tags: [{', '.join(tags)}]",
        "---",
        "",
        f"# {_title(config)}",
        "",
        f"A 12-lead ECG encoder from the ecgscale study `{config['study']}` (run "
        f"`{config['run']['run_id']}`), exported by ecgscale {__version__}. It maps "
        f"{_input_words(config)} to {config['dim']} pooled features; its "
        f"{' and '.join(config['predictors'])} {_verb(config['predictors'])} the probabilities "
        "of the six CODE labels "
        f"({', '.join(config['labels'])}). A research model, not a medical device.",
        "",
        "## Model",
        "",
        *_table(_model_rows(config)),
        "",
        "## Pre-training",
        "",
        *_table(_pretraining_rows(config, spec)),
        "",
        "## Input",
        "",
        *_table(_input_rows(config)),
        "",
        "`ecgscale predict` and `ecgscale embed` make any recording into this form as "
        "`ecgscale data ingest` does (WFDB folders, HDF5 files and every `ecgscale data sources` "
        "format; other rates are resampled).",
        "",
        *_evaluation(config, spec, study_dir),
        "## Licence",
        "",
        _licence(license),
        "",
        "## Citation",
        "",
        f"The method is that of *{PAPER}*; the software:",
        "",
        "```bibtex",
        "@software{ecgscale,",
        "  title   = {ecgscale: scaling-law studies of ECG deep-learning models},",
        f"  version = {{{__version__}}},",
        "}",
        "```",
        "",
        "## How to load",
        "",
        *_how_to_load(config),
    ]
    return "\n".join(sections) + "\n"


def _verb(subjects: Any) -> str:
    """The predictors' verb: one gives ("its probe gives"), two give ("its head and probe")."""
    return "gives" if len(subjects) == 1 else "give"


def _title(config: dict[str, Any]) -> str:
    names = {"resnet": "ResNet", "transformer": "Transformer"}
    family = names.get(config["family"], config["family"])
    n, d = config["n_params"], config["pretraining"]["records"]
    return (
        f"{family} {config['paradigm'].upper()} ECG encoder, N = {compact_caps(n)}, "
        f"D = {compact_caps(d)}"
    )


def _input_words(config: dict[str, Any]) -> str:
    i = config["input"]
    return f"{i['n_samples']} samples at {i['fs']:g} Hz of 12 leads in {i['units']}"


def _table(rows: list[tuple[str, str]]) -> list[str]:
    """A two-column Markdown table (``|`` in a cell escaped)."""
    cells = [(k, v.replace("|", "\\|")) for k, v in rows]
    return ["| | |", "|---|---|", *(f"| {k} | {v} |" for k, v in cells)]


def _model_rows(config: dict[str, Any]) -> list[tuple[str, str]]:
    predictors = {
        "head": "the SL head: Linear(dim, 6) on pooled features",
        "probe": "the study's probe: standardised features, L2-regularised logistic regression "
        f"(L2 {config['predictors']['probe']['l2']:g})",
    }
    return [
        ("family", config["family"]),
        ("shape", f"{shape_summary(config['family'], config['shape'])} (`config.json` `shape`)"),
        (
            "parameters N",
            f"{config['n_params']:,} ({config['n_params_nonembed']:,} non-embedding; "
            f"ladder rung {compact_caps(config['target_params'])})",
        ),
        ("features", f"{config['dim']} (mean-pooled tokens)"),
        ("paradigm", config["paradigm"].upper()),
        ("objective", config["objective"]),
        ("label predictors", "; ".join(predictors[p] for p in config["predictors"])),
    ]


def _pretraining_rows(config: dict[str, Any], spec: StudySpec) -> list[tuple[str, str]]:
    pre, data = config["pretraining"], config["pretraining"]["data"]
    if data["kind"] == "synthetic":
        what = (
            f"synthetic CODE-like records of site `{data['id_site']}` from ecgscale's generator "
            f"(a cardiac-dipole model; seed {data['options']['seed']}): no real patients"
        )
    else:
        what = (
            f"site `{data['id_site']}` of the source `{data['source']}` (kind `{data['kind']}`, "
            f"read from `{data['path']}`, options {json.dumps(data['options'])})"
        )
    h = data["harmonize"]
    band = "{:g}–{:g} Hz".format(*h["bandpass"]) if h["bandpass"] else "none"
    shift = ", each record circularly shifted by a random offset" if pre.get("time_shift") else ""
    return [
        ("data", what),
        (
            "records D",
            f"{pre['records']:,}: a nested subset of the ID site's training split (split by "
            "patient; the probe's patients held out)",
        ),
        (
            "preprocessing",
            f"resampled to {config['input']['fs']:g} Hz (anti-aliasing polyphase filter), leads "
            f"reordered by name, converted to mV, {h['align']}-cropped or "
            f"zero-padded to {config['input']['n_samples']} samples; band-pass {band}",
        ),
        (
            "training",
            f"{pre['steps']} steps of batch {pre['batch_size']} (at most {pre['max_steps']})"
            f"{shift}, AdamW, peak lr {pre['lr']:g}, weights of step {pre['best_step']} (best "
            f"validation loss {pre['pretrain_loss']:.4g}); stopped: {pre['stopped']}",
        ),
        ("study", f"`{spec.name}`: its full spec is `spec.yaml` in the study folder"),
    ]


def _input_rows(config: dict[str, Any]) -> list[tuple[str, str]]:
    i = config["input"]
    return [
        ("sampling rate", f"{i['fs']:g} Hz"),
        ("length", f"{i['n_samples']} samples ({i['n_samples'] / i['fs']:g} s)"),
        ("leads", ", ".join(i["leads"]) + " (in this order)"),
        ("units", f"{i['units']}; shape (batch, 12, {i['n_samples']}), float32"),
    ]


def _evaluation(config: dict[str, Any], spec: StudySpec, study_dir: Path) -> list[str]:
    """One AUROC table per predictor: per evaluation set and label, 95% bootstrap intervals."""
    lines = ["## Evaluation", ""]
    evals = _run_evals(study_dir / "results.sqlite", config["run"]["run_id"])
    if evals.empty:
        return [*lines, "No evaluation of this run is recorded in its study's results.", ""]
    lines += [
        "AUROC per label with its 95% bootstrap interval over patients, on the study's ID test "
        f"set (site `{spec.data.id_site}`) and each out-of-distribution (OOD) set; `n/a` where "
        "a set has no positive or no negative record of a label (or does not annotate it). F1 "
        "thresholds were chosen on the probe's validation set.",
        "",
    ]
    order = ["id", *spec.data.ood_sites]
    for method in [m for m in ("probe", "head") if m in set(evals["method"])]:
        rows = evals[evals["method"] == method]
        rows = rows.assign(
            rank=[order.index(s) if s in order else len(order) for s in rows.eval_set]
        )
        lines += [f"**{METHODS[method]}**", ""]
        lines += _auroc_table(rows.sort_values(["rank", "eval_set"]), config["labels"])
        lines.append("")
    return lines


def _run_evals(path: Path, run_id: str) -> pd.DataFrame:
    if not path.is_file():
        return pd.DataFrame(columns=["method"])
    evals = Results(path).evals()
    return evals[evals["run_id"] == run_id]


def _auroc_table(rows: pd.DataFrame, labels: list[str]) -> list[str]:
    head = ["set", "n", *labels, "macro"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for row in rows.itertuples(index=False):
        per = json.loads(row.per_label)
        cells = [_interval(per[k]["auroc"], per[k]["auroc_lo"], per[k]["auroc_hi"]) for k in labels]
        name = "ID test" if row.eval_set == "id" else f"OOD `{row.eval_set}`"
        macro = _interval(row.auroc, row.auroc_lo, row.auroc_hi)
        lines.append("| " + " | ".join([name, str(row.n), *cells, macro]) + " |")
    return lines


def _interval(value: float | None, lo: float | None, hi: float | None) -> str:
    if not _finite(value):
        return "n/a"
    if not (_finite(lo) and _finite(hi)):
        return f"{value:.3f}"
    return f"{value:.3f} [{lo:.3f}, {hi:.3f}]"


def _finite(value: float | None) -> bool:
    return value is not None and math.isfinite(value)


def _licence(license: str) -> str:
    if license == "other":
        return (
            "`other`: set by whoever shares these weights (`ecgscale export --license ID`); the "
            "terms of the pre-training data above apply to them."
        )
    return (
        f"`{license}` (`ecgscale export --license ID` sets another); the terms of the "
        "pre-training data above apply too."
    )


def _how_to_load(config: dict[str, Any]) -> list[str]:
    i = config["input"]
    return [
        "With ecgscale (`pip install ecgscale`; `ecgscale[hub]` for Hub repository ids):",
        "",
        "```python",
        "import torch",
        "from ecgscale import ECGModel, load_model",
        "",
        'model = load_model("path/to/this/folder")  # or ECGModel.from_pretrained("owner/name")',
        f"x = torch.zeros(1, 12, {i['n_samples']})  # mV at {i['fs']:g} Hz, leads as above",
        "features = model.features(x)  # (1, dim)",
        "probabilities = model.probabilities(x)  # (1, 6), of model.config['labels']",
        "calls = probabilities.numpy() >= model.thresholds()  # at the F1 thresholds",
        "```",
        "",
        "From the command line, for a folder of WFDB records (or an HDF5 file, `--kind` …):",
        "",
        "```bash",
        "ecgscale predict path/to/this/folder my_ecgs/ --out predictions.csv",
        "ecgscale embed path/to/this/folder my_ecgs/ --out features.parquet",
        "```",
        "",
        "Loading checks the weights against `config.json` and refuses any mismatch (missing, "
        "unexpected or resized tensors, a truncated file).",
    ]
