"""Shared test set-up: one BLAS thread (tiny problems, 2 cores) and the shared-data fixture."""

from pathlib import Path

import pytest
import torch
from threadpoolctl import threadpool_limits

threadpool_limits(1)
torch.set_num_threads(1)  # tiny models; two threads on a shared 2-core machine thrash

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """``../shared/data`` beside the project; tests using it skip when it is absent."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"real ECG samples not found at {SHARED_DATA} (a clone without ../shared)")
    return SHARED_DATA
