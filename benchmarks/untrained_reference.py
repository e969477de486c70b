"""How much of a study's probe loss is pre-training? Each rung's untrained encoder, probed.

Not a speed benchmark: the measurement behind docs/models-and-training.md's "An untrained
encoder as the reference". For every family and size of a finished study, the ladder's model is
built from the seed's generator exactly as the study's runs build it before they train (the
same initial weights), its BatchNorm statistics, if it has any, are estimated on unmasked
records of the largest pre-training subset (as SSL runs do after pre-training: without that a
BatchNorm encoder would normalise with its initial statistics of 0 and 1), and it goes through
the study's evaluation protocol (``evaluate_encoder``: the same probe set, L2 grid and test
sets). Printed per family and paradigm: the ID probe BCE of the untrained encoder (D = 0) and of
the study's runs at each D, one row per size, and the CPU.

    python benchmarks/untrained_reference.py STUDY_DIR [--metric id] [--seed 0]
"""

from __future__ import annotations

import argparse
import sqlite3
from pathlib import Path

import pandas as pd
import torch

from ecgscale.data.store import Store
from ecgscale.evaluate.protocol import evaluate_encoder
from ecgscale.evaluate.roles import assign_roles
from ecgscale.models import build
from ecgscale.objectives import create_objective
from ecgscale.study.runs import store_dir
from ecgscale.study.specfile import load_spec
from ecgscale.train.hardware import cpu_summary


def untrained_losses(study: Path, seed: int = 0) -> pd.DataFrame:
    """One row per family, size and evaluation set: the untrained encoder's probe BCE."""
    spec = load_spec(study / "spec.yaml")
    store = Store(store_dir(spec, study))
    roles = assign_roles(spec, store.meta)
    statistics_rows = roles.subsets[max(roles.subsets)]
    rows = []
    for family in spec.models.families:
        for size in spec.models.sizes:
            torch.manual_seed(seed)
            encoder = build(family, size, input_len=store.n_samples, fs=store.fs)
            objective = create_objective("ssl", encoder, fs=store.fs, **spec.ssl.objective_kwargs())
            objective.settle(store.read, statistics_rows)
            evaluation = evaluate_encoder(spec, objective, store, roles, seed)
            rows += [
                {
                    "family": family,
                    "target_params": size,
                    "eval_set": e["eval_set"],
                    "loss": e["loss"],
                }
                for e in evaluation.evals
                if e["method"] == "probe"
            ]
    return pd.DataFrame(rows)


def reference_table(study: Path, untrained: pd.DataFrame, metric: str = "id") -> pd.DataFrame:
    """Probe BCE on ``metric`` by family, paradigm and size: untrained (D = 0), then each D."""
    with sqlite3.connect(study / "results.sqlite") as db:
        runs = pd.read_sql(
            "select r.family, r.paradigm, r.target_params, r.data_size, e.loss from runs r "
            "join evals e on e.run_id = r.run_id where r.status = 'done' "
            "and e.method = 'probe' and e.eval_set = ?",
            db,
            params=(metric,),
        )
    trained = runs.pivot_table(
        index=["family", "paradigm", "target_params"], columns="data_size", values="loss"
    )
    trained.columns = [f"D = {d}" for d in trained.columns]
    base = untrained[untrained["eval_set"] == metric].set_index(["family", "target_params"])
    keys = trained.index.droplevel("paradigm")
    trained.insert(0, "untrained", base["loss"].reindex(keys).to_numpy())
    return trained.reset_index()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("study", type=Path)
    parser.add_argument("--metric", default="id", help="evaluation set (default: id)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    print(f"CPU: {cpu_summary()}")
    table = reference_table(args.study, untrained_losses(args.study, args.seed), args.metric)
    from cells import markdown  # benchmarks/cells.py, beside this script

    print(f"probe BCE on {args.metric}, seed {args.seed}")
    print(markdown(table))


if __name__ == "__main__":
    main()
