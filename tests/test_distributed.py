"""A batch split over processes (DDP) or micro-batches trains as the whole batch does."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys

import numpy as np
import pytest
import torch
import yaml

from ecgscale.data.schema import LABELS
from ecgscale.data.synthetic import generate
from ecgscale.models import build
from ecgscale.objectives import create_objective
from ecgscale.spec import TrainSpec
from ecgscale.train import pretrain
from ecgscale.train.metrics import read_metrics


@pytest.fixture(autouse=True)
def _one_thread():
    """One torch thread: two contend badly on this 2-core machine (10x slower when loaded)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


# A Transformer: LayerNorm normalises each record, so a split batch computes what the whole
# batch does. (A ResNet's BatchNorm normalises each forward pass's records.)
SPEC = {
    "name": "ddp",
    "data": {
        "fs": 50,
        "n_samples": 100,
        "n_records": 300,
        "n_ood_records": 30,
        "ood_sites": ["noisy"],
    },
    "models": {"families": ["transformer"], "sizes": [20000]},
    "paradigms": ["ssl"],
    "data_sizes": [128],
    "train": {
        "batch_size": 32,
        "max_steps": 20,
        "eval_every": 1,
        "warmup_steps": 5,
        "patience": 100,
        "val_records": 30,
        "checkpoint_every": 10,
        "time_shift": True,  # each process shifts its share as one process shifts the batch
    },
    "eval": {"probe_records": 60, "probe_val_records": 20, "test_records": 30, "l2_grid": [1.0]},
    "laws": {"n_boot": 0},
}


def _study(tmp_path, name: str, launcher: list[str]) -> dict:
    spec = tmp_path / "spec.yaml"
    spec.write_text(yaml.safe_dump(SPEC))
    out = tmp_path / name
    env = os.environ | {"OMP_NUM_THREADS": "1"}
    cmd = [*launcher, "-m", "ecgscale.study.torchrun", str(spec), "--out", str(out)]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    (row,) = sqlite3.connect(out / "results.sqlite").execute("SELECT * FROM runs").fetchall()
    (run_dir,) = (out / "runs").iterdir()
    assert sorted(p.name for p in run_dir.iterdir()) == [
        "metrics.csv",
        "model.safetensors",
        "probe.safetensors",
        "train.json",
    ]
    assert read_metrics(run_dir / "metrics.csv")["step"].tolist() == list(range(1, 21))
    return json.loads((run_dir / "train.json").read_text()) | {"row": row}


def test_two_processes_train_as_one(tmp_path):
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone"]
    two = _study(tmp_path, "two", [*torchrun, "--nproc_per_node=2"])
    one = _study(tmp_path, "one", [sys.executable])
    assert two["row"][0] == one["row"][0] and "done" in two["row"]
    assert (two["processes"], one["processes"]) == (2, 1)
    a, b = np.array(two["step_losses"]), np.array(one["step_losses"])
    assert len(a) == 20 and np.allclose(a, b, rtol=1e-4, atol=0), np.abs(a / b - 1).max()
    va, vb = (np.array([h["val_loss"] for h in r["history"]]) for r in (two, one))
    assert np.allclose(va, vb, rtol=1e-4, atol=0)


def _train(paradigm: str, **cfg) -> list[float]:
    x, meta = generate("code", 160, fs=50, n_samples=100, seed=1)
    y = meta[list(LABELS)].to_numpy(np.float32)
    torch.manual_seed(0)
    encoder = build("transformer", 20000, input_len=100, fs=50)
    obj = create_objective(paradigm, encoder, fs=50, mask_ratio=0.5, mask_patch_s=0.2)
    spec = TrainSpec(batch_size=64, max_steps=20, eval_every=10, warmup_steps=5, **cfg)
    res = pretrain(
        obj,
        lambda rows: x[rows],
        train_rows=np.arange(128),
        train_labels=y[:128],
        val_rows=np.arange(128, 160),
        val_labels=y[128:],
        cfg=spec,
        seed=0,
    )
    return res.step_losses + [h["val_loss"] for h in res.history]


@pytest.mark.parametrize("paradigm", ["sl", "ssl"])
def test_micro_batches_train_as_the_whole_batch(paradigm):
    whole, split = _train(paradigm), _train(paradigm, micro_batch=16)
    assert np.allclose(split, whole, rtol=1e-5, atol=0), np.abs(np.divide(split, whole) - 1).max()
