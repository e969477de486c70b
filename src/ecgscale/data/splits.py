"""Patient-level splits and nested pre-training subsets, stable under reordering of the store.

Every patient gets a pseudo-random number from a hash of (patient id, salt); splits and
orderings depend only on that, never on record order, so adding sources or re-ingesting
in another order does not move a patient between splits.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

_MASK64 = np.uint64(0xFFFFFFFFFFFFFFFF)


def _splitmix64(x: np.ndarray) -> np.ndarray:
    with np.errstate(over="ignore"):
        z = (x + np.uint64(0x9E3779B97F4A7C15)) & _MASK64
        z = ((z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)) & _MASK64
        z = ((z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)) & _MASK64
        return z ^ (z >> np.uint64(31))


def patient_uniform(patient_ids: np.ndarray, salt: str) -> np.ndarray:
    """A uniform number in [0, 1) per patient id, fixed by the id and ``salt``."""
    salt_int = np.uint64(int.from_bytes(salt.encode()[:8].ljust(8, b"\0"), "little"))
    h = _splitmix64(np.asarray(patient_ids).astype(np.uint64) ^ _splitmix64(salt_int))
    return (h >> np.uint64(11)).astype(np.float64) / float(1 << 53)


def assign_split(patient_ids: np.ndarray, *, val: float, test: float, seed: int) -> np.ndarray:
    """'train' / 'val' / 'test' per record, by patient."""
    if not (val >= 0 and test >= 0 and val + test < 1):
        raise ValueError(f"split fractions val={val}, test={test} must be >= 0 and sum below 1")
    u = patient_uniform(patient_ids, f"split{seed}")
    return np.where(u < test, "test", np.where(u < test + val, "val", "train"))


def patient_order(meta: pd.DataFrame, salt: str) -> np.ndarray:
    """Global rows of ``meta`` ordered by patient hash, records of a patient kept together."""
    u = patient_uniform(meta["patient_id"].to_numpy(), salt)
    order = np.lexsort((meta["record_id"].to_numpy().astype(str), meta["patient_id"].to_numpy(), u))
    return meta["row"].to_numpy()[order]


def nested_subsets(meta: pd.DataFrame, sizes: list[int], *, seed: int) -> dict[int, np.ndarray]:
    """Nested pre-training subsets: the first ``d`` records of one fixed patient order, per size.

    Each subset contains every smaller one; a subset is filled patient by patient, so at most
    one patient (the last) is cut at the boundary.
    """
    order = patient_order(meta, f"subset{seed}")
    too_big = [d for d in sizes if d > len(order)]
    if too_big:
        raise ValueError(f"data size {too_big[0]} exceeds the {len(order)} training records")
    return {int(d): np.sort(order[:d]) for d in sizes}
