"""Model weights on disk as safetensors: nothing pickled, nothing executed on load."""

from __future__ import annotations

import os
from pathlib import Path

from safetensors.torch import load_file, save_file
from torch import nn


def save_weights(module: nn.Module, path: Path) -> None:
    """Write ``module``'s state dict atomically."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    state = {k: v.detach().contiguous().cpu() for k, v in module.state_dict().items()}
    save_file(state, str(tmp))
    os.replace(tmp, path)


def load_weights(module: nn.Module, path: Path) -> nn.Module:
    """Load weights written by ``save_weights`` into ``module`` (strict)."""
    module.load_state_dict(load_file(str(path)))
    return module
