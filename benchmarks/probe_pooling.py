"""Does what the probe pools, or how many records it learns from, change a study's curves? Each
finished run of a study re-probed with its tokens pooled three ways, on probe sets of given sizes.

Not a speed benchmark: the measurement behind docs/models-and-training.md's "What the probe
pools". Every run is exported and loaded as a user would load it (``ecgscale.export_run``,
``load_encoder``); its token features (B, T, C) on the probe, probe-validation and ID test
records are pooled as the mean over tokens (the protocol's pooling), the mean and the standard
deviation concatenated, or the mean and the maximum concatenated; each pooling gets the
protocol's logistic probe (L2 chosen on the probe's validation set) and its macro BCE on the ID
test set is printed, one row per run. ``--probe-records 800,2400`` draws the probe set at each
size as the study would with that ``eval.probe_records`` and no unseen tasks, whose records
come after the probe set's (default: the study's own probe set).

    python benchmarks/probe_pooling.py STUDY_DIR [--match ssl] [--probe-records 800,2400]
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
from ecgscale.evaluate.roles import RoleError, assign_roles
from ecgscale.study.runs import store_dir
from ecgscale.study.specfile import load_spec

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


def pooled_losses(
    study: Path, match: str = "", probe_records: list[int] | None = None
) -> dict[str, dict[str, float]]:
    """ID test BCE of each finished run whose id contains ``match``, by pooling (and, with
    ``probe_records``, by probe-set size: keys ``"<pooling>, <n> probe records"`` with the size
    drawn, which the held-out patients' records cap)."""
    sizes = probe_records or [None]
    specs = {
        n: load_spec(
            study / "spec.yaml", [] if n is None else [f"eval.probe_records={n}", "tasks=[]"]
        )
        for n in sizes
    }
    spec = specs[sizes[0]]
    store = Store(store_dir(spec, study))
    roles = {n: assign_roles(s, store.meta) for n, s in specs.items()}
    test = next(rows for _, is_ood, rows in roles[sizes[0]].eval_sets() if not is_ood)
    role_rows = [r for role in roles.values() for r in (role.probe_train, role.probe_val)]
    rows = np.unique(np.concatenate([test, *role_rows]))  # each record embedded once
    at_test, y_test = np.searchsorted(rows, test), labels_of(store.meta, test)
    out = {}
    for run in sorted((study / "runs").iterdir()):
        if match not in run.name or not (run / "model.safetensors").is_file():
            continue
        with tempfile.TemporaryDirectory() as folder:
            encoder = load_encoder(export_run(run, folder, force=True))
        feats = pooled_features(encoder, store, rows)
        out[run.name] = {}
        for n, role in roles.items():
            train, y_train = (
                np.searchsorted(rows, role.probe_train),
                labels_of(store.meta, role.probe_train),
            )
            val, y_val = (
                np.searchsorted(rows, role.probe_val),
                labels_of(store.meta, role.probe_val),
            )
            for name, f in feats.items():
                probe = train_probe(f[train], y_train, f[val], y_val, spec.eval.l2_grid)
                result = score(probe, f[at_test], y_test, list(LABELS), n_boot=0)
                size = f"{name}, {len(role.probe_train)} probe records"  # a size is a cap
                out[run.name][name if n is None else size] = result["loss"]
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("study", type=Path)
    parser.add_argument("--match", default="", help="only runs whose id contains this")
    parser.add_argument(
        "--probe-records",
        type=lambda text: [int(n) for n in text.split(",")],
        help="probe-set sizes, comma-separated (default: the study's eval.probe_records)",
    )
    args = parser.parse_args()
    try:
        losses = pooled_losses(args.study, args.match, args.probe_records)
    except RoleError as error:  # the store cannot hold the roles (one line, no traceback)
        parser.error(str(error))
    columns = list(next(iter(losses.values()), {}))
    print("| run | " + " | ".join(columns) + " |")
    print("|---" * (len(columns) + 1) + "|")
    for run, row in losses.items():
        print(f"| {run} | " + " | ".join(f"{v:.4f}" for v in row.values()) + " |")


if __name__ == "__main__":
    main()
