"""The encoder interface shared by every model family, and the family registry.

Contract (what every objective and every evaluation may rely on):

- Input ``x``: float tensor ``(B, n_leads, T)`` in millivolts, leads in the canonical order
  (:data:`ecgscale.data.schema.LEADS`, ``n_leads == 12`` by default), any ``T >= 1``.
- ``encoder(x)`` returns tokens ``(B, L, D)``: feature vectors over time, the family's final
  norm already applied to each of them, with ``D == encoder.dim`` and
  ``L == encoder.n_tokens(T) == ceil(T / encoder.token_span)``.
- Token ``i`` covers input samples ``[i * token_span, (i + 1) * token_span)``. The input is
  zero-padded on the right up to a multiple of ``token_span`` inside the encoder, so the last
  token may cover padding; a head that reconstructs ``token_span * n_leads`` samples per token
  should crop its output back to ``T``.
- ``encoder.features(x)`` returns the pooled representation ``(B, D)``: the mean of the tokens.
- ``encoder.embedding_parameters()`` yields the input-embedding parameters (ResNet stem conv,
  Transformer stem and token embedding), which non-embedding parameter counts leave out.

Families register themselves timm-style::

    @register_family("resnet")
    class ResNet1d(Encoder): ...

    encoder = create_model("resnet", widths=(32, 64), blocks=(1, 1), downsample=(4, 4))
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from typing import Any

import torch.nn.functional as F
from torch import Tensor, nn


def pad_time(x: Tensor, multiple: int) -> Tensor:
    """``x`` zero-padded on the right of its last (time) dimension to a multiple of
    ``multiple``; ``x`` itself when it already is one (``F.pad`` would copy it)."""
    missing = -x.shape[-1] % multiple
    return F.pad(x, (0, missing)) if missing else x


class Encoder(nn.Module):
    """Base class of every family: maps ``(B, n_leads, T)`` millivolts to tokens ``(B, L, D)``.

    Subclasses set ``dim``, ``token_span`` and ``n_leads`` in ``__init__``, implement
    ``forward`` (calling :meth:`pad` first) and :meth:`embedding_parameters`.
    ``family`` is set by :func:`register_family`.
    """

    family: str
    dim: int
    token_span: int
    n_leads: int

    def n_tokens(self, input_len: int) -> int:
        """Number of tokens ``L`` produced for an input of ``input_len`` samples."""
        return math.ceil(input_len / self.token_span)

    def pad(self, x: Tensor) -> Tensor:
        """Check the input's shape and zero-pad time on the right to a multiple of token_span."""
        if x.ndim != 3 or x.shape[1] != self.n_leads:
            raise ValueError(
                f"{type(self).__name__} expects (B, {self.n_leads}, T), got {tuple(x.shape)}"
            )
        return pad_time(x, self.token_span)

    def features(self, x: Tensor) -> Tensor:
        """Pooled representation ``(B, D)``: the mean over tokens of ``forward(x)``.

        The family's final norm is applied to every token inside ``forward``, so the pooled
        vector is a mean of normalised tokens.
        """
        return self(x).mean(dim=1)

    def embedding_parameters(self) -> Iterator[nn.Parameter]:
        """Parameters of the input embedding (left out of non-embedding counts)."""
        raise NotImplementedError


_FAMILIES: dict[str, type[Encoder]] = {}


def register_family(name: str) -> Callable[[type[Encoder]], type[Encoder]]:
    """Class decorator: register an :class:`Encoder` subclass under ``name``."""

    def decorator(cls: type[Encoder]) -> type[Encoder]:
        if not issubclass(cls, Encoder):
            raise TypeError(f"{cls.__name__} is not an Encoder subclass")
        if name in _FAMILIES:
            raise ValueError(f"model family {name!r} is already registered")
        cls.family = name
        _FAMILIES[name] = cls
        return cls

    return decorator


def get_family(name: str) -> type[Encoder]:
    """The encoder class registered under ``name``."""
    try:
        return _FAMILIES[name]
    except KeyError:
        raise KeyError(f"unknown model family {name!r}; known: {list_families()}") from None


def create_model(name: str, **kwargs: Any) -> Encoder:
    """Instantiate the family ``name`` with its constructor keyword arguments."""
    return get_family(name)(**kwargs)


def list_families() -> list[str]:
    """Names of the registered families, sorted."""
    return sorted(_FAMILIES)
