"""Trained encoders out of a study: export a run's encoder to a folder of its own, load it back.

An exported encoder is a folder::

    encoder.safetensors   the encoder's state dict (keys without the ``encoder.`` prefix)
    head.safetensors      SL runs only: the Linear(dim, 6) head over ``labels`` (weight, bias)
    config.json           {"format": "ecgscale-encoder", "version": 1, "family", "shape", ...}

``shape`` holds the family's constructor kwargs, so :func:`load_encoder` rebuilds the model with
:func:`~ecgscale.models.create_model` alone (no ladder, spec or study needed); ``input`` says
what the encoder takes: ``n_samples`` samples at ``fs`` Hz of the 12 ``leads`` in mV.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn

from ecgscale import __version__
from ecgscale.data.schema import LABELS, LEADS
from ecgscale.models import Encoder, create_model, shape_for
from ecgscale.study.spec import StudySpec, load_spec

FORMAT = "ecgscale-encoder"
VERSION = 1


class EncoderError(ValueError):
    """A run folder, exported encoder or set of recordings that cannot be used (one line)."""


def export_run(run_dir: Path | str, out_dir: Path | str, force: bool = False) -> Path:
    """Write the encoder of the finished run ``run_dir`` (``<study>/runs/<run_id>``), and its
    head for an SL run, to ``out_dir`` with a ``config.json``; returns ``out_dir``.

    ``out_dir`` must be new or empty unless ``force``.
    """
    run_dir, out_dir = Path(run_dir), Path(out_dir)
    run, spec = _finished_run(run_dir)
    if out_dir.exists() and any(out_dir.iterdir()) and not force:
        raise EncoderError(f"{out_dir}: exists and is not empty (use --force to write into it)")
    weights = _read_weights(run_dir / "model.safetensors")
    shape = shape_for(
        run["family"], run["target_params"], input_len=spec.data.n_samples, fs=spec.data.fs
    )
    state = _with_prefix(weights, "encoder.")
    encoder = _rebuild(run["family"], shape, state, run_dir / "model.safetensors")
    out_dir.mkdir(parents=True, exist_ok=True)
    save_file(state, str(out_dir / "encoder.safetensors"))
    if run["paradigm"] == "sl":
        save_file(_with_prefix(weights, "head."), str(out_dir / "head.safetensors"))
    else:
        (out_dir / "head.safetensors").unlink(missing_ok=True)
    config = _config(run, spec, shape, encoder)
    (out_dir / "config.json").write_text(json.dumps(config, indent=1) + "\n")
    return out_dir


def load_encoder(path: Path | str, device: str | torch.device = "cpu") -> Encoder:
    """The exported encoder in ``path``, in eval mode on ``device``; ``encoder.config`` holds
    its config.json."""
    path = Path(path)
    config = read_config(path)
    file = path / "encoder.safetensors"
    encoder = _rebuild(config["family"], config["shape"], _read_weights(file), file)
    encoder.config = config
    return encoder.to(device).eval()


def load_head(path: Path | str, device: str | torch.device = "cpu") -> nn.Linear:
    """The SL head exported in ``path``: logits of ``config["labels"]`` from pooled features."""
    path = Path(path)
    config = read_config(path)
    file = path / "head.safetensors"
    if "labels" not in config or not file.is_file():
        raise EncoderError(f"{path}: no head.safetensors (only SL runs have a head)")
    head = nn.Linear(config["dim"], len(config["labels"]))
    _load_checked(head, _read_weights(file), file)
    return head.to(device).eval()


def read_config(path: Path | str) -> dict[str, Any]:
    """The config.json of the exported encoder in ``path``, its format and version checked."""
    file = Path(path) / "config.json"
    if not file.is_file():
        raise EncoderError(f"{path}: no config.json (not an exported encoder)")
    try:
        config = json.loads(file.read_text())
    except json.JSONDecodeError as error:
        raise EncoderError(f"{file}: not valid JSON ({error})") from error
    if not isinstance(config, dict) or config.get("format") != FORMAT:
        raise EncoderError(f"{file}: not an {FORMAT} config")
    if config.get("version") != VERSION:
        raise EncoderError(
            f"{file}: format version {config.get('version')!r}; this ecgscale reads {VERSION}"
        )
    return config


def _finished_run(run_dir: Path) -> tuple[dict[str, Any], StudySpec]:
    """The ``run`` entry of train.json and the study's spec; EncoderError if not finished."""
    model, train = run_dir / "model.safetensors", run_dir / "train.json"
    if not run_dir.is_dir() or not (run_dir.parent.name == "runs" or train.is_file()):
        raise EncoderError(f"{run_dir}: not a run folder (expected <study>/runs/<run_id>)")
    if not (model.is_file() and train.is_file()):
        missing = "model.safetensors" if not model.is_file() else "train.json"
        raise EncoderError(f"{run_dir}: run not finished (no {missing}); train it first")
    spec_file = run_dir.parent.parent / "spec.yaml"
    if not spec_file.is_file():
        raise EncoderError(f"{run_dir}: no spec.yaml found at {spec_file}")
    return json.loads(train.read_text())["run"], load_spec(spec_file)


def _read_weights(file: Path) -> dict[str, torch.Tensor]:
    if not file.is_file():
        raise EncoderError(f"{file}: not found")
    try:
        return load_file(str(file))
    except SafetensorError as error:
        raise EncoderError(f"{file}: not a safetensors file ({error})") from error


def _with_prefix(weights: dict[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    """The entries of ``weights`` under ``prefix``, with the prefix removed."""
    return {k.removeprefix(prefix): v for k, v in weights.items() if k.startswith(prefix)}


def _rebuild(
    family: str, shape: dict[str, Any], state: dict[str, torch.Tensor], file: Path
) -> Encoder:
    """``family``'s model of ``shape`` with the weights ``state`` read from ``file``."""
    try:
        encoder = create_model(family, **shape)
    except (KeyError, TypeError, ValueError) as error:
        raise EncoderError(f"{file}: cannot build {family} {shape}: {error}") from error
    _load_checked(encoder, state, file)
    return encoder


def _load_checked(module: nn.Module, state: dict[str, torch.Tensor], file: Path) -> None:
    """Load ``state`` into ``module`` (strict); EncoderError naming ``file`` on any mismatch."""
    expected = module.state_dict()
    missing, unexpected = sorted(expected.keys() - state.keys()), sorted(state.keys() - expected)
    resized = [k for k in expected.keys() & state.keys() if expected[k].shape != state[k].shape]
    for problem, keys in (("missing", missing), ("unexpected", unexpected), ("resized", resized)):
        if keys:
            more = f" and {len(keys) - 1} more" if len(keys) > 1 else ""
            raise EncoderError(
                f"{file}: weights do not match the model's shape ({problem}: {keys[0]}{more})"
            )
    module.load_state_dict(state)


def _config(run: dict, spec: StudySpec, shape: dict, encoder: Encoder) -> dict[str, Any]:
    config = {
        "format": FORMAT,
        "version": VERSION,
        "family": run["family"],
        "shape": shape,
        "target_params": run["target_params"],
        "n_params": sum(p.numel() for p in encoder.parameters()),
        "dim": encoder.dim,
        "input": {
            "fs": spec.data.fs,
            "n_samples": spec.data.n_samples,
            "leads": list(LEADS),
            "units": "mV",
        },
        "run": run,
        "study": spec.name,
        "ecgscale": __version__,
    }
    if run["paradigm"] == "sl":
        config["labels"] = list(LABELS)
    return config
