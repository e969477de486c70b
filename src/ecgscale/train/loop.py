"""The pre-training loop: AdamW, warm-up + cosine, validation-based early stopping."""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch

from ecgscale.objectives import Objective
from ecgscale.study.spec import TrainSpec
from ecgscale.train.schedule import warmup_cosine

ReadFn = Callable[[np.ndarray], np.ndarray]


class TrainingDiverged(RuntimeError):
    """The training loss became NaN or infinite."""


@dataclass
class TrainResult:
    best_val_loss: float
    best_step: int
    steps: int
    stopped: str
    wall_s: float
    history: list[dict] = field(default_factory=list)


def _batches(n: int, batch_size: int, generator: torch.Generator):
    """Endless random batches of indices into ``range(n)``, one permutation per epoch."""
    while True:
        perm = torch.randperm(n, generator=generator).numpy()
        for i in range(0, n - batch_size + 1 if n >= batch_size else 1, batch_size):
            yield perm[i : i + batch_size]


@torch.no_grad()
def evaluate_loss(
    objective: Objective,
    read: ReadFn,
    rows: np.ndarray,
    labels: np.ndarray,
    *,
    seed: int,
    batch_size: int = 256,
) -> float:
    """Mean loss over ``rows`` in eval mode, masks from a fixed seed (comparable across steps)."""
    objective.eval()
    gen = torch.Generator().manual_seed(seed)
    total, count = 0.0, 0
    for i in range(0, len(rows), batch_size):
        x = torch.from_numpy(read(rows[i : i + batch_size]))
        y = torch.as_tensor(np.array(labels[i : i + batch_size], dtype=np.float32))
        total += float(objective.loss(x, y, generator=gen)) * len(x)
        count += len(x)
    objective.train()
    return total / count


def pretrain(
    objective: Objective,
    read: ReadFn,
    *,
    train_rows: np.ndarray,
    train_labels: np.ndarray,
    val_rows: np.ndarray,
    val_labels: np.ndarray,
    cfg: TrainSpec,
    seed: int,
    on_eval: Callable[[dict], None] | None = None,
) -> TrainResult:
    """Train ``objective`` in place; on return it holds the weights of the best validation step."""
    t0 = time.perf_counter()
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    opt = torch.optim.AdamW(
        objective.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay, betas=(0.9, 0.95)
    )
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt,
        lambda s: warmup_cosine(
            s, warmup=cfg.warmup_steps, total=cfg.max_steps, min_ratio=cfg.min_lr_ratio
        ),
    )
    best = (math.inf, 0, copy.deepcopy(objective.state_dict()))
    history: list[dict] = []
    bad_evals, stopped, step = 0, "max_steps", 0
    running = torch.zeros(())
    objective.train()
    batches = _batches(len(train_rows), min(cfg.batch_size, len(train_rows)), gen)
    for step in range(1, cfg.max_steps + 1):
        idx = next(batches)
        x = torch.from_numpy(read(train_rows[idx]))
        y = torch.from_numpy(train_labels[idx])
        loss = objective.loss(x, y, generator=gen)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(objective.parameters(), cfg.grad_clip)
        opt.step()
        sched.step()
        running += loss.detach()
        if step % cfg.eval_every and step != cfg.max_steps:
            continue
        train_loss = float(running) / (step - (history[-1]["step"] if history else 0))
        running.zero_()
        if not math.isfinite(train_loss):
            raise TrainingDiverged(f"training loss is {train_loss} at step {step}")
        val_loss = evaluate_loss(objective, read, val_rows, val_labels, seed=seed + 1)
        entry = {
            "step": step,
            "train_loss": train_loss,
            "val_loss": val_loss,
            "lr": sched.get_last_lr()[0],
        }
        history.append(entry)
        if on_eval:
            on_eval(entry)
        if val_loss < best[0]:
            best = (val_loss, step, copy.deepcopy(objective.state_dict()))
            bad_evals = 0
        else:
            bad_evals += 1
            if bad_evals >= cfg.patience:
                stopped = "early_stop"
                break
    objective.load_state_dict(best[2])
    return TrainResult(best[0], best[1], step, stopped, time.perf_counter() - t0, history)
