"""A tiny whole study (``tiny_study`` in conftest): data → runs → results table → fits →
report, then a no-op rerun."""

import json
import sqlite3

import pytest

from ecgscale import export_run
from ecgscale.models.exported import EncoderError
from ecgscale.study.runner import study_tables, train_runs
from ecgscale.study.runs import UNTRAINED, all_jobs, expand, expand_references


def test_results_table(tiny_study):
    spec, out, _ = tiny_study
    con = sqlite3.connect(out / "results.sqlite")
    rows = con.execute(
        "SELECT run_id, status, n_params, flops_per_sample, pretrain_loss, paradigm, steps "
        "FROM runs"
    ).fetchall()
    references = [r for r in rows if r[5] == UNTRAINED]
    rows = [r for r in rows if r[5] != UNTRAINED]
    assert sorted(r[0] for r in rows) == sorted(r.run_id for r in expand(spec))
    assert all(r[1] == "done" and r[2] > 0 and r[3] > 0 and r[4] > 0 for r in rows), rows
    # the demo's untrained encoders (eval.untrained): probed, never trained
    assert sorted(r[0] for r in references) == sorted(r.run_id for r in expand_references(spec))
    assert len(references) == 6
    assert all(r[1] == "done" and r[2] > 0 and r[4] is None and r[6] == 0 for r in references)
    evals = con.execute(
        "SELECT eval_set, method, COUNT(*), MIN(loss), MIN(auroc) FROM evals "
        "GROUP BY eval_set, method"
    ).fetchall()
    # every run's and reference's probe, and the own head of the 18 SL runs, on the ID set and
    # each OOD site
    sets = ["id", *spec.data.ood_sites]
    assert {e[:2]: e[2] for e in evals} == {
        **{(name, "probe"): 36 + 6 for name in sets},
        **{(name, "head"): 18 for name in sets},
    }
    evals = [e[1:] for e in evals]
    assert all(e[2] > 0 and 0 <= e[3] <= 1 for e in evals)


def test_fits_and_report(tiny_study):
    _, out, report = tiny_study
    content = json.loads((out / "fits.json").read_text())
    fits = content["fits"]
    keys = {(f["family"], f["paradigm"], f["metric"], f["x"]) for f in fits}
    for fam in ("resnet", "transformer"):
        for par in ("sl", "ssl"):
            assert (fam, par, "pretrain_loss", "N") in keys
            assert (fam, par, "loss:id", "D") in keys
    assert all(set(f["params"]) == {"E", "A", "alpha"} for f in fits)
    assert {f["paradigm"] for f in fits} == {"sl", "ssl"}  # the references fit no law
    html = report.read_text()
    assert report.name == "report.html" and "demo" in html and "data:image/png;base64" in html
    assert "untrained (D = 0)" in html and "dash-dotted: each N&#39;s untrained encoder" in html


def test_references_stand_beside_the_runs(tiny_study, tmp_path):
    spec, out, _ = tiny_study
    tables = study_tables(out, spec)
    assert UNTRAINED not in set(tables["runs"]["paradigm"])  # the laws' runs are the grid's
    references = tables["references"]
    assert len(references) == 6 * (1 + len(spec.data.ood_sites))
    assert set(references["eval_set"]) == {"id", *spec.data.ood_sites}
    assert (references["loss"] > 0).all()
    assert (references["loss_lo"] <= references["loss"]).all()  # the report's table needs them
    assert (references["loss"] <= references["loss_hi"]).all()
    folder = out / "runs" / expand_references(spec)[0].run_id
    with pytest.raises(EncoderError, match="an untrained reference"):
        export_run(folder, tmp_path / "exported")


def test_rerun_trains_nothing(tiny_study):
    spec, out, _ = tiny_study
    summary = train_runs(spec, out, progress=False)
    jobs = len(all_jobs(spec))
    assert summary.skipped == summary.total == jobs == 36 + 6 + 10 and summary.done == 0
