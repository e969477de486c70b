"""A study with real OOD sets and unseen tasks, end to end: the shipped spec for the samples in
../shared/data, shrunk to test size. Checks the results table (ID loss, one loss per OOD set,
per-label AUROC with intervals), task results at every D_F for every run, the effective-data
analysis with its from-scratch curves, the report, and re-evaluation without retraining."""

from __future__ import annotations

import json
import shutil
import sqlite3
from pathlib import Path

import numpy as np
import pytest
import yaml
from click.testing import CliRunner
from tiny import TINY_PROBE, TINY_TRAIN, overrides

from ecgscale.cli import main
from ecgscale.data.schema import LABELS
from ecgscale.laws.verdicts import RATIO_VERDICTS
from ecgscale.study.results import Results
from ecgscale.study.runner import fit_laws, run_study, train_runs
from ecgscale.study.runs import expand, expand_scratch
from ecgscale.study.specfile import parse_spec

SPEC = Path(__file__).parents[1] / "configs" / "studies" / "shared_samples.yaml"
SHRINK = [
    "data.n_samples=250",
    "data.n_records=1000",
    "data.n_ood_records=60",
    "models.families=[resnet]",
    "models.sizes=[20000, 40000]",
    "data_sizes=[100, 200]",
    *overrides("train", TINY_TRAIN),
    *overrides("eval", TINY_PROBE),
    "eval.n_boot=50",
    "transfer.train={max_steps: 4, eval_every: 2}",
    "laws.n_boot=20",
]
OOD = {"ptbxl", "cinc2020", "cinc2021", "noisy"}


def _tree(shared_data: Path) -> dict:
    tree = yaml.safe_load(SPEC.read_text())
    for source in tree["data"]["ingest"]:
        source["path"] = str(shared_data / Path(source["path"]).name)
    for task in tree["tasks"]:  # the ID-site task lives on the held-out patients: smaller
        task["d_f"] = [20, 40, 80] if task["source"] != "code" else [10, 20]
        task["val_records"], task["test_records"] = 40, 60
    return tree


@pytest.fixture(scope="module")
def study(shared_data, tmp_path_factory):
    spec = parse_spec(_tree(shared_data), origin=str(SPEC), overrides=SHRINK)
    out = tmp_path_factory.mktemp("shared-samples")
    report = run_study(spec, out, progress=False)
    return spec, out, report


def test_results_table_has_id_ood_losses_and_per_label_auroc_intervals(study):
    spec, out, _ = study
    results = Results(out / "results.sqlite")
    wide = results.wide()
    assert sorted(wide["run_id"]) == sorted(r.run_id for r in expand(spec))
    assert (wide["status"] == "done").all(), wide["error"].tolist()
    for name in {"id"} | OOD:
        loss, lo, hi = (wide[f"{m}:{name}"].to_numpy(float) for m in ("loss", "loss_lo", "loss_hi"))
        assert np.isfinite(loss).all() and (loss > 0).all(), name
        assert (lo <= loss).all() and (loss <= hi).all(), name
    labels = results.long()
    probe = labels[(labels["method"] == "probe") & (labels["label"] != "macro")]
    assert set(probe["label"]) == set(LABELS)
    assert set(probe["eval_set"]) == {"id"} | OOD
    scored = probe[probe["auroc"].notna()]
    assert len(scored) > len(probe) / 2
    assert (scored["auroc_lo"] <= scored["auroc"]).all()
    assert (scored["auroc"] <= scored["auroc_hi"]).all()
    # SL models also report their own head; the CLI prints and exports the same tables.
    evals = results.evals()
    sl_runs = {r.run_id for r in expand(spec) if r.paradigm == "sl"}
    assert set(evals.loc[evals["method"] == "head", "run_id"]) == sl_runs
    cli = CliRunner().invoke(
        main, ["results", str(out), "--table", "labels", "--out", str(out / "l.csv")]
    )
    assert cli.exit_code == 0, cli.output
    assert f"{len(labels[labels['run_id'].isin(wide['run_id'])])} rows" in cli.output


def test_every_task_has_every_d_f_for_every_run(study):
    spec, out, _ = study
    tasks = Results(out / "results.sqlite").tasks()
    tasks = tasks[tasks["method"] == "probe"]
    for run in expand(spec):
        for task in spec.tasks:
            mine = tasks[(tasks["run_id"] == run.run_id) & (tasks["task"] == task.name)]
            assert sorted(mine["d_f"]) == task.d_f, (run.run_id, task.name)
            assert np.isfinite(mine["loss"]).all()
    kinds = dict(zip(tasks["task"], tasks["metric_name"], strict=False))
    assert kinds == {
        "ptbxl_superclass": "auroc",
        "ptbxl_age": "r2",
        "ptbxl_sex": "auroc",
        "lvh": "auroc",
    }
    scratch = Results(out / "results.sqlite").scratch()
    assert sorted(scratch["scratch_id"]) == sorted(j.scratch_id for j in expand_scratch(spec))
    assert (scratch["status"] == "done").all(), scratch["error"].tolist()


def test_effective_data_and_its_from_scratch_curves(study):
    spec, out, report = study
    transfer = json.loads((out / "fits.json").read_text())["transfer"]
    n_rows = len(expand(spec)) * sum(len(t.d_f) for t in spec.tasks)
    assert len(transfer["effective"]) == n_rows
    for task in spec.tasks:
        for n in spec.models.sizes:
            curve = [
                c for c in transfer["curves"] if (c["task"], c["target_params"]) == (task.name, n)
            ]
            gap = [
                g
                for g in transfer["gaps"]
                if g["what"] == f"from-scratch curve {task.name}/resnet/N={n}"
            ]
            assert curve or gap, (task.name, n)
            if curve:  # 5 D_F reaching 4x past the largest probed one
                assert len(curve[0]["points"]) == len(task.scratch_ladder) >= 5
                assert curve[0]["dof"] >= 1
    figures = {p.name for p in (out / "figures").iterdir()}
    for task in spec.tasks:
        assert f"task_{task.name}_loss_vs_DF.png" in figures
    html = report.read_text()
    assert "Unseen tasks and transfer" in html and "Transfer laws" in html
    assert "labels left out" in html and "Per-label AUROC" in html


def test_new_evaluation_settings_reevaluate_without_training(study):
    spec, out, _ = study
    weights = {
        r.run_id: (out / r.folder / "model.safetensors").stat().st_mtime_ns for r in expand(spec)
    }
    again = parse_spec(
        json.loads(json.dumps(spec.model_dump(mode="json"))), overrides=["eval.n_boot=10"]
    )
    times = "SELECT run_id, train_wall_s, wall_s FROM runs ORDER BY run_id"
    with sqlite3.connect(out / "results.sqlite") as con:
        before = con.execute(times).fetchall()
    summary = train_runs(again, out, progress=False)
    assert summary.reevaluated == len(expand(spec)) and summary.failed == 0
    with sqlite3.connect(out / "results.sqlite") as con:
        now = con.execute(times).fetchall()
    # the training's wall time is kept (it was the evaluation's alone), the evaluation's added
    assert [r[:2] for r in now] == [r[:2] for r in before]
    assert all(trained > 0 and wall > trained for _, trained, wall in now), now
    assert summary.done == len(expand(spec))  # runs only: from-scratch models are untouched
    after = {
        r.run_id: (out / r.folder / "model.safetensors").stat().st_mtime_ns for r in expand(spec)
    }
    assert after == weights
    con = sqlite3.connect(out / "results.sqlite")
    assert {t for (t,) in con.execute("SELECT DISTINCT eval_tag FROM runs")} == {again.eval_tag()}
    assert train_runs(again, out, progress=False).done == 0


def test_transfer_efficiency_per_task_or_its_gap(study):
    spec, out, report = study
    content = json.loads((out / "fits.json").read_text())
    entries = content["efficiency"]["transfer"]
    gaps = [g for g in content["analysis_gaps"] if g["what"].startswith("transfer efficiency")]
    named = {e["task"] for e in entries} | {g["what"].split()[-1].split("/")[0] for g in gaps}
    assert {t.name for t in spec.tasks} <= named
    html = report.read_text()
    for entry in entries:
        assert entry["n_missing"] < entry["n_pairs"]
        assert entry["verdict"] in RATIO_VERDICTS
        lo, hi = entry["loss_range"]
        assert 0 < lo <= hi
        task = next(t for t in spec.tasks if t.name == entry["task"])
        assert task.d_f[0] <= entry["d_f_range"][0] <= entry["d_f_range"][1] <= task.d_f[-1]
    if entries:
        assert "<td>D_E(SSL) / D_E(SL), median</td>" in html


def test_transfer_tasks_limit_the_from_scratch_curves(study, tmp_path):
    """``transfer.tasks`` picks the tasks with from-scratch curves: only those are trained and
    analysed; the others keep their probes and get a gap saying why they have no transfer."""
    spec, out, _ = study
    one = parse_spec(
        json.loads(json.dumps(spec.model_dump(mode="json"))), overrides=["transfer.tasks=[lvh]"]
    )
    assert {j.task for j in expand_scratch(one)} == {"lvh"}
    assert [j for j in expand_scratch(spec) if j.task == "lvh"] == expand_scratch(one)
    copy = tmp_path / "study"
    shutil.copytree(out, copy)
    content = json.loads(fit_laws(copy, workers=1, spec=one).read_text())
    assert {c["task"] for c in content["transfer"]["curves"]} == {"lvh"}
    assert {e["task"] for e in content["efficiency"]["transfer"]} <= {"lvh"}
    left_out = {
        g["what"] for g in content["analysis_gaps"] if "transfer.tasks" in g.get("reason", "")
    }
    others = {t.name for t in spec.tasks} - {"lvh"}
    assert left_out == {f"transfer efficiency on {name}" for name in others}
