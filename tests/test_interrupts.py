"""Ctrl-C in commands that run worker processes: workers ignore SIGINT, an interrupted pool stops
them at once, and a second Ctrl-C ends the command and everything it started at once."""

from __future__ import annotations

import multiprocessing as mp
import signal
import subprocess
import sys
import time

import psutil
import pytest

from ecgscale.interrupts import GRACE_S, INTERRUPTED, WorkerPool


def _gone(proc: psutil.Process) -> bool:
    try:
        return not proc.is_running() or proc.status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def test_pool_workers_ignore_sigint_and_an_interrupt_stops_them_at_once() -> None:
    spawn = mp.get_context("spawn")
    with pytest.raises(KeyboardInterrupt), WorkerPool(2, mp_context=spawn) as pool:
        short = pool.submit(time.sleep, 0.5)
        long = pool.submit(time.sleep, 600)
        workers = [psutil.Process(p.pid) for p in pool._processes.values()]
        for worker in workers:  # what a terminal's Ctrl-C sends them too
            worker.send_signal(signal.SIGINT)
        assert short.result(timeout=120) is None  # finished despite the SIGINT
        t0 = time.monotonic()
        raise KeyboardInterrupt
    assert time.monotonic() - t0 < GRACE_S  # not waiting for the long task
    assert len(workers) == 2 and all(_gone(w) for w in workers)
    assert long.cancelled() or long.exception() is not None


SCRIPT = """
import subprocess, sys, time
from ecgscale.interrupts import interruptible

child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
with interruptible():
    try:
        print(child.pid, flush=True)
        time.sleep(600)
    except KeyboardInterrupt:
        print("cleaning up", flush=True)
        time.sleep(600)  # a clean-up that would take long
"""


@pytest.mark.parametrize("stop", [signal.SIGINT, signal.SIGTERM])
def test_a_second_ctrl_c_kills_what_the_command_started_and_exits_at_once(stop) -> None:
    """Ctrl-C, and SIGTERM (``kill``, ``timeout``, a scheduler): the first stops the work
    cleanly, a second ends everything at once, with status 128 + the signal's number (SIGTERM
    once killed the driver outright, leaving its jobs to be found lost)."""
    proc = subprocess.Popen(
        [sys.executable, "-c", SCRIPT],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    child = psutil.Process(int(proc.stdout.readline()))
    proc.send_signal(stop)
    assert proc.stdout.readline() == "cleaning up\n"
    t0 = time.monotonic()
    proc.send_signal(stop)
    err = proc.communicate(timeout=60)[1]
    assert time.monotonic() - t0 < 2.0
    assert proc.returncode == (INTERRUPTED if stop == signal.SIGINT else 143)
    assert err == "Interrupted again: stopped at once; run the same command again to continue.\n"
    assert _gone(child)
