"""Settings of the tiny studies the tests run (100 Hz × 2.5 s records, a few steps)."""

import json

TINY_DATA = {"fs": 100, "n_samples": 250, "n_records": 400, "n_ood_records": 40}
"""A small synthetic store: 400 ID records, 40 per OOD site."""

TINY_TRAIN = {
    "batch_size": 16,
    "max_steps": 4,
    "eval_every": 2,
    "warmup_steps": 1,
    "val_records": 32,
}
"""A few steps of training."""

TINY_EVAL = {
    "probe_records": 60,
    "probe_val_records": 30,
    "test_records": 40,
    "l2_grid": [0.01, 1.0],
}
"""Small probe and test sets, two L2 values."""


TINY_PROBE = {
    "probe_records": 80,
    "probe_val_records": 40,
    "test_records": 60,
    "l2_grid": [0.01, 1.0],
}
"""Probe and test sets of a tiny study with a few hundred records."""


def overrides(section: str, values: dict) -> list[str]:
    """``--set`` overrides (``section.key=value``) for ``values``."""
    return [f"{section}.{key}={json.dumps(value)}" for key, value in values.items()]


TINY_DEMO = [
    "data.n_samples=250",
    "data.n_records=1000",
    "data.holdout=0.5",
    "data.n_ood_records=60",
    "models.sizes=[20000, 40000, 80000]",
    "data_sizes=[75, 150, 300]",
    *overrides("train", TINY_TRAIN),
    "train.lr=0.002",  # one rate: the sweep's path has its own tests (test_objectives_train)
    "train.families={}",  # the same few steps for every family
    *overrides("eval", TINY_PROBE),
    "eval.n_boot=10",
    "laws.n_boot=20",
    "executor.workers=2",
    "tasks=[{name: age, source: code, target: age, kind: regression, d_f: [20, 40],"
    " val_records: 20, test_records: 40}, {name: lvh, source: code, target: LVH, kind: binary,"
    " d_f: [20, 40], val_records: 20, test_records: 40}]",
    "transfer.sizes=[20000]",
    "transfer.train={max_steps: 4, eval_every: 2, patience: 1}",
]
"""The embedded demo shrunk to a few seconds of training: both families and paradigms, 3 sizes
× 3 data sizes (36 runs), its two OOD sites, both unseen tasks (LVH with its from-scratch
models), bootstrap intervals."""
