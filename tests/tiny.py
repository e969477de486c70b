"""Settings of the tiny studies the tests run (100 Hz × 2.5 s records, a few steps)."""

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
