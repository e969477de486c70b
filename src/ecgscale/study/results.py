"""The results store: one SQLite file per study (WAL mode, or a rollback journal for workers on
several hosts: ``executor.journal_mode``).

Tables: ``runs`` (one row per pre-training run), ``evals`` (per run, evaluation set and
method: ``probe`` on the frozen encoder, ``head`` for an SL model's own head, ``finetune``),
``tasks`` (per run, unseen task, method and D_F), ``scratch`` (one row per from-scratch
task model), and the job lifecycle's ``jobs`` and ``events`` (:mod:`ecgscale.study.lifecycle`).
Each finished run is written in one transaction, so a killed study never holds half a run.
Files of earlier schemas are upgraded in place (schema 1: evaluations by probe only; schema 2:
no lifecycle tables, filled from the recorded runs).
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pandas as pd

OUTCOME_COLUMNS: dict[str, str] = {
    "status": "TEXT NOT NULL",
    "error": "TEXT",
    "wall_s": "REAL",
    "steps": "INTEGER",
    "best_step": "INTEGER",
    "stopped": "TEXT",
}
"""How a training job ended, in the runs and the scratch table alike."""

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
    "lr": "REAL",
    "precision": "TEXT",
    **OUTCOME_COLUMNS,
    "train_wall_s": "REAL",
    "pretrain_loss": "REAL",
    "probe_l2": "REAL",
    "eval_tag": "TEXT",
    "code": "TEXT",
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
    **OUTCOME_COLUMNS,
    **{k: v for k, v in TASK_COLUMNS.items() if k not in ("run_id", "task", "method", "d_f", "l2")},
    "code": "TEXT",
    "finished_at": "TEXT",
}

SCHEMA_VERSION = 3

JOB_COLUMNS: dict[str, str] = {
    "job_id": "TEXT PRIMARY KEY",
    "kind": "TEXT NOT NULL",
    "state": "TEXT NOT NULL",
    "attempts": "INTEGER NOT NULL DEFAULT 0",
    "owner": "TEXT",
    "executor": "TEXT",
    "submitted_at": "REAL",
    "started_at": "REAL",
    "heartbeat_at": "REAL",
    "finished_at": "REAL",
    "step": "INTEGER",
    "total_steps": "INTEGER",
    "error": "TEXT",
}

EVENT_COLUMNS: dict[str, str] = {
    "seq": "INTEGER PRIMARY KEY AUTOINCREMENT",
    "job_id": "TEXT NOT NULL",
    "event": "TEXT NOT NULL",
    "at": "REAL NOT NULL",
    "owner": "TEXT",
    "detail": "TEXT",
}

_KEYS = {"evals": "run_id, eval_set, method", "tasks": "run_id, task, method, d_f"}


class ResultsError(OSError):
    """The results file cannot be used as asked; the message is one line naming it."""


class Results:
    """Read and write a study's ``results.sqlite``."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self._connect() as con:
            version = con.execute("PRAGMA user_version").fetchone()[0]
            tables = {r[0] for r in con.execute("SELECT name FROM sqlite_master")}
            if not tables:  # a new file: WAL, kept until set_journal_mode changes it
                con.execute("PRAGMA journal_mode=WAL")
            if version < 2 and "evals" in tables and "eval_tag" not in _columns(con, "runs"):
                _upgrade_v1(con)  # not a file another process is creating (its version comes last)
            elif version > SCHEMA_VERSION:
                raise ResultsError(
                    f"{self.path}: results schema {version} is newer than this ecgscale's "
                    f"({SCHEMA_VERSION}); upgrade ecgscale"
                )
            create_table(con, "runs", RUN_COLUMNS)
            create_table(con, "evals", EVAL_COLUMNS, _KEYS["evals"])
            create_table(con, "tasks", TASK_COLUMNS, _KEYS["tasks"])
            create_table(con, "scratch", SCRATCH_COLUMNS)
            if version < SCHEMA_VERSION:
                create_job_tables(con)
            con.execute(f"PRAGMA user_version={SCHEMA_VERSION}")

    def set_journal_mode(self, mode: str) -> None:
        """Switch the file's journal (it persists): ``wal`` for one host's processes, ``delete``
        (a rollback journal) for workers on several hosts sharing the file, where WAL's shared
        memory does not reach. Needs no other connection to be open."""
        for wait in (0.5, 1, 2, 4, 8, 0):  # a reader (e.g. `study status`) may hold it a moment
            try:
                with self._connect() as con:
                    got = con.execute("PRAGMA journal_mode").fetchone()[0]
                    if got != mode:
                        got = con.execute(f"PRAGMA journal_mode={mode}").fetchone()[0]
                break
            except sqlite3.OperationalError as err:
                if "locked" not in str(err) or not wait:
                    raise ResultsError(
                        f"{self.path}: cannot switch to the {mode} journal while other processes"
                        f" have it open ({err}); stop them and try again"
                    ) from None
                time.sleep(wait)
        if got != mode:
            raise ResultsError(f"{self.path}: journal mode stayed {got!r}, not {mode!r}")

    @contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        """A connection for one transaction: committed (or rolled back on error), then closed,
        so no connection outlives its use (a journal-mode switch needs none open)."""
        con = sqlite3.connect(self.path, timeout=30)
        try:
            with con:
                yield con
        except sqlite3.DatabaseError as err:
            if isinstance(err, sqlite3.OperationalError):  # locked, busy: the caller decides
                raise
            raise ResultsError(
                f"{self.path}: not a readable results database ({err}); move it aside and run "
                "the study again: runs whose weights are saved are evaluated, not trained, anew"
            ) from None
        finally:
            con.close()

    def statuses(self) -> dict[str, str]:
        """Status of every recorded run, by run id."""
        with self._connect() as con:
            return dict(con.execute("SELECT run_id, status FROM runs").fetchall())

    def record(self, row: dict, evals: Iterable[dict] = (), tasks: Iterable[dict] = ()) -> None:
        """Insert or replace one run, its evaluations and its task results, atomically."""
        with self._connect() as con:
            write_run(con, row, evals, tasks)

    def record_scratch(self, row: dict) -> None:
        """Insert or replace one from-scratch task model's result."""
        with self._connect() as con:
            write_scratch(con, row)

    def _frame(self, table: str, order: str) -> pd.DataFrame:
        with self._connect() as con:
            return pd.read_sql_query(f"SELECT * FROM {table} ORDER BY {order}", con)

    def runs(self) -> pd.DataFrame:
        return self._frame("runs", "run_id")

    def statuses_scratch(self) -> dict[str, str]:
        """Status of every recorded from-scratch model, by id."""
        with self._connect() as con:
            return dict(con.execute("SELECT scratch_id, status FROM scratch").fetchall())

    def done_codes(self) -> dict[str, str | None]:
        """The code that trained each done run and from-scratch model, by id (None: not
        recorded)."""
        with self._connect() as con:
            return dict(
                con.execute(
                    "SELECT run_id, code FROM runs WHERE status = 'done' UNION ALL "
                    "SELECT scratch_id, code FROM scratch WHERE status = 'done'"
                ).fetchall()
            )

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


def write_run(
    con: sqlite3.Connection, row: dict, evals: Iterable[dict] = (), tasks: Iterable[dict] = ()
) -> None:
    """Replace one run's rows (run, evaluations, task results) within ``con``'s transaction.

    A row without ``wall_s`` (a run evaluated again from weights whose training time was not
    saved) keeps the wall time recorded before."""
    if row.get("wall_s") is None:
        before = con.execute("SELECT wall_s FROM runs WHERE run_id = ?", (row["run_id"],))
        row = row | {"wall_s": next((w for (w,) in before), None)}
    con.execute("DELETE FROM evals WHERE run_id = ?", (row["run_id"],))
    con.execute("DELETE FROM tasks WHERE run_id = ?", (row["run_id"],))
    _insert(con, "runs", RUN_COLUMNS, row)
    for ev in evals:
        _insert(con, "evals", EVAL_COLUMNS, {"run_id": row["run_id"], **ev})
    for task in tasks:
        _insert(con, "tasks", TASK_COLUMNS, {"run_id": row["run_id"], **task})


def write_scratch(con: sqlite3.Connection, row: dict) -> None:
    """Replace one from-scratch model's row within ``con``'s transaction."""
    _insert(con, "scratch", SCRATCH_COLUMNS, row)


def create_job_tables(con: sqlite3.Connection) -> None:
    """Create the job lifecycle's tables, ``jobs`` and ``events`` (see
    :mod:`ecgscale.study.lifecycle`); fill ``jobs`` from runs and from-scratch models already
    recorded (a results file of an earlier schema)."""
    create_table(con, "jobs", JOB_COLUMNS)
    create_table(con, "events", EVENT_COLUMNS)
    for table, key, kind in (("runs", "run_id", "run"), ("scratch", "scratch_id", "scratch")):
        con.execute(
            f"INSERT OR IGNORE INTO jobs (job_id, kind, state, attempts, finished_at) "
            f"SELECT {key}, '{kind}', status, 1, NULL FROM {table} "
            f"WHERE status IN ('done', 'failed')"
        )


def create_table(
    con: sqlite3.Connection, table: str, columns: dict[str, str], key: str = ""
) -> None:
    """Create ``table`` if it is missing, and add the columns an older file lacks."""
    cols = ", ".join(f"{k} {v}" for k, v in columns.items())
    con.execute(
        f"CREATE TABLE IF NOT EXISTS {table} ({cols}{f', PRIMARY KEY ({key})' if key else ''})"
    )
    have = _columns(con, table)
    for name, kind in columns.items():  # a column added since the file was made: NULL there
        if name not in have:
            kind = kind.split()[0]  # NULL in the rows already there: no NOT NULL, no key
            try:
                con.execute(f"ALTER TABLE {table} ADD COLUMN {name} {kind}")
            except sqlite3.OperationalError as err:  # another process added it a moment ago
                if "duplicate column" not in str(err):
                    raise


def _insert(con: sqlite3.Connection, table: str, columns: dict[str, str], row: dict) -> None:
    unknown = set(row) - set(columns)
    if unknown:
        raise KeyError(f"unknown {table} columns {sorted(unknown)}")
    values = [json.dumps(v) if isinstance(v, dict | list) else v for v in row.values()]
    con.execute(
        f"INSERT OR REPLACE INTO {table} ({', '.join(row)}) VALUES ({', '.join('?' for _ in row)})",
        values,
    )


def _columns(con: sqlite3.Connection, table: str) -> set[str]:
    return {row[1] for row in con.execute(f"PRAGMA table_info({table})")}


def _upgrade_v1(con: sqlite3.Connection) -> None:
    """Schema 1 → 2: runs gain ``eval_tag``; evals gain a method (``probe``), intervals and
    omitted labels (NULL for old rows). One transaction: a failed upgrade changes nothing."""
    con.execute("BEGIN")
    con.execute("ALTER TABLE runs ADD COLUMN eval_tag TEXT")
    con.execute("ALTER TABLE evals RENAME TO evals_v1")
    create_table(con, "evals", EVAL_COLUMNS, _KEYS["evals"])
    con.execute(
        "INSERT INTO evals (run_id, eval_set, method, is_ood, n, loss, auroc, per_label) "
        "SELECT run_id, eval_set, 'probe', is_ood, n, loss, auroc, per_label FROM evals_v1"
    )
    con.execute("DROP TABLE evals_v1")


def read_fits(study_dir: str | Path, fitted_on: str | None = None) -> dict:
    """A study's ``fits.json`` (``ecgscale fit`` writes it): FileNotFoundError when it is not
    there, ValueError naming the file when it is not a fits file (bad JSON, no ``fits`` list)
    or, given the digest of the folder's results (:func:`fitted_on`), one fitted on others
    (a file written before the digest was recorded is taken as it is)."""
    path = Path(study_dir) / "fits.json"
    if not path.is_file():
        raise FileNotFoundError(f"{study_dir}: no fits.json (run `ecgscale fit {study_dir}` first)")
    try:
        content = json.loads(path.read_text())
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ValueError(
            f"{path}: not valid JSON ({error}); `ecgscale fit` writes it anew"
        ) from None
    if not isinstance(content, dict) or not isinstance(content.get("fits"), list):
        raise ValueError(f"{path}: not a fits file (no 'fits' list); `ecgscale fit` writes it anew")
    if fitted_on is not None and content.get("fitted_on", fitted_on) != fitted_on:
        raise ValueError(
            f"{path}: fitted on other results than the folder now holds (runs done since): "
            f"run `ecgscale fit {study_dir}`"
        )
    return content


def fitted_on(tables: dict[str, pd.DataFrame]) -> str:
    """A digest of the results laws are fitted on (:func:`ecgscale.study.runner.study_tables`):
    every finished run's and from-scratch model's id, evaluation tag and finishing time, so a
    report can tell a ``fits.json`` of other results (runs trained or evaluated since)."""
    parts = []
    for name, key in (("runs", "run_id"), ("scratch", "scratch_id")):
        frame = tables[name]
        done = frame[frame["status"] == "done"]
        columns = [c for c in (key, "eval_tag", "finished_at") if c in done.columns]
        parts += sorted("|".join(map(str, row)) for row in done[columns].itertuples(index=False))
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()[:16]
