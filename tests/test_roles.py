"""Roles of the records: carved patient-disjoint before the pre-training subsets, audited by
``ecgscale results STUDY --table roles``, and a split that overlaps on purpose is refused."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner
from hypothesis import given, settings
from hypothesis import strategies as st

from ecgscale.cli import main
from ecgscale.data.store import Store
from ecgscale.evaluate.roles import (
    RoleError,
    TaskError,
    assign_roles,
    check_roles,
    patients_of,
    read_role_table,
    role_table,
)
from ecgscale.study.runner import prepare_data
from ecgscale.study.specfile import load_spec, parse_spec

STUDIES = Path(__file__).resolve().parents[1] / "configs" / "studies"


def overlap_columns(table: pd.DataFrame) -> list[str]:
    return [c for c in table.columns if c.endswith((" records", " patients")) and c[0] in "Dp"]


def assert_sound(table: pd.DataFrame) -> None:
    """No role other than the nested pre-training subsets overlaps any pre-training role."""
    columns = overlap_columns(table)
    assert columns, table.columns
    assert (table["conflicts"] == "").all(), table[table["conflicts"] != ""]
    values = table[columns].to_numpy(float)
    assert np.nansum(values) == 0, table[columns]


def results_roles(study: Path, tmp_path: Path) -> pd.DataFrame:
    out = tmp_path / "roles.csv"
    result = CliRunner().invoke(
        main, ["results", str(study), "--table", "roles", "--out", str(out)]
    )
    assert result.exit_code == 0, result.output
    return read_role_table(out)


def test_tiny_demo_roles_are_disjoint_from_pre_training(tiny_study, tmp_path):
    spec, out, report = tiny_study
    table = results_roles(out, tmp_path)
    assert_sound(table)
    names = set(table["role"])
    assert {"probe train", "probe validation", "ID test", "pre-training validation"} <= names
    assert {f"pre-training D={d}" for d in spec.data_sizes} <= names
    for task in spec.tasks:  # the from-scratch ladder where the task has curves (LVH's)
        ladder = task.all_d_f if spec.has_scratch(task.name) else task.d_f
        assert {f"task {task.name} D_F={d}" for d in ladder} == {
            n for n in names if n.startswith(f"task {task.name} D_F=")
        }
    assert [t.name for t in spec.tasks if spec.has_scratch(t.name)] == ["lvh"]
    # the study wrote the same audit beside its results, and the report shows it
    written = read_role_table(out / "roles.csv")
    assert list(written["role"]) == list(table["role"])
    html = report.read_text()
    assert "Roles of the records" in html and "probe train" in html


def test_the_demo_spec_carves_every_role_with_several_records_per_patient(tmp_path):
    spec = load_spec(None)
    store = prepare_data(spec, tmp_path / "demo", progress=False)
    table = role_table(assign_roles(spec, store.meta), store.meta)
    assert_sound(table)
    by_role = table.set_index("role")
    # patients with several records: every role counts fewer patients than records
    assert (by_role.loc["pre-training D=2000", "patients"]) < 2000
    assert by_role.loc["probe train", "records"] == spec.eval.probe_records
    assert by_role.loc["task lvh D_F=800", "records"] == 800
    # the audit counts patients, not only records: no pre-training patient anywhere else
    roles = assign_roles(spec, store.meta)
    pretrain = set(patients_of(store.meta, roles.subsets[max(roles.subsets)]))
    pretrain |= set(patients_of(store.meta, roles.val))
    tasks = [r for tr in roles.tasks.values() for r in (*tr.subsets.values(), tr.val, tr.test)]
    held = np.concatenate([roles.probe_train, roles.probe_val, roles.id_test, *tasks])
    assert not pretrain & set(patients_of(store.meta, held))


def test_shared_samples_roles(shared_data, tmp_path, monkeypatch):
    monkeypatch.chdir(STUDIES.parents[1])  # the spec's ingest paths are relative to the repo
    spec = load_spec(
        STUDIES / "shared_samples.yaml",
        ["data.n_samples=250", "data.n_ood_records=40"],
    )
    study = tmp_path / "shared"
    prepare_data(spec, study, progress=False)
    table = results_roles(study, tmp_path)
    assert_sound(table)
    ptbxl = table[table["source"] == "ptbxl"]
    assert len(ptbxl) >= 3 * 7  # three PTB-XL tasks (5 D_F, val, test) and the OOD set
    # PTB-XL's tasks share its records with each other and with the OOD set ptbxl: allowed
    shared = table.set_index("role").loc["task ptbxl_age test", "shares records with"]
    assert "OOD ptbxl" in shared and "task ptbxl_sex" in shared


def _overlapping(roles, meta: pd.DataFrame, how: str):
    """``roles`` and ``meta`` with the probe set made to overlap pre-training: by a record, or
    by a patient (a probe record relabelled as a record of a pre-training patient)."""
    big = roles.subsets[max(roles.subsets)]
    if how == "record":
        return replace(roles, probe_train=np.union1d(roles.probe_train, big[:3])), meta
    meta = meta.copy()
    meta.loc[roles.probe_train[0], "patient_id"] = meta.loc[big[0], "patient_id"]
    return roles, meta


@pytest.mark.parametrize("how", ["record", "patient"])
def test_an_overlapping_split_is_refused(tiny_study, how):
    spec, out, _ = tiny_study
    store = Store(out / "store")
    roles, meta = _overlapping(assign_roles(spec, store.meta), store.meta, how)
    table = role_table(roles, meta)
    bad = table[table["conflicts"] != ""]
    assert len(bad) >= 2 and "pre-training" in " ".join(bad["conflicts"])
    assert np.nansum(table[overlap_columns(table)].to_numpy(float)) > 0
    with pytest.raises(RoleError, match="roles overlap"):
        check_roles(roles, meta)


def test_sizes_that_do_not_fit_name_the_way_out(tiny_study):
    spec, out, _ = tiny_study
    meta = Store(out / "store").meta
    thinned = meta[~((meta["split"] == "train") & (meta["row"] % 2 == 0))]
    with pytest.raises(RoleError, match=r"data_sizes: .*data.holdout"):
        assign_roles(spec, thinned)
    task = spec.tasks[1].model_dump(mode="json") | {"test_records": 5000}
    greedy = parse_spec(spec.model_dump(mode="json") | {"tasks": [task]})
    with pytest.raises(TaskError, match="raise data.holdout"):
        assign_roles(greedy, meta)


@st.composite
def metas(draw) -> pd.DataFrame:
    """An ID site of patients with 1-4 records each, split train/val/test by patient."""
    n_patients = draw(st.integers(80, 200))
    counts = draw(st.lists(st.integers(1, 4), min_size=n_patients, max_size=n_patients))
    split = draw(
        st.lists(
            st.sampled_from(["train"] * 6 + ["val", "test"]),
            min_size=n_patients,
            max_size=n_patients,
        )
    )
    pid = np.repeat(np.arange(n_patients), counts)
    n = pid.size
    rng = np.random.default_rng(draw(st.integers(0, 1000)))
    return pd.DataFrame(
        {
            "row": np.arange(n),
            "record_id": [f"r{i}" for i in range(n)],
            "patient_id": pid,
            "source": "src",
            "site": "code",
            "split": np.repeat(split, counts),
            "age": rng.normal(60, 10, n),
            "LVH": rng.integers(0, 2, n),
            **{
                label: rng.integers(0, 2, n)
                for label in ("1dAVb", "RBBB", "LBBB", "SB", "AF", "ST")
            },
        }
    )


@settings(max_examples=40, deadline=None)
@given(meta=metas(), holdout=st.floats(0.3, 0.6))
def test_carved_roles_never_share_a_patient(meta, holdout):
    tree = {
        "name": "p",
        "data": {
            "source": "store",
            "store": "x",
            "id_site": "code",
            "ood_sites": [],
            "holdout": holdout,
        },
        "models": {"sizes": [20000]},
        "data_sizes": [5, 10],
        "train": {"val_records": 5},
        "eval": {"probe_records": 10, "probe_val_records": 10, "test_records": 10},
        "tasks": [
            {
                "name": "age",
                "source": "code",
                "target": "age",
                "kind": "regression",
                "d_f": [4, 8],
                "val_records": 10,
                "test_records": 10,
            },
            {
                "name": "lvh",
                "source": "code",
                "target": "LVH",
                "kind": "binary",
                "d_f": [4, 8],
                "val_records": 10,
                "test_records": 10,
            },
        ],
    }
    try:
        roles = assign_roles(parse_spec(tree), meta)
    except RoleError:
        return  # too small a draw for these sizes: refused with a message, never overlapped
    table = check_roles(roles, meta)
    assert_sound(table)
    subsets = [set(roles.subsets[d]) for d in sorted(roles.subsets)]
    assert subsets[0] <= subsets[1]
