"""The results store: one SQLite file per study (WAL mode).

Tables: ``runs`` (one row per pre-training run), ``evals`` (per run, evaluation set and
method: ``probe`` on the frozen encoder, ``head`` for an SL model's own head, ``finetune``),
``tasks`` (per run, unseen task, method and D_F) and ``scratch`` (one row per from-scratch
task model). Each finished run is written in one transaction, so a killed study never holds
half a run. Files of the first schema (evaluations by probe only) are upgraded in place.
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
    "eval_tag": "TEXT",
    "finished_at": "TEXT",
}

_INTERVALS = {f"{m}{s}": "REAL" for m in ("loss", "auroc", "f1") for s in ("", "_lo", "_hi")}

EVAL_COLUMNS: dict[str, str] = {
    "run_id": "TEXT NOT NULL REFERENCES runs(run_id)",
    "eval_set": "TEXT NOT NULL",
    "method": "TEXT NOT NULL",
    "is_ood": "INTEGER NOT NULL",
    "n": "INTEGER",
    **_INTERVALS,
    "omitted": "TEXT",
    "per_label": "TEXT",
}

TASK_COLUMNS: dict[str, str] = {
    "run_id": "TEXT NOT NULL REFERENCES runs(run_id)",
    "task": "TEXT NOT NULL",
    "method": "TEXT NOT NULL",
    "d_f": "INTEGER NOT NULL",
    "kind": "TEXT NOT NULL",
    "n": "INTEGER",
    "loss": "REAL",
    "loss_lo": "REAL",
    "loss_hi": "REAL",
    "metric_name": "TEXT",
    "metric": "REAL",
    "metric_lo": "REAL",
    "metric_hi": "REAL",
    "l2": "REAL",
    "detail": "TEXT",
}

SCRATCH_COLUMNS: dict[str, str] = {
    "scratch_id": "TEXT PRIMARY KEY",
    "task": "TEXT NOT NULL",
    "family": "TEXT NOT NULL",
    "target_params": "INTEGER NOT NULL",
    "n_params": "INTEGER",
    "d_f": "INTEGER NOT NULL",
    "seed": "INTEGER NOT NULL",
    "status": "TEXT NOT NULL",
    "error": "TEXT",
    "wall_s": "REAL",
    "steps": "INTEGER",
    "best_step": "INTEGER",
    "stopped": "TEXT",
    **{k: v for k, v in TASK_COLUMNS.items() if k not in ("run_id", "task", "method", "d_f", "l2")},
    "finished_at": "TEXT",
}

SCHEMA_VERSION = 2
_KEYS = {"evals": "run_id, eval_set, method", "tasks": "run_id, task, method, d_f"}


class Results:
    """Read and write a study's ``results.sqlite``."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self._connect() as con:
            con.execute("PRAGMA journal_mode=WAL")
            version = con.execute("PRAGMA user_version").fetchone()[0]
            tables = {r[0] for r in con.execute("SELECT name FROM sqlite_master")}
            if version < SCHEMA_VERSION and "evals" in tables:
                _upgrade_v1(con)
            elif version > SCHEMA_VERSION:
                raise RuntimeError(
                    f"{self.path}: results schema {version} is newer than this ecgscale's "
                    f"({SCHEMA_VERSION}); upgrade ecgscale"
                )
            _create(con, "runs", RUN_COLUMNS)
            _create(con, "evals", EVAL_COLUMNS, _KEYS["evals"])
            _create(con, "tasks", TASK_COLUMNS, _KEYS["tasks"])
            _create(con, "scratch", SCRATCH_COLUMNS)
            con.execute(f"PRAGMA user_version={SCHEMA_VERSION}")

    def _connect(self) -> sqlite3.Connection:
        return sqlite3.connect(self.path, timeout=30)

    def statuses(self) -> dict[str, str]:
        """Status of every recorded run, by run id."""
        with self._connect() as con:
            return dict(con.execute("SELECT run_id, status FROM runs").fetchall())

    def record(self, row: dict, evals: Iterable[dict] = (), tasks: Iterable[dict] = ()) -> None:
        """Insert or replace one run, its evaluations and its task results, atomically."""
        with self._connect() as con:
            con.execute("DELETE FROM evals WHERE run_id = ?", (row["run_id"],))
            con.execute("DELETE FROM tasks WHERE run_id = ?", (row["run_id"],))
            _insert(con, "runs", RUN_COLUMNS, row)
            for ev in evals:
                _insert(con, "evals", EVAL_COLUMNS, {"run_id": row["run_id"], **ev})
            for task in tasks:
                _insert(con, "tasks", TASK_COLUMNS, {"run_id": row["run_id"], **task})

    def record_scratch(self, row: dict) -> None:
        """Insert or replace one from-scratch task model's result."""
        with self._connect() as con:
            _insert(con, "scratch", SCRATCH_COLUMNS, row)

    def _frame(self, table: str, order: str) -> pd.DataFrame:
        with self._connect() as con:
            return pd.read_sql_query(f"SELECT * FROM {table} ORDER BY {order}", con)

    def runs(self) -> pd.DataFrame:
        return self._frame("runs", "run_id")

    def statuses_scratch(self) -> dict[str, str]:
        """Status of every recorded from-scratch model, by id."""
        with self._connect() as con:
            return dict(con.execute("SELECT scratch_id, status FROM scratch").fetchall())

    def eval_tags(self) -> dict[str, str | None]:
        """The evaluation tag each recorded run was evaluated under."""
        with self._connect() as con:
            return dict(con.execute("SELECT run_id, eval_tag FROM runs").fetchall())

    def evals(self) -> pd.DataFrame:
        df = self._frame("evals", "run_id, eval_set, method")
        df["is_ood"] = df["is_ood"].astype(bool)
        return df

    def tasks(self) -> pd.DataFrame:
        return self._frame("tasks", "run_id, task, method, d_f")

    def scratch(self) -> pd.DataFrame:
        return self._frame("scratch", "task, family, target_params, d_f, seed")

    def wide(self) -> pd.DataFrame:
        """Runs with one ``loss:<set>`` and ``auroc:<set>`` column per evaluation set (and
        ``loss_lo:<set>``, ``loss_hi:<set>`` ... for their intervals), from the probe."""
        runs, evals = self.runs(), self.evals()
        evals = evals[evals["method"] == "probe"]
        if evals.empty:
            return runs
        piv = evals.pivot(index="run_id", columns="eval_set", values=list(_INTERVALS))
        piv.columns = [f"{metric}:{name}" for metric, name in piv.columns]
        return runs.merge(piv.reset_index(), on="run_id", how="left")

    def long(self) -> pd.DataFrame:
        """One row per (run, evaluation set, method, label) with every metric and its
        interval; label ``macro`` holds the set's means."""
        runs = self.runs()[["run_id", "family", "paradigm", "target_params", "data_size", "seed"]]
        rows = []
        for ev in self.evals().itertuples(index=False):
            base = {"run_id": ev.run_id, "eval_set": ev.eval_set, "method": ev.method}
            rows.append(
                {**base, "label": "macro", "n": ev.n} | {k: getattr(ev, k) for k in _INTERVALS}
            )
            for label, fig in json.loads(ev.per_label).items():
                per = {k.replace("bce", "loss"): v for k, v in fig.items()}
                rows.append({**base, "label": label, **per})
        return runs.merge(pd.DataFrame(rows), on="run_id")


def _create(con: sqlite3.Connection, table: str, columns: dict[str, str], key: str = "") -> None:
    cols = ", ".join(f"{k} {v}" for k, v in columns.items())
    con.execute(
        f"CREATE TABLE IF NOT EXISTS {table} ({cols}{f', PRIMARY KEY ({key})' if key else ''})"
    )


def _insert(con: sqlite3.Connection, table: str, columns: dict[str, str], row: dict) -> None:
    unknown = set(row) - set(columns)
    if unknown:
        raise KeyError(f"unknown {table} columns {sorted(unknown)}")
    values = [json.dumps(v) if isinstance(v, dict | list) else v for v in row.values()]
    con.execute(
        f"INSERT OR REPLACE INTO {table} ({', '.join(row)}) VALUES ({', '.join('?' for _ in row)})",
        values,
    )


def _upgrade_v1(con: sqlite3.Connection) -> None:
    """Schema 1 → 2: runs gain ``eval_tag``; evals gain a method (``probe``), intervals and
    omitted labels (NULL for old rows). One transaction: a failed upgrade changes nothing."""
    con.execute("BEGIN")
    con.execute("ALTER TABLE runs ADD COLUMN eval_tag TEXT")
    con.execute("ALTER TABLE evals RENAME TO evals_v1")
    _create(con, "evals", EVAL_COLUMNS, _KEYS["evals"])
    con.execute(
        "INSERT INTO evals (run_id, eval_set, method, is_ood, n, loss, auroc, per_label) "
        "SELECT run_id, eval_set, 'probe', is_ood, n, loss, auroc, per_label FROM evals_v1"
    )
    con.execute("DROP TABLE evals_v1")
