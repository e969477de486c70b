"""Ctrl-C in commands that run worker processes.

A terminal's Ctrl-C sends SIGINT to the whole process group: the driver and its workers. Worker
processes ignore it (they are started while the driver ignores SIGINT, and an ignored signal
stays ignored in the new process); the driver alone reacts, and stops its workers with SIGTERM,
so that a worker stops in one way whether the group or the driver alone was signalled. A worker
that has not stopped ``GRACE_S`` seconds after SIGTERM is killed, with every process it started.
A driver waiting on its workers wakes every ``POLL_S`` seconds (:func:`as_completed`): a signal
that one of its other threads receives would not end the main thread's wait.

In the driver, the first SIGINT raises ``KeyboardInterrupt`` (the work stops cleanly); a second
one kills every process the driver started and exits at once with status 130
(:func:`interruptible`). SIGTERM to the driver (``kill``, ``timeout``, a scheduler's stop) is
taken the same way, with status 143.
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
import time
from collections.abc import Iterable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait

import psutil

GRACE_S = 3.0
"""Seconds a worker has, after SIGTERM, to stop before it is killed."""

POLL_S = 0.25
"""Seconds a driver waits on its workers at most before it looks for a Ctrl-C: a signal that
another of its threads receives does not end the main thread's wait (only its next look)."""

INTERRUPTED = 130
"""Exit status of a command stopped by SIGINT (128 + 2); by SIGTERM, 143 (128 + 15)."""
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class Stopped(KeyboardInterrupt):
    """The first SIGINT or SIGTERM in :func:`interruptible`; ``status``: the exit status."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.status = 128 + signum


def _in_main_thread() -> bool:
    return threading.current_thread() is threading.main_thread()


@contextlib.contextmanager
def sigint_ignored() -> Iterator[None]:
    """Ignore SIGINT while worker processes are started, so that they ignore it from their
    first instruction (Python installs no ``KeyboardInterrupt`` handler for an ignored SIGINT).
    A SIGINT sent in these few milliseconds is lost. Outside the main thread, does nothing."""
    if not _in_main_thread():
        yield
        return
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def as_completed(futures: Iterable[Future]) -> Iterator[Future]:
    """:func:`concurrent.futures.as_completed`, waking every ``POLL_S`` seconds so that a
    Ctrl-C is seen at once."""
    pending = set(futures)
    while pending:
        finished, pending = wait(pending, timeout=POLL_S, return_when=FIRST_COMPLETED)
        yield from finished


def sleep(seconds: float) -> None:
    """:func:`time.sleep` in steps of ``POLL_S`` seconds, so that a Ctrl-C is seen at once."""
    deadline = time.monotonic() + seconds
    while (left := deadline - time.monotonic()) > 0:
        time.sleep(min(left, POLL_S))


def _family(processes: list[psutil.Process]) -> list[psutil.Process]:
    """``processes`` and every process they started (those still running)."""
    found = list(processes)
    for proc in processes:
        with contextlib.suppress(psutil.Error):
            found += proc.children(recursive=True)
    return found


def _running(proc: psutil.Process) -> bool:
    """Whether ``proc`` still runs (a zombie has ended: no one may be left to reap it)."""
    try:
        return proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def _wait_ended(processes: list[psutil.Process], timeout_s: float) -> list[psutil.Process]:
    """Wait up to ``timeout_s`` seconds for ``processes`` to end; returns those still running."""
    deadline = time.monotonic() + timeout_s
    while (alive := [p for p in processes if _running(p)]) and time.monotonic() < deadline:
        time.sleep(0.02)
    return alive


def _kill(processes: list[psutil.Process]) -> None:
    for proc in processes:
        with contextlib.suppress(psutil.Error):
            proc.kill()


def stop_processes(processes: list[psutil.Process], grace_s: float = GRACE_S) -> None:
    """Send SIGTERM to ``processes``; after ``grace_s`` seconds (0: at once) kill those still
    running, and every process any of them started; wait (``GRACE_S`` at most) until they
    have ended."""
    family = _family(processes)
    for proc in processes:
        with contextlib.suppress(psutil.Error):
            proc.terminate()
    family += _family(_wait_ended(processes, grace_s))
    _kill(family)
    _wait_ended(family, GRACE_S)


def stop_pool(pool: ProcessPoolExecutor) -> None:
    """Stop ``pool`` now: drop the work not started, and stop its worker processes
    (:func:`stop_processes`)."""
    workers = []
    # ProcessPoolExecutor names its processes only here (Python 3.14 adds terminate_workers)
    for process in list((pool._processes or {}).values()):
        with contextlib.suppress(psutil.Error):
            workers.append(psutil.Process(process.pid))
    pool.shutdown(wait=False, cancel_futures=True)
    stop_processes(workers)


class WorkerPool(ProcessPoolExecutor):
    """A :class:`~concurrent.futures.ProcessPoolExecutor` whose workers ignore SIGINT from
    their start. Its ``with`` block left by an interrupt (``KeyboardInterrupt``, or
    ``GeneratorExit`` when a generator is closed) stops it at once (:func:`stop_pool`) instead
    of waiting for the work submitted."""

    def _spawn_process(self) -> None:  # the one place ProcessPoolExecutor starts a worker
        with sigint_ignored():
            super()._spawn_process()

    def __exit__(self, exc_type, exc_val, exc_tb) -> bool:
        if exc_type is not None and not issubclass(exc_type, Exception):
            stop_pool(self)
            return False
        return super().__exit__(exc_type, exc_val, exc_tb)


def _exit_now(signum: int, frame: object) -> None:
    """The second SIGINT or SIGTERM: kill every process this one started, and exit."""
    started = psutil.Process().children(recursive=True)
    _kill(started)
    _wait_ended(started, 1.0)
    os.write(2, b"Interrupted again: stopped at once; run the same command again to continue.\n")
    os._exit(128 + signum)


def _first_interrupt(signum: int, frame: object) -> None:
    for stop in STOP_SIGNALS:
        signal.signal(stop, _exit_now)
    raise Stopped(signum)


@contextlib.contextmanager
def interruptible() -> Iterator[None]:
    """Inside: the first SIGINT or SIGTERM raises :class:`Stopped` (a ``KeyboardInterrupt``); a
    second one kills every process this one started and exits at once with status 128 + its
    number. Outside the main thread, does nothing."""
    if not _in_main_thread():
        yield
        return
    previous = {stop: signal.signal(stop, _first_interrupt) for stop in STOP_SIGNALS}
    try:
        yield
    finally:
        for stop, handler in previous.items():
            signal.signal(stop, handler)
