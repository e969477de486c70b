"""An exported encoder (the folder ``ecgscale export`` writes) loaded back, checked.

An exported model is a folder laid out as a Hugging Face model repository::

    config.json        {"format": "ecgscale-encoder", "version": 2, "family", "shape", "input",
                        "labels", "predictors", "pretraining", "run", ...}
    model.safetensors  encoder.*  the encoder's weights
                       head.*     SL runs: the Linear(dim, 6) head over ``labels``
                       probe.*    the study's six-label probe: mean, std, linear.weight/bias
    README.md          the model card (architecture, sizes, pre-training, input, probe AUROC
                       on every evaluation set, licence, citation, how to load it)

``shape`` holds the family's constructor kwargs, so :func:`load_model` rebuilds the model with
:func:`~ecgscale.models.create_model` alone (no ladder, spec or study needed); ``input`` says
what the encoder takes: ``n_samples`` samples at ``fs`` Hz of the 12 ``leads`` in mV, made as
pre-training's were (``align``, ``bandpass``). ``predictors`` lists what gives the ``labels``'
probabilities (``head``, ``probe``), each with its F1 thresholds chosen on the probe's
validation set. Every load checks the weights against the config: a missing, unexpected or
resized tensor, or a truncated file, is an :class:`EncoderError` naming the file, never a model
with random weights. :func:`ecgscale.export.export_run` writes such a folder from a study's run.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import load_file
from torch import nn

from ecgscale.data.schema import LEADS
from ecgscale.models import Encoder, create_model

FORMAT = "ecgscale-encoder"
VERSION = 2
FILES = ("config.json", "model.safetensors", "README.md")
"""What :func:`ecgscale.export.export_run` writes."""


class EncoderError(ValueError):
    """A run folder, exported encoder or set of recordings that cannot be used (one line)."""


class LabelProbe(nn.Module):
    """The study's linear probe on pooled features: standardised, then one logit per label."""

    def __init__(self, dim: int, n_labels: int) -> None:
        super().__init__()
        self.register_buffer("mean", torch.zeros(dim))
        self.register_buffer("std", torch.ones(dim))
        self.linear = nn.Linear(dim, n_labels)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.linear((features - self.mean) / self.std)


class ECGModel(nn.Module):
    """An exported encoder with what turns its features into label probabilities: an SL run's
    own ``head`` and the study's six-label ``probe`` (None where the config has none)."""

    def __init__(self, config: dict[str, Any]) -> None:
        super().__init__()
        self.config = config
        self.encoder = create_model(config["family"], **config["shape"])
        predictors, n_labels = config["predictors"], len(config["labels"])
        dim = self.encoder.dim
        self.head = nn.Linear(dim, n_labels) if "head" in predictors else None
        self.probe = LabelProbe(dim, n_labels) if "probe" in predictors else None

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Pooled features ``(B, dim)`` of ``x`` ``(B, 12, n_samples)`` in mV."""
        return self.encoder.features(x)

    def predictor(self, name: str | None = None) -> str:
        """``name`` if this model has it, else its default: an SL run's head, else the probe."""
        predictors = self.config["predictors"]
        if name is None:
            name = next((p for p in ("head", "probe") if p in predictors), None)
            if name is None:
                raise EncoderError("this export has no head or probe to predict labels with")
        elif name not in predictors:
            have = ", ".join(predictors) or "none"
            raise EncoderError(f"this export has no {name} (it has: {have})")
        return name

    @torch.no_grad()
    def probabilities(self, x: torch.Tensor, predictor: str | None = None) -> torch.Tensor:
        """Probabilities ``(B, len(labels))`` of ``config["labels"]`` from the head or probe,
        computed without gradients (a prediction; :meth:`features` keeps them)."""
        module = getattr(self, self.predictor(predictor))
        return torch.sigmoid(module(self.features(x)))

    def thresholds(self, predictor: str | None = None) -> np.ndarray:
        """The F1 thresholds of a predictor: a label is called where its probability ``>=``."""
        return np.array(self.config["predictors"][self.predictor(predictor)]["thresholds"])

    @classmethod
    def from_pretrained(
        cls,
        name_or_path: str | Path,
        *,
        revision: str | None = None,
        cache_dir: str | Path | None = None,
        token: str | bool | None = None,
        local_files_only: bool = False,
        device: str | torch.device = "cpu",
    ) -> ECGModel:
        """An exported model from a local folder, or from a Hugging Face Hub repository id
        (``owner/name``: downloaded by ``huggingface_hub``, which it needs) as Hugging Face's
        ``from_pretrained`` does. Checked exactly as :func:`load_model` checks."""
        if Path(name_or_path).is_dir():
            return load_model(name_or_path, device)
        return load_model(
            _download(str(name_or_path), revision, cache_dir, token, local_files_only), device
        )


def _download(
    repo_id: str,
    revision: str | None,
    cache_dir: str | Path | None,
    token: str | bool | None,
    local_files_only: bool,
) -> Path:
    """The local snapshot of an exported model on the Hugging Face Hub."""
    try:
        from huggingface_hub import snapshot_download
        from huggingface_hub.errors import HfHubHTTPError
    except ImportError:
        raise EncoderError(
            f"{repo_id}: not a folder; loading it from the Hugging Face Hub needs huggingface_hub "
            "(pip install 'ecgscale[hub]')"
        ) from None
    try:
        folder = snapshot_download(
            repo_id,
            revision=revision,
            cache_dir=cache_dir,
            token=token,
            local_files_only=local_files_only,
            allow_patterns=list(FILES),
        )
    except (HfHubHTTPError, OSError, ValueError) as error:  # offline, unknown repo, bad id
        first = (str(error).splitlines() or [""])[0]
        raise EncoderError(
            f"{repo_id}: not a folder, and not found on the Hugging Face Hub "
            f"({type(error).__name__}: {first})"
        ) from error
    return Path(folder)


def load_model(path: Path | str, device: str | torch.device = "cpu") -> ECGModel:
    """The exported model in the folder ``path``, in eval mode on ``device``."""
    path = Path(path)
    config = read_config(path)
    file = path / "model.safetensors"
    model = build_model(config, file)
    load_checked(model, read_weights(file), file)
    return model.to(device).eval()


def load_encoder(path: Path | str, device: str | torch.device = "cpu") -> Encoder:
    """The exported encoder in ``path``, in eval mode on ``device``; ``encoder.config`` holds
    its config.json."""
    model = load_model(path, device)
    encoder = model.encoder
    encoder.config = model.config
    return encoder


def load_head(path: Path | str, device: str | torch.device = "cpu") -> nn.Linear:
    """The SL head exported in ``path``: logits of ``config["labels"]`` from pooled features."""
    model = load_model(path, device)
    if model.head is None:
        raise EncoderError(f"{path}: no head (only SL runs have one; the probe gives labels)")
    return model.head


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
            f"{file}: format version {config.get('version')!r}; this ecgscale reads {VERSION} "
            "(export the run again)"
        )
    missing = [k for k in ("family", "shape", "labels", "predictors", "input") if k not in config]
    given = config.get("input") if isinstance(config.get("input"), dict) else {}
    missing += [f"input.{k}" for k in ("fs", "n_samples", "align", "bandpass") if k not in given]
    if missing:
        raise EncoderError(f"{file}: lacks {', '.join(missing)} (export the run again)")
    if given.get("leads", list(LEADS)) != list(LEADS) or given.get("units", "mV") != "mV":
        raise EncoderError(
            f"{file}: input leads {given.get('leads')} in {given.get('units')!r}; the encoders "
            f"read the 12 standard leads ({', '.join(LEADS)}) in mV, as exported"
        )
    return config


def read_weights(file: Path) -> dict[str, torch.Tensor]:
    if not file.is_file():
        raise EncoderError(f"{file}: not found")
    try:
        return load_file(str(file))
    except SafetensorError as error:
        raise EncoderError(f"{file}: unreadable, truncated or not safetensors ({error})") from error


def build_model(config: dict[str, Any], file: Path) -> ECGModel:
    """The model ``config`` describes, with fresh weights (to be loaded from ``file``)."""
    try:
        return ECGModel(config)
    except (KeyError, TypeError, ValueError) as error:
        raise EncoderError(
            f"{file}: cannot build {config.get('family')} {config.get('shape')}: {error}"
        ) from error


def load_checked(module: nn.Module, state: dict[str, torch.Tensor], file: Path) -> None:
    """Load ``state`` into ``module`` (strict); EncoderError naming ``file`` on any mismatch."""
    expected = module.state_dict()
    missing, unexpected = sorted(expected.keys() - state.keys()), sorted(state.keys() - expected)
    resized = [k for k in expected.keys() & state.keys() if expected[k].shape != state[k].shape]
    for problem, keys in (("missing", missing), ("unexpected", unexpected), ("resized", resized)):
        if keys:
            more = f" and {len(keys) - 1} more" if len(keys) > 1 else ""
            raise EncoderError(
                f"{file}: weights do not match the config ({problem}: {keys[0]}{more})"
            )
    module.load_state_dict(state)
