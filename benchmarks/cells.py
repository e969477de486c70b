"""The four family × paradigm cells of a finished study, as issue tables show them.

Per cell: ID probe loss at the smallest (N, D) and at the largest (N, D) and the gain between
them, the joint law's α and β with 95% intervals and whether each is determined, and the
backtest (largest N held out) inside its interval. Prints the study's wall time and the CPU.

    python benchmarks/cells.py STUDY_DIR [--metric loss:id] [--format md|csv]
"""

from __future__ import annotations

import argparse
import json
import sqlite3
from pathlib import Path

import pandas as pd

from ecgscale.study.runner import grid_runs
from ecgscale.study.specfile import load_spec
from ecgscale.train.hardware import cpu_summary


def cell_table(study: Path, metric: str = "loss:id") -> pd.DataFrame:
    """One row per family × paradigm, from the runs the laws were fitted to."""
    fits = json.loads((study / "fits.json").read_text())
    with sqlite3.connect(study / "results.sqlite") as db:
        runs = pd.read_sql("select * from runs where status = 'done'", db)
        evals = pd.read_sql("select run_id, eval_set, loss from evals where method = 'probe'", db)
    if "lr" in runs:  # in a learning-rate sweep, each rung's run at the rate it chose, as the
        runs = grid_runs(load_spec(study / "spec.yaml"), runs)  # laws use (older studies: no lr)
    name = metric.removeprefix("loss:")
    loss = evals[evals["eval_set"] == name].set_index("run_id")["loss"]
    runs = runs.assign(loss=runs["run_id"].map(loss))
    rows = []
    for (family, paradigm), part in runs.groupby(["family", "paradigm"], sort=True):
        small = part[
            (part.target_params == part.target_params.min())
            & (part.data_size == part.data_size.min())
        ]["loss"].mean()
        large = part[
            (part.target_params == part.target_params.max())
            & (part.data_size == part.data_size.max())
        ]["loss"].mean()
        joint = next(
            (
                j
                for j in fits.get("joint", [])
                if j["family"] == family and j["paradigm"] == paradigm and j["metric"] == metric
            ),
            None,
        )
        row = {
            "cell": f"{family} {paradigm.upper()}",
            "loss small": small,
            "loss large": large,
            "gain %": 100 * (small - large) / small,
        }
        for p in ("alpha", "beta"):
            if joint is None:
                row[p] = "no fit"
                continue
            value = joint["params"][p]
            lo, hi = (joint.get("intervals") or {}).get(p, [None, None])
            verdict = (joint.get("verdicts") or {}).get(p, {}).get("status", "")
            text = f"{value:.3g}" + (f" [{lo:.3g}, {hi:.3g}]" if lo is not None else "")
            row[p] = text + (f" {verdict}" if verdict else "")
        bt = next(
            (
                b
                for b in fits.get("backtests", [])
                if b["family"] == family and b["paradigm"] == paradigm and b["metric"] == metric
            ),
            None,
        )
        points = (bt or {}).get("points") or []
        row["backtest inside"] = f"{sum(bool(p.get('inside')) for p in points)}/{len(points)}"
        rows.append(row)
    return pd.DataFrame(rows)


def markdown(table: pd.DataFrame) -> str:
    """A GitHub-flavoured markdown table, numbers to 4 significant digits."""
    cells = [
        [f"{v:.4g}" if isinstance(v, float) else str(v) for v in row]
        for row in table.itertuples(index=False)
    ]
    lines = ["| " + " | ".join(table.columns) + " |", "|" + "---|" * len(table.columns)]
    return "\n".join(lines + ["| " + " | ".join(row) + " |" for row in cells])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("study", type=Path)
    parser.add_argument("--metric", default="loss:id")
    parser.add_argument("--format", choices=["md", "csv"], default="md")
    args = parser.parse_args()
    table = cell_table(args.study, args.metric)
    print(f"CPU: {cpu_summary()}")
    with sqlite3.connect(args.study / "results.sqlite") as db:
        wall = pd.read_sql("select sum(wall_s) as s from runs", db)["s"].iloc[0]
    print(
        f"study {args.study}: {args.metric}; training+evaluation wall time summed over runs "
        f"{wall / 60:.1f} min"
    )
    if args.format == "csv":
        print(table.to_csv(index=False))
    else:
        print(markdown(table))


if __name__ == "__main__":
    main()
