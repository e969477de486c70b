"""Shared test set-up: one BLAS thread (tiny problems, 2 cores), the shared-data fixture and
the tiny demo study that several test modules read."""

import os
from pathlib import Path

import pytest
import torch
from filelock import FileLock
from threadpoolctl import threadpool_limits
from tiny import TINY_DEMO

from ecgscale.spec import StudySpec
from ecgscale.study.runner import run_study
from ecgscale.study.specfile import load_spec

threadpool_limits(1)
torch.set_num_threads(1)  # tiny models; two threads on a shared 2-core machine thrash

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """``../shared/data`` beside the project; tests using it skip when it is absent."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"real ECG samples not found at {SHARED_DATA} (a clone without ../shared)")
    return SHARED_DATA


@pytest.fixture(scope="session")
def tiny_study(tmp_path_factory) -> tuple[StudySpec, Path, Path]:
    """The demo shrunk by ``TINY_DEMO``, run once per session: (spec, folder, report path).

    Under pytest-xdist (``make test`` runs a process per CPU) it is run once for all of them:
    the first process to ask runs it in the session's temporary folder, which the processes
    share, and the others wait on a file lock and read it (tests treat the study as read-only).
    """
    spec = load_spec(None, TINY_DEMO)
    root = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        root = root.parent  # each process has its own folder in the session's
    out, done = root / "tiny_study", root / "tiny_study.done"
    with FileLock(root / "tiny_study.lock"):
        if not done.is_file():  # a process that failed half-way left no mark: resume its study
            done.write_text(str(run_study(spec, out, progress=False)))
    return spec, out, Path(done.read_text())
