"""Weights and training checkpoints on disk: safetensors for tensors, JSON for the rest.

Nothing is pickled, so nothing is executed on load. ``torch.load(weights_only=True)`` would be
safe too, but it is still pickle, read by an allow-list that changes between torch versions;
safetensors + JSON is a format that any tool reads, that the weights already use, and whose
loader cannot run code.

A checkpoint is one file, ``ckpt-<fingerprint>-<step>.safetensors``: every tensor of the
training state (model, AdamW moments, best weights, RNG states, the per-step losses so far) as a
safetensors entry, and everything else (scheduler, counters, history, optimiser settings) as a
JSON tree in the file's metadata, in which ``{"__tensor__": key}`` stands for a tensor. It is
written to ``<name>.tmp``, flushed and renamed, so a checkpoint on disk is whole or absent: a
crash mid-write leaves a ``.tmp`` that loading ignores and the next save removes. Only the
latest checkpoint is kept. The fingerprint hashes the settings that determine the run (see
:func:`fingerprint`); a checkpoint with another fingerprint is never loaded.
"""

from __future__ import annotations

import hashlib
import json
import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file
from torch import nn

from ecgscale.train import distributed

FORMAT = "ecgscale-checkpoint/1"


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


@dataclass
class Progress:
    """What the loop knows besides the model, the optimiser and the schedule."""

    losses: torch.Tensor
    """Each step's batch loss; this process's part of it after ``synced``."""
    best_weights: dict[str, torch.Tensor]
    step: int = 0
    synced: int = 0
    """``losses[:synced]`` are summed over the processes and checked to be finite."""
    best_loss: float = float("inf")
    best_step: int = 0
    bad_evals: int = 0
    stopped: str = ""
    """Why training ended ("max_steps", "early_stop"); empty while it goes on."""
    wall_s: float = 0.0
    """Training time before this process took over."""
    history: list[dict] = field(default_factory=list)


def fingerprint(**parts: Any) -> str:
    """Short hash of what determines a run: settings (JSON-able) and arrays (by content)."""
    h = hashlib.sha256()
    for key, value in sorted(parts.items()):
        if isinstance(value, np.ndarray):
            value = np.ascontiguousarray(value)
            h.update(f"{key}:{value.dtype}{value.shape}".encode())
            h.update(value.tobytes())
        else:
            h.update(f"{key}={json.dumps(value, sort_keys=True)}".encode())
    return h.hexdigest()[:12]


def capture(
    progress: Progress,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    wall_s: float,
) -> dict[str, Any]:
    """The whole training state as a tree; every process must call it (it gathers RNG states)."""
    rng = {"cpu": distributed.gather(torch.get_rng_state())}
    if torch.cuda.is_available():
        rng["cuda"] = distributed.gather(torch.cuda.get_rng_state())
    p = progress
    return {
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict(),
        "rng": rng,
        "progress": {
            "losses": p.losses[: p.step],
            "best_weights": p.best_weights,
            "step": p.step,
            "best_loss": p.best_loss,
            "best_step": p.best_step,
            "bad_evals": p.bad_evals,
            "stopped": p.stopped,
            "wall_s": wall_s,
            "history": p.history,
        },
    }


def restore(
    state: dict[str, Any],
    progress: Progress,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
) -> None:
    """Put a state from ``capture`` back; a process that did not exist then keeps its RNG."""
    model.load_state_dict(state["model"])
    optimizer.load_state_dict(state["optimizer"])
    scheduler.load_state_dict(state["scheduler"])
    r = distributed.rank()
    if r < len(state["rng"]["cpu"]):
        torch.set_rng_state(state["rng"]["cpu"][r])
        if "cuda" in state["rng"] and torch.cuda.is_available():
            torch.cuda.set_rng_state(state["rng"]["cuda"][r])
    saved = dict(state["progress"])
    losses = saved.pop("losses")
    progress.losses[: len(losses)] = losses.to(progress.losses.device)
    device = progress.losses.device
    progress.best_weights = {k: v.to(device) for k, v in saved.pop("best_weights").items()}
    for key, value in saved.items():
        setattr(progress, key, value)
    progress.synced = progress.step


def save_checkpoint(directory: Path, state: dict[str, Any], *, fingerprint: str, step: int) -> Path:
    """Write ``state`` as the checkpoint of ``step`` (atomically), then drop older ones."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    tensors: dict[str, torch.Tensor] = {}
    tree = _encode(state, tensors, "")
    path = directory / f"ckpt-{fingerprint}-{step:09d}.safetensors"
    tmp = path.with_name(path.name + ".tmp")
    meta = {"format": FORMAT, "fingerprint": fingerprint, "step": str(step)}
    save_file(tensors, str(tmp), metadata=meta | {"state": json.dumps(tree)})
    with open(tmp, "rb+") as f:
        os.fsync(f.fileno())
    os.replace(tmp, path)
    _fsync_dir(directory)
    for old in directory.glob(f"ckpt-{fingerprint}-*"):
        if old != path:
            old.unlink(missing_ok=True)
    return path


def load_checkpoint(directory: Path, fingerprint: str) -> dict[str, Any] | None:
    """The state of the latest whole checkpoint of ``fingerprint`` in ``directory``, if any."""
    directory = Path(directory)
    if not directory.is_dir():
        return None
    for path in sorted(directory.glob(f"ckpt-{fingerprint}-*.safetensors"), reverse=True):
        try:
            with safe_open(str(path), "pt") as f:
                meta = f.metadata() or {}
                tensors = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118
            if meta.get("format") == FORMAT and meta.get("fingerprint") == fingerprint:
                return _decode(json.loads(meta["state"]), tensors)
        except (OSError, SafetensorError, KeyError, ValueError) as err:
            warnings.warn(f"{path}: unreadable checkpoint skipped ({err})", stacklevel=2)
    own = f"ckpt-{fingerprint}-"  # its own unreadable ones were named above
    foreign = [p.name for p in directory.glob("ckpt-*.safetensors") if not p.name.startswith(own)]
    if foreign:
        warnings.warn(
            f"{directory}: {len(foreign)} checkpoint(s) of other settings ignored", stacklevel=2
        )
    return None


def clear_checkpoints(directory: Path) -> None:
    """Remove the checkpoints (and unfinished writes) in ``directory``, and it if empty."""
    directory = Path(directory)
    if not directory.is_dir():
        return
    for path in directory.glob("ckpt-*"):
        path.unlink(missing_ok=True)
    if not any(directory.iterdir()):
        directory.rmdir()


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _encode(obj: Any, tensors: dict[str, torch.Tensor], path: str) -> Any:
    """JSON-able tree of ``obj``; its tensors go to ``tensors`` under their path in the tree."""
    if isinstance(obj, torch.Tensor):
        tensors[path] = obj.detach().cpu().contiguous()
        return {"__tensor__": path}
    if isinstance(obj, dict):
        if all(isinstance(k, str) for k in obj):
            return {k: _encode(v, tensors, f"{path}/{k}") for k, v in obj.items()}
        return {"__items__": [[k, _encode(v, tensors, f"{path}/{k}")] for k, v in obj.items()]}
    if isinstance(obj, list | tuple):
        items = [_encode(v, tensors, f"{path}/{i}") for i, v in enumerate(obj)]
        return {"__tuple__": items} if isinstance(obj, tuple) else items
    if obj is None or isinstance(obj, bool | int | float | str):
        return obj
    raise TypeError(f"cannot store {type(obj).__name__} at {path or '/'} in a checkpoint")


def _decode(tree: Any, tensors: dict[str, torch.Tensor]) -> Any:
    """Inverse of ``_encode``."""
    if isinstance(tree, list):
        return [_decode(v, tensors) for v in tree]
    if not isinstance(tree, dict):
        return tree
    if "__tensor__" in tree:
        return tensors[tree["__tensor__"]]
    if "__items__" in tree:
        return {k: _decode(v, tensors) for k, v in tree["__items__"]}
    if "__tuple__" in tree:
        return tuple(_decode(v, tensors) for v in tree["__tuple__"])
    return {k: _decode(v, tensors) for k, v in tree.items()}
