"""Does what the probe pools change a study's curves? Each finished run of a study re-probed with
its tokens pooled three ways.

Not a speed benchmark: the measurement behind docs/models-and-training.md's "What the probe
pools". Every run is exported and loaded as a user would load it (``ecgscale.export_run``,
``load_encoder``); its token features (B, T, C) on the study's probe, probe-validation and ID
test records are pooled as the mean over tokens (the protocol's pooling), the mean and the
standard deviation concatenated, or the mean and the maximum concatenated; each pooling gets
the protocol's logistic probe (L2 chosen on the probe's validation set) and its macro BCE on
the ID test set is printed, one row per run.

    python benchmarks/probe_pooling.py STUDY_DIR [--match ssl]
"""

from __future__ import annotations

import argparse
import tempfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from ecgscale import export_run, load_encoder
from ecgscale.data.schema import LABELS
from ecgscale.data.store import Store
from ecgscale.evaluate.probe import score, train_probe
from ecgscale.evaluate.protocol import labels_of
from ecgscale.evaluate.roles import assign_roles
from ecgscale.study.runs import store_dir
from ecgscale.study.specfile import load_study_spec

POOLS: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "mean": lambda t: t.mean(1),
    "mean + std": lambda t: torch.cat([t.mean(1), t.std(1)], 1),
    "mean + max": lambda t: torch.cat([t.mean(1), t.amax(1)], 1),
}


@torch.inference_mode()
def pooled_features(encoder: torch.nn.Module, store: Store, rows: np.ndarray) -> dict:
    """Every pooling's features (n, ·) of ``rows``, in batches of 256."""
    parts: dict[str, list[np.ndarray]] = {name: [] for name in POOLS}
    for start in range(0, len(rows), 256):
        tokens = encoder(torch.as_tensor(store.read(rows[start : start + 256]))).float()
        for name, pool in POOLS.items():
            parts[name].append(pool(tokens).numpy())
    return {name: np.concatenate(p) for name, p in parts.items()}


def pooled_losses(study: Path, match: str = "") -> dict[str, dict[str, float]]:
    """ID test BCE of each finished run whose id contains ``match``, by pooling."""
    spec = load_study_spec(study)
    store = Store(store_dir(spec, study))
    roles = assign_roles(spec, store.meta)
    test = next(rows for name, is_ood, rows in roles.eval_sets() if not is_ood)
    sets = {"train": roles.probe_train, "val": roles.probe_val, "test": test}
    labels = {k: labels_of(store.meta, rows) for k, rows in sets.items()}
    out = {}
    for run in sorted((study / "runs").iterdir()):
        if match not in run.name or not (run / "model.safetensors").is_file():
            continue
        with tempfile.TemporaryDirectory() as folder:
            encoder = load_encoder(export_run(run, folder, force=True))
        feats = {k: pooled_features(encoder, store, rows) for k, rows in sets.items()}
        out[run.name] = {}
        for name in POOLS:
            probe = train_probe(
                feats["train"][name],
                labels["train"],
                feats["val"][name],
                labels["val"],
                spec.eval.l2_grid,
            )
            result = score(probe, feats["test"][name], labels["test"], list(LABELS), n_boot=0)
            out[run.name][name] = result["loss"]
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("study", type=Path)
    parser.add_argument("--match", default="", help="only runs whose id contains this")
    args = parser.parse_args()
    print("| run | " + " | ".join(POOLS) + " |")
    print("|---" * (len(POOLS) + 1) + "|")
    for run, losses in pooled_losses(args.study, args.match).items():
        print(f"| {run} | " + " | ".join(f"{v:.4f}" for v in losses.values()) + " |")


if __name__ == "__main__":
    main()
