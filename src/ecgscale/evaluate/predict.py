"""Label probabilities of one's own recordings from an exported model.

Records are read and harmonised exactly as :func:`ecgscale.evaluate.embed.embed` does; an SL
export predicts with its own head by default, any export with the study's six-label probe. A
prediction also calls each label positive where its probability reaches the predictor's F1
threshold (chosen on the probe's validation set when the run was evaluated).
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from ecgscale.evaluate.embed import computed, input_target
from ecgscale.models.exported import ECGModel, EncoderError, load_model

PREDICTION_FORMATS = (".csv", ".parquet")
"""Extensions :func:`write_predictions` writes."""


def predict(
    model_or_dir: ECGModel | Path | str,
    recordings: Path | str,
    *,
    predictor: str | None = None,
    kind: str | None = None,
    options: dict[str, Any] | None = None,
    batch_size: int = 64,
    progress: bool = False,
) -> pd.DataFrame:
    """One row per record: ``record_id``, the probability of each label (columns named as
    ``model.config["labels"]``), then ``<label>_call`` (1 where the probability reaches the F1
    threshold, else 0).

    ``model_or_dir`` is an exported model's folder or :func:`load_model`'s result;
    ``predictor`` ``head`` or ``probe`` (default: the SL head where there is one); ``kind`` and
    ``options`` as for :func:`~ecgscale.evaluate.embed.embed`. ``frame.attrs`` holds
    ``rejected`` (records left out, why), ``predictor`` and ``thresholds``; EncoderError if no
    record is left, or the model has no such predictor.
    """
    model = model_or_dir
    if not isinstance(model, ECGModel):
        model = load_model(model_or_dir)
    try:
        predictor = model.predictor(predictor)
    except EncoderError as error:
        raise EncoderError(f"{model_or_dir}: {error}") from None
    model.eval()
    reader = {"kind": kind, "options": options, "progress": progress}
    target = input_target(model)
    compute = functools.partial(probabilities, model, predictor=predictor)
    ids, p, rejected = computed(recordings, target, compute, "read", batch_size, reader)
    thresholds = model.thresholds(predictor)
    frame = prediction_frame(ids, p, model.config["labels"], thresholds)
    frame.attrs.update(rejected=rejected, predictor=predictor, thresholds=thresholds)
    return frame


@torch.inference_mode()
def probabilities(model: ECGModel, signals: list[np.ndarray], predictor: str) -> np.ndarray:
    """Label probabilities ``(n, n_labels)`` float32 of harmonised signals, as one batch."""
    device = next(model.parameters()).device
    x = torch.from_numpy(np.stack(signals)).to(device)
    return model.probabilities(x, predictor).float().cpu().numpy()


def prediction_frame(
    ids: list[str], p: np.ndarray, labels: list[str], thresholds: np.ndarray
) -> pd.DataFrame:
    """``record_id``, a probability column per label, then a ``<label>_call`` column per label."""
    calls = (p >= thresholds).astype(np.int8)
    return pd.concat(
        [
            pd.DataFrame({"record_id": pd.array(ids, dtype="string")}),
            pd.DataFrame(p, columns=labels),
            pd.DataFrame(calls, columns=[f"{label}_call" for label in labels]),
        ],
        axis=1,
    )


def check_predictions_path(path: Path | str) -> None:
    """EncoderError unless ``path`` ends in an extension :func:`write_predictions` writes."""
    if Path(path).suffix.lower() not in PREDICTION_FORMATS:
        raise EncoderError(
            f"{path}: the predictions file must end in {', '.join(PREDICTION_FORMATS)}"
        )


def write_predictions(frame: pd.DataFrame, path: Path | str) -> None:
    """Write :func:`predict`'s frame as .csv or .parquet."""
    path = Path(path)
    check_predictions_path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    plain = frame.copy(deep=False)
    plain.attrs = {}  # pandas would write attrs into the parquet metadata
    if path.suffix.lower() == ".parquet":
        plain.to_parquet(path, index=False)
    else:
        plain.to_csv(path, index=False)
