"""Unseen-task set-up, the task model's loss, the feature cache, task/transfer spec checks and
the results-store upgrade from the first schema."""

from __future__ import annotations

import json
import sqlite3

import numpy as np
import pandas as pd
import pytest
import torch

from ecgscale.evaluate.probe import FeatureCache, extract_features
from ecgscale.evaluate.roles import TaskError, task_rows
from ecgscale.models import build
from ecgscale.objectives import TaskModel
from ecgscale.spec import SpecError, TaskSpec
from ecgscale.study.results import SCHEMA_VERSION, Results
from ecgscale.study.specfile import parse_spec


def _meta(n: int = 400, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    split = rng.choice(["train", "val", "test"], size=n, p=[0.6, 0.2, 0.2])
    return pd.DataFrame(
        {
            "row": np.arange(n),
            "record_id": [f"r{i}" for i in range(n)],
            "patient_id": np.arange(n),
            "source": "src",
            "site": "site",
            "split": split,
            "age": np.where(rng.random(n) < 0.1, np.nan, rng.normal(60, 10, n)),
            "is_male": pd.array(
                [None if i % 17 == 0 else bool(i % 2) for i in range(n)], dtype="boolean"
            ),
            "A": rng.integers(0, 2, n).astype(np.int8),
            "B": np.where(rng.random(n) < 0.3, -1, rng.integers(0, 2, n)).astype(np.int8),
            "text": "x",
        }
    )


def every_row(tr) -> np.ndarray:
    """Every row a task reads: its largest subset (the others nest in it), validation, test."""
    return np.unique(np.concatenate([tr.subsets[max(tr.subsets)], tr.val, tr.test]))


def _task(**kw) -> TaskSpec:
    base = {"name": "t", "source": "src", "target": "age", "kind": "regression", "d_f": [10, 40]}
    return TaskSpec(**(base | kw))


def test_regression_task_standardises_with_the_train_split_and_drops_unknown_targets():
    meta = _meta()
    tr = task_rows(_task(val_records=30, test_records=50), meta)
    assert len(tr.subsets[10]) == 10 and set(tr.subsets[10]) <= set(tr.subsets[40])
    assert len(tr.val) == 30 and len(tr.test) == 50
    used = meta.loc[every_row(tr)]
    assert used["age"].notna().all()
    assert set(meta.loc[tr.subsets[40], "split"]) == {"train"}
    assert set(meta.loc[tr.test, "split"]) == {"test"}
    train_age = meta.loc[(meta["split"] == "train") & meta["age"].notna(), "age"]
    assert tr.center == pytest.approx(train_age.mean()) and tr.scale == pytest.approx(
        train_age.std(ddof=0)
    )
    y = tr.targets(meta, tr.test)
    assert y.shape == (50, 1)
    assert np.allclose(y[:, 0], (meta.loc[tr.test, "age"] - tr.center) / tr.scale, atol=1e-5)


def test_encoders_are_evaluated_on_the_probed_subsets_only():
    """The from-scratch ladder's larger subsets (here 80 and 160 past the probed 40) are for
    from-scratch models: an encoder's features are taken on the probed rows only."""
    meta = _meta()
    tr = task_rows(_task(val_records=30, test_records=50), meta, sizes=[10, 40, 80, 160])
    assert set(tr.subsets) == {10, 40, 80, 160}
    assert set(tr.probed_rows) == set(tr.subsets[40]) | set(tr.val) | set(tr.test)
    assert len(every_row(tr)) == len(tr.probed_rows) + 120  # the 120 rows only from-scratch reads


def test_binary_and_multilabel_targets():
    meta = _meta()
    sex = task_rows(_task(target="is_male", kind="binary"), meta)
    assert meta.loc[every_row(sex), "is_male"].notna().all()
    assert set(np.unique(sex.targets(meta, sex.test))) <= {0.0, 1.0}
    multi = task_rows(_task(target=["A", "B"], kind="multilabel"), meta)
    y = multi.targets(meta, multi.test)
    assert y.shape[1] == 2 and set(np.unique(y[:, 1])) == {-1.0, 0.0, 1.0}
    assert (y[:, 0] >= 0).all()


@pytest.mark.parametrize(
    ("kw", "message"),
    [
        ({"source": "nowhere"}, "no source or site named 'nowhere'"),
        ({"target": "missing"}, "no column 'missing'"),
        ({"target": "age", "kind": "binary"}, "values other than 0/1"),
        ({"d_f": [10, 5000]}, "d_f 5000 exceeds"),
    ],
)
def test_task_errors_name_the_task_and_the_problem(kw, message):
    with pytest.raises(TaskError, match=message) as err:
        task_rows(_task(**kw), _meta())
    assert str(err.value).startswith("task 't':")


def test_task_and_transfer_spec_validation():
    base = {"name": "s", "models": {"sizes": [20000]}, "data_sizes": [100]}
    task = {"name": "a", "source": "code", "target": "age", "kind": "regression", "d_f": [10, 20]}
    spec = parse_spec(base | {"tasks": [task]}, overrides=["transfer.train={max_steps: 7}"])
    assert spec.scratch_train.max_steps == 7 and spec.scratch_train.lr == spec.train.lr
    cases = [
        ({"tasks": [task, task]}, "distinct"),
        ({"tasks": [task | {"d_f": [20, 10]}]}, "increasing"),
        ({"tasks": [task | {"kind": "multilabel"}]}, "two or more columns"),
        ({"tasks": [task | {"target": ["a", "b"], "kind": "binary"}]}, "one target column"),
        ({"transfer": {"train": {"steps": 3}}}, "unknown train field 'steps'"),
        ({"transfer": {"train": {"max_steps": 0}}}, "transfer.train.max_steps"),
        ({"data": {"ingest": [{"kind": "nope", "path": "x"}]}}, "unknown source kind 'nope'"),
    ]
    for extra, message in cases:
        with pytest.raises(SpecError, match=message):
            parse_spec(base | extra)


def test_evaluation_settings_change_the_eval_tag_not_the_run_ids():
    from ecgscale.study.runs import expand

    base = {"name": "s", "models": {"sizes": [20000]}, "data_sizes": [100]}
    a = parse_spec(base)
    b = parse_spec(base, overrides=["eval.n_boot=10", "data.ood_sites=[noisy]"])
    c = parse_spec(base, overrides=["train.max_steps=10"])
    d = parse_spec(base, overrides=["eval.l2_extend=0"])
    assert a.eval.l2_extend == 3 and d.eval.l2_extend == 0
    assert (
        [r.run_id for r in expand(a)]
        == [r.run_id for r in expand(b)]
        == [r.run_id for r in expand(d)]
    )
    assert len({a.eval_tag(), b.eval_tag(), d.eval_tag()}) == 3
    assert [r.run_id for r in expand(a)] != [r.run_id for r in expand(c)]


def test_task_model_loss_ignores_unannotated_entries():
    torch.manual_seed(0)
    model = TaskModel(build("resnet", 20000, input_len=200, fs=100), 2, regression=False)
    x = torch.randn(6, 12, 200)
    y = torch.tensor([[1, -1], [0, -1], [1, 1], [0, 0], [1, -1], [0, 1]], dtype=torch.float32)
    logits = model.logits(x)
    known = y >= 0
    expected = torch.nn.functional.binary_cross_entropy_with_logits(logits[known], y[known])
    assert torch.allclose(model.loss(x, y), expected, atol=1e-6)
    reg = TaskModel(model.encoder, 1, regression=True)
    target = torch.randn(6, 1)
    assert torch.allclose(reg.loss(x, target), ((reg.logits(x) - target) ** 2).mean())


def test_feature_cache_gives_the_features_of_each_row_in_order():
    torch.manual_seed(0)
    encoder = build("resnet", 20000, input_len=200, fs=100)
    signals = np.random.default_rng(0).normal(size=(50, 12, 200)).astype(np.float32)
    read = lambda rows: signals[rows]  # noqa: E731
    cache = FeatureCache(encoder, read)
    cache.add(np.array([5, 1, 9]), np.array([9, 30]))
    rows = np.array([30, 2, 5, 49, 1])
    assert np.allclose(cache(rows), extract_features(encoder, read, rows), atol=1e-5)
    assert sorted(cache.rows) == [1, 2, 5, 9, 30, 49]


def test_results_of_the_first_schema_are_upgraded_in_place(tmp_path):
    path = tmp_path / "results.sqlite"
    con = sqlite3.connect(path)
    con.execute(
        "CREATE TABLE runs (run_id TEXT PRIMARY KEY, family TEXT, paradigm TEXT, status TEXT)"
    )
    con.execute(
        "CREATE TABLE evals (run_id TEXT, eval_set TEXT, is_ood INTEGER, n INTEGER, loss REAL, "
        "auroc REAL, per_label TEXT, PRIMARY KEY (run_id, eval_set))"
    )
    con.execute("INSERT INTO runs VALUES ('r1', 'resnet', 'sl', 'done')")
    con.execute("INSERT INTO evals VALUES ('r1', 'id', 0, 10, 0.3, 0.8, ?)", (json.dumps({}),))
    con.commit()
    con.close()
    results = Results(path)
    evals = results.evals()
    assert evals[["run_id", "eval_set", "method", "loss", "auroc"]].values.tolist() == [
        ["r1", "id", "probe", 0.3, 0.8]
    ]
    assert results.eval_tags() == {"r1": None}
    assert sqlite3.connect(path).execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    Results(path)  # opening again is a no-op
    assert len(Results(path).evals()) == 1


def test_a_results_file_still_being_created_is_not_taken_for_the_first_schema(tmp_path):
    """Another process (``study status``) may open the file between the creator's tables and
    its schema version, which is written last: the file is not "upgraded" from schema 1 then
    (that failed with "duplicate column name: eval_tag")."""
    path = tmp_path / "results.sqlite"
    Results(path).record({"run_id": "r1", "family": "resnet", "paradigm": "sl"} | {
        "target_params": 1, "data_size": 1, "seed": 0, "status": "done"})  # fmt: skip
    with sqlite3.connect(path) as con:
        con.execute("PRAGMA user_version=0")  # as the creator leaves it until its last step
    assert Results(path).statuses() == {"r1": "done"}
    assert sqlite3.connect(path).execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION


def test_mortality_task_on_an_ingested_code15_store(tmp_path):
    """CODE-15%'s ``death`` (known on a patient's first exam only) as a binary task."""
    from ecgscale.data.fixtures import write_code15
    from ecgscale.data.ingest import ingest
    from ecgscale.data.store import Store

    table = write_code15(tmp_path / "code15", 300, 2, seed=3, n_samples=1024)
    ingest("code15", tmp_path / "code15", tmp_path / "store", fs=100, n_samples=250, progress=False)
    meta = Store(tmp_path / "store").meta
    tr = task_rows(_task(source="code15", target="death", kind="binary", d_f=[10, 30]), meta)
    used = meta.loc[every_row(tr)]
    known = table.set_index("exam_id")["death"].dropna()
    assert set(used["record_id"].astype(int)) <= set(known.index)
    y = tr.targets(meta, every_row(tr))[:, 0]
    assert np.array_equal(y, known.loc[used["record_id"].astype(int)].astype(float).to_numpy())


def test_fine_tuning_is_evaluated_on_every_set_and_every_d_f(tmp_path):
    from ecgscale.study.runner import run_study

    spec = parse_spec(
        {
            "name": "finetune",
            "data": {
                "n_samples": 250,
                "n_records": 600,
                "holdout": 0.6,
                "n_ood_records": 40,
                "ood_sites": ["noisy"],
            },
            "models": {"families": ["resnet"], "sizes": [20000]},
            "paradigms": ["ssl"],
            "data_sizes": [100],
            "train": {"batch_size": 16, "max_steps": 3, "eval_every": 3, "val_records": 32},
            "eval": {
                "probe_records": 60,
                "probe_val_records": 30,
                "test_records": 40,
                "l2_grid": [1.0],
                "n_boot": 20,
                "finetune": True,
            },
            "tasks": [
                {
                    "name": "lvh",
                    "source": "code",
                    "target": "LVH",
                    "kind": "binary",
                    "d_f": [30, 80],
                    "val_records": 30,
                    "test_records": 40,
                }
            ],
            "transfer": {"scratch": False, "train": {"max_steps": 3, "eval_every": 3}},
            "executor": {"workers": 1},
            "laws": {"n_boot": 0},
        }
    )
    run_study(spec, tmp_path, progress=False)
    results = Results(tmp_path / "results.sqlite")
    evals = results.evals()
    assert sorted(zip(evals["eval_set"], evals["method"], strict=True)) == [
        ("id", "finetune"),
        ("id", "probe"),
        ("noisy", "finetune"),
        ("noisy", "probe"),
    ]
    assert evals["loss"].notna().all()
    tasks = results.tasks()
    assert sorted(zip(tasks["method"], tasks["d_f"], strict=True)) == [
        ("finetune", 30),
        ("finetune", 80),
        ("probe", 30),
        ("probe", 80),
    ]
    assert results.scratch().empty


def test_report_names_the_labels_a_set_leaves_out():
    from ecgscale.report.tasks import eval_set_table

    per_label = {"AF": {"n": 50, "n_pos": 4}, "LBBB": {"n": 0, "n_pos": 0}}
    evals = pd.DataFrame(
        [
            {
                "eval_set": "mine",
                "method": "probe",
                "is_ood": True,
                "n": 50,
                "omitted": "LBBB",
                "per_label": json.dumps(per_label),
            },
            {
                "eval_set": "id",
                "method": "probe",
                "is_ood": False,
                "n": 80,
                "omitted": "",
                "per_label": json.dumps({"AF": {"n": 80, "n_pos": 9}}),
            },
        ]
    )
    rows = {row[0]: row for row in eval_set_table(evals)["rows"]}
    assert rows["mine"][1:] == ["OOD", "50", "AF 4", "LBBB"]
    assert rows["id"][-1] == "none"


def test_other_synthetic_sites_in_an_existing_study_folder_are_a_clear_error(tmp_path):
    from ecgscale.data.store import StoreError
    from ecgscale.study.runner import prepare_data

    base = {
        "name": "s",
        "data": {"n_samples": 250, "n_records": 60, "n_ood_records": 20, "ood_sites": ["noisy"]},
        "models": {"sizes": [20000]},
        "data_sizes": [10],
    }
    prepare_data(parse_spec(base), tmp_path, progress=False)
    prepare_data(parse_spec(base), tmp_path, progress=False)  # the same: kept
    other = parse_spec(base, overrides=["data.ood_sites=[ptbxl_like]"])
    with pytest.raises(StoreError, match="use a new one"):
        prepare_data(other, tmp_path, progress=False)
