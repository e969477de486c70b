"""Job lifecycle in the results store: pending → running → done / failed, with attempts,
heartbeats and an event log.

Table ``jobs`` holds one row per job (pre-training run or from-scratch model) and ``events``
every claim, loss, training start, finish and failure, in order. A worker *claims* a job
before it touches its folder, in one ``BEGIN IMMEDIATE`` transaction: the claim fails when the
job is done (unless it is claimed for re-evaluation) or running under a live owner, so two
workers never run one job and a finished job never runs again. A running job's owner is
*lost* when it is a process of this host that no longer exists, or when its heartbeat is older
than ``stale_after_s``; the next claim takes the job over and the run resumes from its last
checkpoint. A worker told to stop gives its job back (``released``: pending again), and so
does a driver for the jobs its stopped workers left running, so that the next claim takes
them at once. The worker's result rows and its job's final state are written in one
transaction, and only while the worker still owns the job.
"""

from __future__ import annotations

import os
import socket
import sqlite3
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import psutil

from ecgscale.study.results import Results

STATES = ("pending", "running", "done", "failed")

EVENTS = ("submitted", "claimed", "lost", "trained", "evaluated", "done", "failed", "released")
"""``trained``: training started (``detail``: the checkpoint step it resumed from); a job's
``trained`` events after its first ``done`` would mean a finished run trained again."""


def this_process() -> str:
    """Owner id of this process: ``host:pid:start-time-ms`` (a reused pid is another owner)."""
    start = int(psutil.Process().create_time() * 1000)
    return f"{socket.gethostname()}:{os.getpid()}:{start}"


def owner_alive(owner: str, heartbeat_at: float | None, stale_after_s: float, now: float) -> bool:
    """Whether the process ``owner`` still runs its job: on this host, by its pid and start
    time (a zombie has ended); elsewhere, by a heartbeat younger than ``stale_after_s``."""
    host, pid, start = owner.rsplit(":", 2)
    if host == socket.gethostname():
        try:
            proc = psutil.Process(int(pid))
            same = int(proc.create_time() * 1000) == int(start)
            return same and proc.status() != psutil.STATUS_ZOMBIE
        except (psutil.NoSuchProcess, psutil.AccessDenied, ValueError):
            return False
    return heartbeat_at is not None and now - heartbeat_at < stale_after_s


def _lost_reason(owner: str, heartbeat_at: float | None, now: float) -> str:
    if owner.rsplit(":", 2)[0] == socket.gethostname():
        return "its process is gone"
    silent = "never" if heartbeat_at is None else f"{now - heartbeat_at:.0f} s ago"
    return f"last heartbeat {silent}"


@dataclass(frozen=True)
class Claim:
    """A job this process owns, on attempt ``attempt``."""

    job_id: str
    owner: str
    attempt: int


class NotOwner(RuntimeError):
    """The job was taken over (its owner was judged lost) before this worker finished."""


class Jobs:
    """Claim, heartbeat and finish jobs in a study's ``results.sqlite``."""

    def __init__(self, path: Path, *, stale_after_s: float = 300.0) -> None:
        self.path = Results(path).path  # creates or upgrades the file
        self.stale_after_s = stale_after_s

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        """One write transaction, taken at once (``BEGIN IMMEDIATE``), committed or rolled back."""
        con = sqlite3.connect(self.path, timeout=60, isolation_level=None)
        try:
            con.execute("BEGIN IMMEDIATE")
            try:
                yield con
            except BaseException:
                con.execute("ROLLBACK")
                raise
            con.execute("COMMIT")
        finally:
            con.close()

    def submit(self, jobs: Iterable[tuple[str, str]], executor: str) -> None:
        """Register ``(job_id, kind)`` pairs as pending (jobs already known keep their state)."""
        now = time.time()
        with self._transaction() as con:
            for job_id, kind in jobs:
                new = con.execute(
                    "INSERT OR IGNORE INTO jobs (job_id, kind, state, executor, submitted_at)"
                    " VALUES (?, ?, 'pending', ?, ?)",
                    (job_id, kind, executor, now),
                ).rowcount
                if not new:
                    con.execute(
                        "UPDATE jobs SET executor = ?, submitted_at = ? WHERE job_id = ?",
                        (executor, now, job_id),
                    )
                _event(con, job_id, "submitted", now, None, executor)

    def claim(
        self, job_id: str, kind: str, *, owner: str | None = None, redo: bool = False
    ) -> Claim | None:
        """Take ``job_id`` for this process, or None when it is done (``redo`` claims a done job,
        to evaluate it again) or running under a live owner. Takes over a lost owner's job."""
        owner = owner or this_process()
        now = time.time()
        with self._transaction() as con:
            row = con.execute(
                "SELECT state, owner, heartbeat_at, attempts FROM jobs WHERE job_id = ?", (job_id,)
            ).fetchone()
            if row is None:
                con.execute(
                    "INSERT INTO jobs (job_id, kind, state, submitted_at)"
                    " VALUES (?, ?, 'pending', ?)",
                    (job_id, kind, now),
                )
                row = ("pending", None, None, 0)
            state, old_owner, heartbeat_at, attempts = row
            if state == "done" and not redo:
                return None
            if state == "running":
                if old_owner == owner:
                    return None  # this process runs it already
                if owner_alive(old_owner, heartbeat_at, self.stale_after_s, now):
                    return None
                reason = _lost_reason(old_owner, heartbeat_at, now)
                _event(con, job_id, "lost", now, old_owner, reason)
            con.execute(
                "UPDATE jobs SET state = 'running', attempts = ?, owner = ?, started_at = ?,"
                " heartbeat_at = ?, finished_at = NULL, step = NULL, total_steps = NULL,"
                " error = NULL WHERE job_id = ?",
                (attempts + 1, owner, now, now, job_id),
            )
            _event(con, job_id, "claimed", now, owner, f"attempt {attempts + 1}")
        return Claim(job_id, owner, attempts + 1)

    def heartbeat(self, claim: Claim, step: int | None = None, total: int | None = None) -> bool:
        """Mark ``claim``'s job alive (with its progress); False when it is no longer ours."""
        with self._transaction() as con:
            return bool(
                con.execute(
                    "UPDATE jobs SET heartbeat_at = ?, step = COALESCE(?, step),"
                    " total_steps = COALESCE(?, total_steps) WHERE job_id = ? AND owner = ?"
                    " AND state = 'running'",
                    (time.time(), step, total, claim.job_id, claim.owner),
                ).rowcount
            )

    def log(self, claim: Claim, event: str, detail: str | None = None) -> None:
        """Append an event of ``claim``'s job."""
        with self._transaction() as con:
            _event(con, claim.job_id, event, time.time(), claim.owner, detail)

    @contextmanager
    def finishing(
        self, claim: Claim, state: str, error: str | None
    ) -> Iterator[sqlite3.Connection]:
        """A transaction that writes the job's result rows (inside the ``with``) and its final
        ``state``; raises :class:`NotOwner` and writes nothing when the job is no longer ours."""
        if state not in ("done", "failed"):
            raise ValueError(f"a job finishes done or failed, not {state!r}")
        now = time.time()
        with self._transaction() as con:
            owned = con.execute(
                "UPDATE jobs SET state = ?, finished_at = ?, heartbeat_at = ?, error = ?"
                " WHERE job_id = ? AND owner = ? AND state = 'running'",
                (state, now, now, error, claim.job_id, claim.owner),
            ).rowcount
            if not owned:
                raise NotOwner(f"{claim.job_id}: taken over by another worker; result not written")
            yield con
            _event(con, claim.job_id, state, now, claim.owner, error)

    def release(self, claim: Claim, reason: str) -> bool:
        """Give a claimed job back (pending again), e.g. when its worker is told to stop; False
        (and nothing logged) when it is no longer running under ``claim``'s owner."""
        with self._transaction() as con:
            return _release(con, claim.job_id, claim.owner, reason, time.time())

    def release_left(self, job_ids: Iterable[str], reason: str) -> list[str]:
        """Give back (pending) those of ``job_ids`` left running by this process or by an owner
        that is lost (see :func:`owner_alive`), e.g. once stopped workers are gone, so that the
        next claim takes them at once; returns their ids."""
        me, now, wanted = this_process(), time.time(), set(job_ids)
        with self._transaction() as con:
            rows = con.execute(
                "SELECT job_id, owner, heartbeat_at FROM jobs WHERE state = 'running'"
            ).fetchall()
            return [
                job_id
                for job_id, owner, beat in rows
                if job_id in wanted
                and (owner == me or not owner_alive(owner, beat, self.stale_after_s, now))
                and _release(con, job_id, owner, reason, now)
            ]

    def attempts(self) -> dict[str, int]:
        """Attempts so far of every job, by id."""
        with closing(self.path) as con:
            return dict(con.execute("SELECT job_id, attempts FROM jobs").fetchall())

    def state(self, job_id: str) -> str | None:
        """The state of ``job_id`` (None: not known)."""
        with closing(self.path) as con:
            row = con.execute("SELECT state FROM jobs WHERE job_id = ?", (job_id,)).fetchone()
        return None if row is None else row[0]

    def table(self) -> pd.DataFrame:
        """Every job's row."""
        with closing(self.path) as con:
            return pd.read_sql_query("SELECT * FROM jobs ORDER BY job_id", con)

    def events(self) -> pd.DataFrame:
        """Every event, oldest first."""
        with closing(self.path) as con:
            return pd.read_sql_query("SELECT * FROM events ORDER BY seq", con)

    def lost(self) -> list[str]:
        """Running jobs whose owner is lost (see :func:`owner_alive`)."""
        return self._running(alive=False)

    def live(self) -> list[str]:
        """Running jobs whose owner still runs them."""
        return self._running(alive=True)

    def _running(self, *, alive: bool) -> list[str]:
        now = time.time()
        return [
            r.job_id
            for r in self.table().itertuples()
            if r.state == "running"
            and owner_alive(r.owner, r.heartbeat_at, self.stale_after_s, now) == alive
        ]


@contextmanager
def closing(path: Path) -> Iterator[sqlite3.Connection]:
    """A read connection, closed afterwards."""
    con = sqlite3.connect(path, timeout=60)
    try:
        yield con
    finally:
        con.close()


def _release(con: sqlite3.Connection, job_id: str, owner: str, reason: str, now: float) -> bool:
    """Set ``job_id`` pending if it runs under ``owner``, with a ``released`` event."""
    released = con.execute(
        "UPDATE jobs SET state = 'pending', owner = NULL WHERE job_id = ? AND owner = ?"
        " AND state = 'running'",
        (job_id, owner),
    ).rowcount
    if released:
        _event(con, job_id, "released", now, owner, reason)
    return bool(released)


def _event(
    con: sqlite3.Connection,
    job_id: str,
    event: str,
    at: float,
    owner: str | None,
    detail: str | None,
) -> None:
    con.execute(
        "INSERT INTO events (job_id, event, at, owner, detail) VALUES (?, ?, ?, ?, ?)",
        (job_id, event, at, owner, detail),
    )
