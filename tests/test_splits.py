"""Patient-level splits and nested subsets."""

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ecgscale.data.splits import assign_split, nested_subsets, patient_uniform


def _meta(patients: np.ndarray) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "row": np.arange(len(patients)),
            "patient_id": patients,
            "record_id": [f"r{i}" for i in range(len(patients))],
        }
    )


@given(st.lists(st.integers(0, 10**12), min_size=1, max_size=300), st.integers(0, 5))
@settings(max_examples=50, deadline=None)
def test_split_is_by_patient_and_order_free(patients, seed):
    p = np.array(patients)
    split = assign_split(p, val=0.1, test=0.2, seed=seed)
    for pid in np.unique(p):
        assert len(set(split[p == pid])) == 1
    perm = np.random.default_rng(0).permutation(len(p))
    np.testing.assert_array_equal(assign_split(p[perm], val=0.1, test=0.2, seed=seed), split[perm])


def test_split_fractions_and_seed():
    p = np.arange(20000)
    split = assign_split(p, val=0.1, test=0.2, seed=0)
    assert abs((split == "test").mean() - 0.2) < 0.02
    assert abs((split == "val").mean() - 0.1) < 0.02
    assert (assign_split(p, val=0.1, test=0.2, seed=1) != split).any()
    u = patient_uniform(p, "x")
    assert u.min() >= 0 and u.max() < 1


def test_bad_fractions():
    with pytest.raises(ValueError, match="split fractions"):
        assign_split(np.arange(3), val=0.6, test=0.5, seed=0)


def test_subsets_nested_exact_and_patient_contiguous():
    rng = np.random.default_rng(0)
    meta = _meta(np.sort(rng.integers(0, 400, size=1000)))
    subsets = nested_subsets(meta, [100, 300, 900], seed=0)
    assert [len(subsets[d]) for d in (100, 300, 900)] == [100, 300, 900]
    assert set(subsets[100]) <= set(subsets[300]) <= set(subsets[900])
    # only the boundary patient may be cut
    for d in (100, 300):
        inside = meta.loc[subsets[d], "patient_id"]
        counts = meta["patient_id"].value_counts()
        partial = [pid for pid, c in inside.value_counts().items() if c != counts[pid]]
        assert len(partial) <= 1
    with pytest.raises(ValueError, match="exceeds"):
        nested_subsets(meta, [1001], seed=0)
