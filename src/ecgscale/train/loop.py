"""The pre-training loop: AdamW, warm-up + cosine, validation-based early stopping.

A step takes the step's global batch of ``batch_size`` records. The records of step ``s`` and
the loss's random inputs (SSL masks) are functions of ``(seed, s)``: each epoch is a permutation
drawn from ``(seed, epoch)`` (the last partial batch dropped), the masks (and with
``time_shift`` each record's circular shift) come from generators seeded with ``(seed, s)``.
So the data position is just the step, every process of a multi-process run draws the same
batch and masks, and a resumed run needs no generator state.

Each process takes its contiguous share of the batch (:func:`distributed.shard`) and splits it
into micro-batches of ``micro_batch`` records. A part's loss is weighted by its share of the
batch's loss weights (:meth:`Objective.weights`: one per record, or the masked samples for SSL),
so the weighted parts add up to the batch's loss and their gradients to its gradient, whatever
the number of processes and the micro-batch (up to floating-point noise; BatchNorm, which
normalises each forward pass's records, is the exception). DDP averages gradients over the
processes, hence the factor ``world`` in the backward pass.

AdamW is the fused implementation on CPUs too: its step took 0.4-1.3 ms against 1.5-7.6 ms
(foreach) and 2.4-7.6 ms (for-loop) for 20K-500K-parameter models on the 2-core dev machine.
``precision: bf16`` autocasts the forward passes; ``compile`` wraps the loss in torch.compile.

There is no host-device synchronisation in the inner loop: each step's loss goes into a device
tensor that is read (summed over processes, checked for NaN) at log points (every ``log_every``
steps, every validation and the last step: a row of :class:`~ecgscale.train.metrics.TrainLog`)
and checkpoints.
The next batch is read in a background thread while the current one trains. Checkpoints
(every ``checkpoint_every`` steps and at the end, see :mod:`ecgscale.train.checkpoint`) let a
killed run resume and continue exactly as if it had not stopped.
"""

from __future__ import annotations

import functools
import hashlib
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from ecgscale.objectives import Objective
from ecgscale.spec import TrainSpec
from ecgscale.train import checkpoint, distributed
from ecgscale.train.hardware import resolve_precision
from ecgscale.train.metrics import TrainLog
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
    step_losses: list[float] = field(default_factory=list)
    """The training loss of every step (the whole batch's)."""
    resumed_from: int = 0
    """The checkpoint's step this process started from (0: from scratch)."""
    precision: str = "fp32"
    """What the forward passes ran in (``auto`` resolved for the device)."""


def seeded(seed: int, *key: int) -> torch.Generator:
    """A CPU generator of its own for ``(seed, *key)``."""
    digest = hashlib.blake2b(repr((seed, *key)).encode(), digest_size=8).digest()
    return torch.Generator().manual_seed(int.from_bytes(digest, "little"))


class BatchOrder:
    """Rows (positions in the training set) of each step's global batch."""

    def __init__(self, n: int, batch_size: int, seed: int) -> None:
        self.n, self.batch, self.seed = n, min(batch_size, n), seed
        self.per_epoch = n // self.batch
        self._epoch, self._perm = -1, np.empty(0, dtype=np.int64)

    def __call__(self, step: int) -> np.ndarray:
        epoch, i = divmod(step - 1, self.per_epoch)
        if epoch != self._epoch:
            self._epoch = epoch
            self._perm = torch.randperm(self.n, generator=seeded(self.seed, 0, epoch)).numpy()
        return self._perm[i * self.batch : (i + 1) * self.batch]


def time_shifted(x: np.ndarray, shifts: np.ndarray) -> np.ndarray:
    """Each record of ``x`` (records, leads, samples) rotated left in time by its ``shifts``:
    sample ``t`` of the result is sample ``(t + shift) % samples`` of the record."""
    n = x.shape[-1]
    idx = (np.arange(n)[None, :] + np.asarray(shifts)[:, None]) % n
    return np.take_along_axis(x, idx[:, None, :], axis=-1)


class Loader:
    """This process's share of each step's batch, read one step ahead in a background thread;
    with ``time_shift``, each record circularly shifted by an offset drawn from ``(seed, step)``
    for the whole batch (so any number of processes trains on the same records).

    Every call of ``read`` (evaluations' too, through :meth:`read`) runs on that one thread, so
    ``read`` need not be thread-safe."""

    def __init__(
        self,
        read: ReadFn,
        rows: np.ndarray,
        labels: np.ndarray,
        order: BatchOrder,
        device: torch.device,
        time_shift: bool = False,
    ) -> None:
        self._read, self.rows, self.labels, self.order = read, rows, labels, order
        self.time_shift = time_shift
        self.share = distributed.shard(order.batch)
        self.pin = device.type == "cuda"
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="ecgscale-loader")
        self._next: tuple[int, Future] | None = None

    def read(self, rows: np.ndarray) -> np.ndarray:
        return self._pool.submit(self._read, rows).result()

    def _load(self, step: int) -> tuple[torch.Tensor, torch.Tensor]:
        idx = self.order(step)[self.share]
        x = self._read(self.rows[idx])
        if self.time_shift:
            draw = seeded(self.order.seed, 2, step)
            shifts = torch.randint(0, x.shape[-1], (self.order.batch,), generator=draw)
            x = time_shifted(x, shifts.numpy()[self.share])
        x = torch.from_numpy(x)
        y = torch.from_numpy(self.labels[idx])
        return (x.pin_memory(), y.pin_memory()) if self.pin else (x, y)

    def get(self, step: int, *, then: int | None) -> tuple[torch.Tensor, torch.Tensor]:
        """The batch of ``step``; starts reading the batch of step ``then`` (if given)."""
        if self._next and self._next[0] == step:
            batch = self._next[1].result()
        else:
            batch = self._pool.submit(self._load, step).result()
        self._next = (then, self._pool.submit(self._load, then)) if then else None
        return batch

    def close(self) -> None:
        self._pool.shutdown(cancel_futures=True)


def _to(t: torch.Tensor | None, device: torch.device) -> torch.Tensor | None:
    """``t`` on ``device``, copied from pinned memory without waiting for the copy."""
    if t is None or device.type == "cpu":
        return t
    return (t if t.is_pinned() else t.pin_memory()).to(device, non_blocking=True)


def _parts(
    weights: torch.Tensor, share: slice, micro: int | None
) -> Iterator[tuple[slice, slice, float]]:
    """Micro-batches of this process's ``share`` of a batch: (rows in the share, rows in the
    batch, their share of the batch's loss) for a batch whose records weigh ``weights``."""
    w = weights.double() / weights.sum()
    size = micro or max(1, share.stop - share.start)
    for start in range(share.start, share.stop, size):
        rows = slice(start, min(start + size, share.stop))
        yield slice(rows.start - share.start, rows.stop - share.start), rows, float(w[rows].sum())


def _backward(
    model: torch.nn.Module,
    forward: Callable[..., torch.Tensor],
    x: torch.Tensor,
    y: torch.Tensor,
    noise: torch.Tensor | None,
    weights: torch.Tensor,
    share: slice,
    cfg: TrainSpec,
) -> torch.Tensor:
    """Accumulate the gradient of the batch's loss over this process's micro-batches (``x``,
    ``y``: its share; ``noise``, ``weights``: the whole batch's); returns their part of the loss."""
    dev = x.device
    parts = list(_parts(weights, share, cfg.micro_batch))
    total = torch.zeros((), device=dev)
    for i, (local, rows, w) in enumerate(parts):
        with distributed.no_sync(model, skip=i < len(parts) - 1):
            with torch.autocast(dev.type, torch.bfloat16, enabled=cfg.precision == "bf16"):
                loss = forward(x[local], y[local], None if noise is None else noise[rows])
            (loss * (w * distributed.world_size())).backward()
        total += loss.detach().float() * w
    return total


@torch.no_grad()
def evaluate_loss(
    objective: Objective,
    read: ReadFn,
    rows: np.ndarray,
    labels: np.ndarray,
    *,
    seed: int,
    batch_size: int = 256,
    micro_batch: int | None = None,
    precision: str = "fp32",
) -> float:
    """Mean loss over ``rows`` in eval mode, masks from a fixed seed (comparable across steps);
    each process computes its share of every batch."""
    objective.eval()
    dev = next(objective.parameters()).device
    gen = torch.Generator().manual_seed(seed)
    total = torch.zeros((), dtype=torch.float64, device=dev)
    for i in range(0, len(rows), batch_size):
        batch = np.arange(i, min(i + batch_size, len(rows)))
        share = distributed.shard(len(batch))
        x = _to(torch.from_numpy(read(rows[batch[share]])), dev)
        y = _to(torch.from_numpy(np.asarray(labels[batch[share]], dtype=np.float32)), dev)
        noise = objective.draw(len(batch), x.shape[-1], gen)
        weights = objective.weights(noise, len(batch))
        noise = _to(noise, dev)
        for local, part, w in _parts(weights, share, micro_batch):
            with torch.autocast(dev.type, torch.bfloat16, enabled=precision == "bf16"):
                loss = objective.loss(
                    x[local], y[local], noise=None if noise is None else noise[part]
                )
            total += loss.double() * (w * len(batch))
    objective.train()
    return float(distributed.all_sum(total)) / len(rows)


def _sync_losses(p: checkpoint.Progress) -> None:
    """Sum the step losses since the last sync over the processes; stop if one is not finite."""
    seg = distributed.all_sum(p.losses[p.synced : p.step])
    p.losses[p.synced : p.step] = seg
    bad = torch.nonzero(~torch.isfinite(seg)).flatten().tolist()
    if bad:
        raise TrainingDiverged(
            f"training loss is {float(seg[bad[0]])} at step {p.synced + bad[0] + 1}"
        )
    p.synced = p.step


def _early_stopping(p: checkpoint.Progress, objective: Objective, patience: int) -> None:
    """Keep the best weights so far; stop after ``patience`` evaluations without progress."""
    val_loss = p.history[-1]["val_loss"]
    if val_loss < p.best_loss:
        p.best_loss, p.best_step, p.bad_evals = val_loss, p.step, 0
        p.best_weights = {k: v.detach().clone() for k, v in objective.state_dict().items()}
    else:
        p.bad_evals += 1
        if p.bad_evals >= patience:
            p.stopped = "early_stop"


def _last_log_point(step: int, cfg: TrainSpec) -> int:
    """The last step up to ``step`` that wrote a row of metrics (0: none)."""
    return max(step // cfg.log_every * cfg.log_every, step // cfg.eval_every * cfg.eval_every)


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
    checkpoint_dir: Path | None = None,
    on_start: Callable[[int], None] | None = None,
    log: TrainLog | None = None,
) -> TrainResult:
    """Train ``objective`` in place; on return it holds the weights of the best validation step.

    With ``checkpoint_dir``, resume from its latest checkpoint of the same settings, if any.
    ``on_start(step)`` is called once training starts, with the step it resumed from (0: none);
    ``on_eval(entry)`` after each validation, once ``log`` has its row.
    Under ``torchrun`` (process group initialised) every process calls this alike."""
    t0 = time.perf_counter()
    dev = next(objective.parameters()).device
    cfg = cfg.model_copy(update={"precision": resolve_precision(cfg.precision, dev)})
    order = BatchOrder(len(train_rows), cfg.batch_size, seed)
    if order.batch < distributed.world_size():
        raise ValueError(f"a batch of {order.batch} records is too small for the processes")
    torch.manual_seed(seed + distributed.rank())
    opt = torch.optim.AdamW(
        objective.parameters(),
        lr=cfg.lr,
        weight_decay=cfg.weight_decay,
        betas=(0.9, 0.95),
        fused=True,
    )
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt,
        lambda s: warmup_cosine(
            s, warmup=cfg.warmup_steps, total=cfg.max_steps, min_ratio=cfg.min_lr_ratio
        ),
    )
    p = checkpoint.Progress(
        losses=torch.zeros(cfg.max_steps, device=dev),
        best_weights={k: v.detach().clone() for k, v in objective.state_dict().items()},
    )
    fingerprint = checkpoint.fingerprint(
        train=cfg.identity(),
        seed=seed,
        objective=type(objective).__name__,
        params=[[k, list(v.shape), str(v.dtype)] for k, v in objective.state_dict().items()],
        train_rows=np.asarray(train_rows),
        train_labels=np.asarray(train_labels),
        val_rows=np.asarray(val_rows),
        val_labels=np.asarray(val_labels),
    )
    state = checkpoint.load_checkpoint(checkpoint_dir, fingerprint) if checkpoint_dir else None
    if state:
        checkpoint.restore(state, p, objective, opt, sched)
    resumed_from = p.step
    if on_start:
        on_start(resumed_from)

    model = distributed.wrap(objective)
    forward = torch.compile(model) if cfg.compile else model
    loader = Loader(read, train_rows, train_labels, order, dev, time_shift=cfg.time_shift)
    validation_loss = functools.partial(
        evaluate_loss,
        objective,
        loader.read,
        val_rows,
        val_labels,
        seed=seed + 1,
        micro_batch=cfg.micro_batch,
        precision=cfg.precision,
    )
    log = log or TrainLog()
    logged = _last_log_point(resumed_from, cfg)
    objective.train()
    try:
        log.start(resumed_from, order.batch)
        while not p.stopped:
            step = p.step + 1
            x, y = loader.get(step, then=step + 1 if step < cfg.max_steps else None)
            x, y = _to(x, dev), _to(y, dev)
            noise = objective.draw(order.batch, x.shape[-1], seeded(seed, 1, step))
            weights = objective.weights(noise, order.batch)
            noise = _to(noise, dev)
            p.losses[step - 1] = _backward(model, forward, x, y, noise, weights, loader.share, cfg)
            grad_norm = torch.nn.utils.clip_grad_norm_(objective.parameters(), cfg.grad_clip)
            lr = sched.get_last_lr()[0]
            opt.step()
            sched.step()
            opt.zero_grad(set_to_none=True)
            p.step = step

            validate = step % cfg.eval_every == 0 or step == cfg.max_steps
            if validate or step % cfg.log_every == 0:
                _sync_losses(p)  # waits for the device, so the log times finished steps
                with log.paused():
                    val_loss = validation_loss() if validate else None
                train_loss = float(p.losses[logged:step].double().mean())
                log.row(
                    step,
                    lr=lr,
                    train_loss=train_loss,
                    grad_norm=float(grad_norm),
                    val_loss=val_loss,
                )
                logged = step
            if validate:
                since = p.history[-1]["step"] if p.history else 0
                entry = {
                    "step": step,
                    "train_loss": float(p.losses[since:step].double().mean()),
                    "val_loss": val_loss,
                    "lr": sched.get_last_lr()[0],
                }
                p.history.append(entry)
                if on_eval:
                    on_eval(entry)
                _early_stopping(p, objective, cfg.patience)
            if step == cfg.max_steps and not p.stopped:
                p.stopped = "max_steps"

            if (
                checkpoint_dir
                and cfg.checkpoint_every
                and (step % cfg.checkpoint_every == 0 or p.stopped)
            ):
                _sync_losses(p)
                with log.paused():
                    wall_s = p.wall_s + time.perf_counter() - t0
                    snapshot = checkpoint.capture(p, objective, opt, sched, wall_s)
                    if distributed.is_main():
                        checkpoint.save_checkpoint(
                            checkpoint_dir, snapshot, fingerprint=fingerprint, step=step
                        )
    finally:
        loader.close()
        log.close()
    objective.load_state_dict(p.best_weights)
    return TrainResult(
        best_val_loss=p.best_loss,
        best_step=p.best_step,
        steps=p.step,
        stopped=p.stopped,
        wall_s=p.wall_s + time.perf_counter() - t0,
        history=p.history,
        step_losses=p.losses[: p.step].tolist(),
        resumed_from=resumed_from,
        precision=cfg.precision,
    )
