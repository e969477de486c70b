"""The results store: one SQLite file per study, a row per run and a row per (run, eval set).

Each finished run is written in one transaction, so a killed study never holds half a run.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable
from pathlib import Path

import pandas as pd

RUN_COLUMNS: dict[str, str] = {
    "run_id": "TEXT PRIMARY KEY",
    "family": "TEXT NOT NULL",
    "paradigm": "TEXT NOT NULL",
    "target_params": "INTEGER NOT NULL",
    "n_params": "INTEGER",
    "n_params_nonembed": "INTEGER",
    "flops_per_sample": "REAL",
    "data_size": "INTEGER NOT NULL",
    "seed": "INTEGER NOT NULL",
    "status": "TEXT NOT NULL",
    "error": "TEXT",
    "wall_s": "REAL",
    "steps": "INTEGER",
    "best_step": "INTEGER",
    "stopped": "TEXT",
    "pretrain_loss": "REAL",
    "probe_l2": "REAL",
    "finished_at": "TEXT",
}

EVAL_COLUMNS: dict[str, str] = {
    "run_id": "TEXT NOT NULL REFERENCES runs(run_id)",
    "eval_set": "TEXT NOT NULL",
    "is_ood": "INTEGER NOT NULL",
    "n": "INTEGER",
    "loss": "REAL",
    "auroc": "REAL",
    "per_label": "TEXT",
}


class Results:
    """Read and write a study's ``results.sqlite``."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self._connect() as con:
            con.execute("PRAGMA journal_mode=WAL")
            cols = ", ".join(f"{k} {v}" for k, v in RUN_COLUMNS.items())
            con.execute(f"CREATE TABLE IF NOT EXISTS runs ({cols})")
            cols = ", ".join(f"{k} {v}" for k, v in EVAL_COLUMNS.items())
            con.execute(
                f"CREATE TABLE IF NOT EXISTS evals ({cols}, PRIMARY KEY (run_id, eval_set))"
            )

    def _connect(self) -> sqlite3.Connection:
        return sqlite3.connect(self.path, timeout=30)

    def statuses(self) -> dict[str, str]:
        """Status of every recorded run, by run id."""
        with self._connect() as con:
            return dict(con.execute("SELECT run_id, status FROM runs").fetchall())

    def record(self, row: dict, evals: Iterable[dict] = ()) -> None:
        """Insert or replace one run and its evaluations, atomically."""
        unknown = set(row) - set(RUN_COLUMNS)
        if unknown:
            raise KeyError(f"unknown run columns {sorted(unknown)}")
        with self._connect() as con:
            con.execute("DELETE FROM evals WHERE run_id = ?", (row["run_id"],))
            keys = list(row)
            con.execute(
                f"INSERT OR REPLACE INTO runs ({', '.join(keys)}) "
                f"VALUES ({', '.join('?' for _ in keys)})",
                [row[k] for k in keys],
            )
            for ev in evals:
                con.execute(
                    "INSERT INTO evals (run_id, eval_set, is_ood, n, loss, auroc, per_label) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?)",
                    (
                        row["run_id"],
                        ev["eval_set"],
                        int(ev["is_ood"]),
                        ev["n"],
                        ev["loss"],
                        ev["auroc"],
                        json.dumps(ev["per_label"]),
                    ),
                )

    def runs(self) -> pd.DataFrame:
        with self._connect() as con:
            return pd.read_sql_query("SELECT * FROM runs ORDER BY run_id", con)

    def evals(self) -> pd.DataFrame:
        with self._connect() as con:
            df = pd.read_sql_query("SELECT * FROM evals ORDER BY run_id, eval_set", con)
        df["is_ood"] = df["is_ood"].astype(bool)
        return df

    def wide(self) -> pd.DataFrame:
        """Runs with one ``loss:<set>`` and ``auroc:<set>`` column per evaluation set."""
        runs, evals = self.runs(), self.evals()
        if evals.empty:
            return runs
        piv = evals.pivot(index="run_id", columns="eval_set", values=["loss", "auroc"])
        piv.columns = [f"{metric}:{name}" for metric, name in piv.columns]
        return runs.merge(piv.reset_index(), on="run_id", how="left")
