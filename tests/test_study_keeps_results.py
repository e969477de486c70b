"""A study folder keeps its finished results through what a user does to it: a refused rerun,
a damaged saved run, a report asked for after new runs, a run folder that cannot be written
(each case found by interrupting, changing and damaging tiny studies, 2026-12-06)."""

from __future__ import annotations

import json
import shutil
import sqlite3
from pathlib import Path

import pytest

from ecgscale.data.store import StoreError
from ecgscale.spec import StudySpec
from ecgscale.study.results import fitted_on, read_fits
from ecgscale.study.runner import (
    fit_laws,
    prepare_data,
    study_tables,
    train_runs,
    write_report,
)
from ecgscale.study.specfile import parse_spec


@pytest.fixture
def study(tiny_study, tmp_path) -> tuple[StudySpec, Path]:
    """A copy of the session's tiny study, to change."""
    spec, out, _ = tiny_study
    copy = tmp_path / "study"
    shutil.copytree(out, copy)
    return spec, copy


def _rows(folder: Path, sql: str) -> list[tuple]:
    with sqlite3.connect(folder / "results.sqlite") as con:
        return con.execute(sql).fetchall()


def test_a_refused_rerun_leaves_the_folders_spec(study) -> None:
    """A rerun with other data settings is refused by the store check; it used to write its
    spec.yaml first, after which status, fit and report saw none of the finished runs (and
    wrote an empty fits.json and report over the good ones)."""
    spec, folder = study
    before = (folder / "spec.yaml").read_text()
    other = parse_spec(json.loads(json.dumps(spec.model_dump(mode="json"))))
    other = other.model_copy(update={"data": other.data.model_copy(update={"n_records": 1200})})
    with pytest.raises(StoreError, match="generated for other data settings"):
        prepare_data(other, folder, progress=False)
    assert (folder / "spec.yaml").read_text() == before


def test_a_damaged_saved_run_is_trained_again_not_failed(study) -> None:
    """A truncated model.safetensors of a finished run made it fail three times, its results
    row emptied; the run is seeded, so training it again gives its result back."""
    spec, folder = study
    run_id, loss = _rows(folder, "SELECT run_id, pretrain_loss FROM runs WHERE status = 'done'"
                         " AND steps > 0 ORDER BY run_id LIMIT 1")[0]  # fmt: skip
    weights = folder / "runs" / run_id / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:100])
    with sqlite3.connect(folder / "results.sqlite") as con:  # ask for its evaluation again
        con.execute("UPDATE runs SET eval_tag = 'older' WHERE run_id = ?", (run_id,))
    with pytest.warns(UserWarning, match=f"{run_id}: saved run unreadable, trained again"):
        train_runs(spec, folder, progress=False)
    query = f"SELECT status, pretrain_loss FROM runs WHERE run_id = '{run_id}'"
    ((status, again),) = _rows(folder, query)
    assert status == "done" and again == pytest.approx(loss, rel=1e-5)


def test_a_report_refuses_fits_of_other_results(study) -> None:
    spec, folder = study
    fit_laws(folder, spec=spec)
    assert read_fits(folder)["fitted_on"] == fitted_on(study_tables(folder, spec))
    write_report(folder, spec=spec)  # the fits match the results
    with sqlite3.connect(folder / "results.sqlite") as con:  # a run finished since
        con.execute("UPDATE runs SET finished_at = 'later' WHERE rowid = 1")
    with pytest.raises(ValueError, match="fits.json: fitted on other results than the folder"):
        write_report(folder, spec=spec)
    fit_laws(folder, spec=spec)
    assert "jobs of the spec&#39;s grid" in write_report(folder, spec=spec).read_text()


def test_a_run_folder_that_cannot_be_written_does_not_stop_the_study(tmp_path: Path) -> None:
    """Writing error.txt into a read-only run folder raised from inside the handler that must
    never raise, and stopped the whole study; the results row holds the error anyway."""
    from ecgscale.study.runs import _record_error

    blocked = tmp_path / "a-file"
    blocked.write_text("")
    try:
        raise PermissionError("the run's own failure")
    except PermissionError as err:
        _record_error(blocked / "run", err)  # its folder cannot be made: nothing raised
        _record_error(tmp_path / "run", err)
    assert "the run's own failure" in (tmp_path / "run" / "error.txt").read_text()


def test_another_spec_waits_for_the_jobs_running_under_the_folders(study) -> None:
    """Two commands with different specs on one folder: the second one's spec.yaml replaced
    the first's while its jobs ran, and the first's report then stood beside another spec."""
    from ecgscale.study.lifecycle import this_process

    spec, folder = study
    with sqlite3.connect(folder / "results.sqlite") as con:  # a job this (live) process runs
        con.execute(
            "UPDATE jobs SET state = 'running', owner = ? WHERE rowid = 1", (this_process(),)
        )
    other = spec.model_copy(update={"eval": spec.eval.model_copy(update={"n_boot": 7})})
    before = (folder / "spec.yaml").read_text()
    with pytest.raises(StoreError, match=r"1 job\(s\) run under another spec now"):
        prepare_data(other, folder, progress=False)
    assert (folder / "spec.yaml").read_text() == before
    prepare_data(spec, folder, progress=False)  # the same spec: runs beside them
    assert (folder / "spec.yaml").read_text() == before
