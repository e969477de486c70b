"""The objective interface shared by the paradigms, and the registry of objectives by name."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from torch import nn

from ecgscale.models import Encoder


class Objective(nn.Module):
    """An encoder plus a head; ``loss`` is what pre-training minimises."""

    paradigm: str = ""

    def __init__(self, encoder: Encoder) -> None:
        super().__init__()
        self.encoder = encoder

    def loss(
        self,
        x: torch.Tensor,
        y: torch.Tensor,
        generator: torch.Generator | None = None,
        noise: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Mean loss of batch ``x`` (B, 12, T) with labels ``y`` (B, n_labels).

        A random loss (SSL masks) takes ``noise`` from :meth:`draw`, one row per record of ``x``,
        or else draws it from ``generator``.
        """
        raise NotImplementedError

    def forward(
        self, x: torch.Tensor, y: torch.Tensor, noise: torch.Tensor | None = None
    ) -> torch.Tensor:
        """The loss, so that wrappers that call ``forward`` (DDP, ``torch.compile``) apply."""
        return self.loss(x, y, noise=noise)

    def draw(self, n: int, length: int, generator: torch.Generator) -> torch.Tensor | None:
        """The loss's random inputs for ``n`` records of ``length`` samples, one row per record,
        on the CPU; None for a deterministic loss. The trainer draws them for a whole batch and
        hands each part of it (a process's share, a micro-batch) its rows."""
        return None

    def weights(self, noise: torch.Tensor | None, n: int) -> torch.Tensor:
        """Each record's weight in the batch mean that ``loss`` returns (equal by default): a
        batch's loss is the sum of its parts' losses, each times its share of the weight."""
        return torch.ones(n)

    @classmethod
    def from_settings(cls, encoder: Encoder, *, fs: float, **settings: Any) -> Objective:
        """This objective on ``encoder`` for records at ``fs`` Hz, from the settings of
        :func:`create_objective` (each objective takes its own and ignores the others')."""
        return cls(encoder)

    def settle(self, read: ReadFn, rows: np.ndarray) -> None:
        """Once pre-training is over: bring the encoder's state in line with what it will be
        evaluated on, from the pre-training records at ``rows`` (nothing by default)."""


_OBJECTIVES: dict[str, type[Objective]] = {}


def register_objective(name: str) -> Callable[[type[Objective]], type[Objective]]:
    """Class decorator: register an :class:`Objective` subclass under ``name``; its
    :meth:`~Objective.from_settings` builds it for :func:`create_objective`."""

    def decorator(cls: type[Objective]) -> type[Objective]:
        if not issubclass(cls, Objective):
            raise TypeError(f"{cls.__name__} is not an Objective subclass")
        if name in _OBJECTIVES:
            raise ValueError(f"objective {name!r} is already registered")
        _OBJECTIVES[name] = cls
        return cls

    return decorator


def get_objective(name: str) -> type[Objective]:
    """The objective class registered under ``name``."""
    try:
        return _OBJECTIVES[name]
    except KeyError:
        raise KeyError(f"unknown objective {name!r}; known: {list_objectives()}") from None


def list_objectives(paradigm: str | None = None) -> list[str]:
    """Names of the registered objectives (of ``paradigm``, 'sl' or 'ssl', if given), sorted."""
    return sorted(n for n, cls in _OBJECTIVES.items() if paradigm in (None, cls.paradigm))


def create_objective(
    paradigm: str,
    encoder: Encoder,
    *,
    fs: float,
    objective: str = "masked",
    mask_ratio: float = 0.5,
    mask_patch_s: float = 0.25,
    mask: str = "time",
    norm_target: bool = True,
    crop_s: float = 5.0,
    temperature: float = 0.1,
    decoder_depth: int = 0,
) -> Objective:
    """The objective of a paradigm: 'sl' (multi-label BCE) or 'ssl', whose ``objective`` is
    ``masked`` (reconstruction of ``mask_patch_s``-second patches, a ``mask_ratio`` share hidden
    across all leads (``mask`` "time") or per lead ("lead"), targets standardised per patch with
    ``norm_target``, ``decoder_depth`` Transformer blocks before its linear head) or
    ``contrastive`` (NT-Xent between two ``crop_s``-second segments of a
    record, at ``temperature``): the objective registered under that name."""
    if paradigm == "sl":
        name = "supervised"
    elif paradigm != "ssl":
        raise ValueError(f"unknown paradigm {paradigm!r} (known: sl, ssl)")
    elif objective not in (known := list_objectives("ssl")):
        raise ValueError(f"unknown SSL objective {objective!r} (known: {', '.join(known)})")
    else:
        name = objective
    settings = {
        "mask_ratio": mask_ratio,
        "mask_patch_s": mask_patch_s,
        "mask": mask,
        "norm_target": norm_target,
        "crop_s": crop_s,
        "temperature": temperature,
        "decoder_depth": decoder_depth,
    }
    return get_objective(name).from_settings(encoder, fs=fs, **settings)


ReadFn = Callable[[np.ndarray], np.ndarray]

SETTLE_RECORDS = 1024
"""Records whose BatchNorm statistics :func:`reestimate_batchnorm` takes."""


@torch.no_grad()
def reestimate_batchnorm(encoder: nn.Module, read: ReadFn, rows, batch_size: int = 128) -> None:
    """Recompute ``encoder``'s BatchNorm statistics on the records at ``rows`` (the first
    :data:`SETTLE_RECORDS`), as the cumulative average over them; no-op without BatchNorm."""
    norms = [m for m in encoder.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    if not norms:
        return
    saved = [(m, m.momentum) for m in norms]
    for m in norms:
        m.reset_running_stats()
        m.momentum = None  # cumulative moving average over the batches below
    was_training = encoder.training
    encoder.train()
    dev = next(encoder.parameters()).device
    rows = rows[:SETTLE_RECORDS]
    for i in range(0, len(rows), batch_size):
        encoder(torch.from_numpy(read(rows[i : i + batch_size])).to(dev))
    for m, momentum in saved:
        m.momentum = momentum
    encoder.train(was_training)


@torch.no_grad()
def predict_rows(
    module: nn.Module,
    fn: Callable[[torch.Tensor], torch.Tensor],
    read: ReadFn,
    rows: np.ndarray,
    batch_size: int = 256,
) -> np.ndarray:
    """``fn`` applied in eval mode to the records at ``rows``, in batches, as float64 numpy."""
    module.eval()
    dev = next(module.parameters()).device
    out = [
        fn(torch.from_numpy(read(rows[i : i + batch_size])).to(dev)).float().cpu().numpy()
        for i in range(0, len(rows), batch_size)
    ]
    return np.concatenate(out).astype(np.float64)
