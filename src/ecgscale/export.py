"""Trained encoders out of a study: a finished run exported to a folder of its own, with its
config and model card (the folder's layout, and loading it back: :mod:`ecgscale.models.exported`).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import save_file

from ecgscale import __version__
from ecgscale.card import model_card, pretraining_data
from ecgscale.data.schema import LABELS, LEADS
from ecgscale.evaluate.probe import PROBE_FILE, Probe, SavedProbe, load_probe
from ecgscale.models import create_model, measure, shape_for
from ecgscale.models.exported import (
    FORMAT,
    VERSION,
    EncoderError,
    build_model,
    load_checked,
    read_weights,
)
from ecgscale.spec import StudySpec
from ecgscale.study.runs import UNTRAINED
from ecgscale.study.specfile import load_spec


def export_run(
    run_dir: Path | str, out_dir: Path | str, *, force: bool = False, license: str | None = None
) -> Path:
    """Write the finished run ``run_dir`` (``<study>/runs/<run_id>``): its encoder, an SL run's
    head and the run's six-label probe, with ``config.json`` and a ``README.md`` model card, to
    ``out_dir``; returns ``out_dir``.

    ``out_dir`` must be new or empty unless ``force``. ``license`` (a Hub licence id) defaults
    to ``mit`` for a model pre-trained on synthetic data, else ``other``.
    """
    run_dir, out_dir = Path(run_dir), Path(out_dir)
    run, summary, spec = _finished_run(run_dir)
    if out_dir.exists() and any(out_dir.iterdir()) and not force:
        raise EncoderError(f"{out_dir}: exists and is not empty (use --force to write into it)")
    saved = _saved_probe(run_dir, run["paradigm"])
    shape = shape_for(
        run["family"], run["target_params"], input_len=spec.data.n_samples, fs=spec.data.fs
    )
    study_dir = run_dir.parent.parent
    config = _config(run, summary, spec, study_dir, shape, saved)
    model = build_model(config, run_dir / "model.safetensors")
    state = _run_state(run_dir / "model.safetensors", run["paradigm"])
    state |= {f"probe.{k}": v for k, v in _probe_state(saved.probe).items()}
    load_checked(model, state, run_dir / "model.safetensors")
    out_dir.mkdir(parents=True, exist_ok=True)
    save_file(model.state_dict(), str(out_dir / "model.safetensors"))
    (out_dir / "config.json").write_text(json.dumps(config, indent=1) + "\n")
    card = model_card(config, spec, study_dir, license or _default_license(spec))
    (out_dir / "README.md").write_text(card)
    return out_dir


def _finished_run(run_dir: Path) -> tuple[dict[str, Any], dict[str, Any], StudySpec]:
    """The ``run`` and ``summary`` entries of train.json and the study's spec; EncoderError if
    the run is not finished."""
    model, train = run_dir / "model.safetensors", run_dir / "train.json"
    if not run_dir.is_dir() or not (run_dir.parent.name == "runs" or train.is_file()):
        raise EncoderError(f"{run_dir}: not a run folder (expected <study>/runs/<run_id>)")
    train_json = json.loads(train.read_text()) if train.is_file() else None
    if train_json and train_json["run"]["paradigm"] == UNTRAINED:
        raise EncoderError(
            f"{run_dir}: an untrained reference (eval.untrained): nothing was trained to export"
        )
    if not (model.is_file() and train_json):
        missing = "model.safetensors" if not model.is_file() else "train.json"
        raise EncoderError(f"{run_dir}: run not finished (no {missing}); train it first")
    spec_file = run_dir.parent.parent / "spec.yaml"
    if not spec_file.is_file():
        raise EncoderError(f"{run_dir}: no spec.yaml found at {spec_file}")
    return train_json["run"], train_json["summary"], load_spec(spec_file)


def _saved_probe(run_dir: Path, paradigm: str) -> SavedProbe:
    """The run's six-label probe (and an SL run's head thresholds); EncoderError if it was not
    saved."""
    file = run_dir / PROBE_FILE
    if not file.is_file():
        raise EncoderError(
            f"{run_dir}: no {PROBE_FILE} (not evaluated, or evaluated by an older ecgscale); "
            "`ecgscale train` on its study evaluates it again and saves it"
        )
    try:
        saved = load_probe(file)
    except ValueError as error:
        raise EncoderError(str(error)) from error
    if saved.labels != list(LABELS):
        raise EncoderError(f"{file}: a probe of {saved.labels}, not of {list(LABELS)}")
    if paradigm == "sl" and saved.head_thresholds is None:
        raise EncoderError(f"{file}: no F1 thresholds of the SL head")
    return saved


def _run_state(file: Path, paradigm: str) -> dict[str, torch.Tensor]:
    """The encoder (and an SL run's head) of a run's weights, keyed as in :class:`ECGModel`."""
    keep = ("encoder.", "head.") if paradigm == "sl" else ("encoder.",)
    return {k: v for k, v in read_weights(file).items() if k.startswith(keep)}


def _probe_state(probe: Probe) -> dict[str, torch.Tensor]:
    """The state dict of a :class:`~ecgscale.models.exported.LabelProbe` holding the fitted
    ``probe`` (float32)."""
    tensors = {
        "mean": probe.mean,
        "std": probe.std,
        "linear.weight": probe.weights[:-1].T,
        "linear.bias": probe.weights[-1],
    }
    return {
        k: torch.tensor(np.ascontiguousarray(v), dtype=torch.float32) for k, v in tensors.items()
    }


def _config(
    run: dict,
    summary: dict,
    spec: StudySpec,
    study_dir: Path,
    shape: dict,
    saved: SavedProbe,
) -> dict[str, Any]:
    data = pretraining_data(spec, study_dir)
    train = spec.train.for_family(run["family"]).for_data(int(run["data_size"]))
    with torch.device("meta"):
        encoder = create_model(run["family"], **shape)
    stats = measure(encoder, spec.data.n_samples)
    predictors: dict[str, Any] = {
        "probe": {"thresholds": _floats(saved.probe.thresholds), "l2": saved.probe.l2}
    }
    if run["paradigm"] == "sl":
        predictors = {"head": {"thresholds": _floats(saved.head_thresholds)}} | predictors
    return {
        "format": FORMAT,
        "version": VERSION,
        "family": run["family"],
        "shape": shape,
        "target_params": run["target_params"],
        "n_params": stats.n_params,
        "n_params_nonembed": stats.n_params_nonembedding,
        "dim": encoder.dim,
        "input": {
            "fs": spec.data.fs,
            "n_samples": spec.data.n_samples,
            "leads": list(LEADS),
            "units": "mV",
            "align": data["harmonize"]["align"],
            "bandpass": data["harmonize"]["bandpass"],
        },
        "paradigm": run["paradigm"],
        "objective": pretraining_objective(run["paradigm"], spec),
        "labels": list(LABELS),
        "predictors": predictors,
        "pretraining": {
            "data": data,
            "records": run["data_size"],
            "batch_size": train.batch_size,
            "lr": run.get("lr") or train.lr,  # a swept run records the rate it trained at
            "max_steps": train.max_steps,
            "time_shift": train.time_shift,
            **summary,
        },
        "run": run,
        "study": spec.name,
        "ecgscale": __version__,
    }


def pretraining_objective(paradigm: str, spec: StudySpec) -> str:
    """What a run of ``paradigm`` minimised in pre-training, in words (``objective`` in its
    config)."""
    if paradigm == "sl":
        return f"multi-label binary cross-entropy on the six labels ({', '.join(LABELS)})"
    ssl = spec.ssl
    if ssl.objective == "contrastive":
        return (
            f"contrastive (NT-Xent) between two random {ssl.crop_s:g} s segments of each record, "
            f"temperature {ssl.temperature:g}"
        )
    hidden = "in every lead at once" if ssl.mask == "time" else "in each lead independently"
    target = ", each patch's target standardised" if ssl.norm_target else ""
    decoder = (
        f", decoded by a {ssl.decoder_depth}-block Transformer decoder (discarded)"
        if ssl.decoder_depth
        else ""
    )
    return (
        f"masked reconstruction of {ssl.mask_patch_s:g} s time patches, a {ssl.mask_ratio:g} "
        f"share hidden {hidden}{target}{decoder}"
    )


def _floats(values: np.ndarray) -> list[float]:
    return [float(v) for v in values]


def _default_license(spec: StudySpec) -> str:
    """``mit`` (ecgscale's) for a model pre-trained on its synthetic data, else ``other``."""
    return "mit" if spec.data.source == "synthetic" else "other"
