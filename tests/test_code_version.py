"""Which code trained a run: the digest, the counts of runs by other code, the study's warning
and the report's line."""

import shutil
import sqlite3

from ecgscale.study.code_version import (
    NOT_RECORDED,
    code_digest,
    describe_codes,
    other_code,
    training_code,
)
from ecgscale.study.runner import train_runs, write_report
from ecgscale.study.status import study_status


def _package(root):
    for rel in ("models/resnet.py", "laws/fit.py", "study/runs.py", "study/plan.py", "x.py"):
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(f"# {rel}\n")
    return root


def test_digest_follows_the_code_that_shapes_a_run(tmp_path):
    root = _package(tmp_path / "pkg")
    before = code_digest(root)
    assert len(before) == 12 and code_digest(root) == before
    for rel in ("laws/fit.py", "study/plan.py", "x.py"):  # after the results, or not a run's
        (root / rel).write_text("# changed\n")
        assert code_digest(root) == before, rel
    for rel in ("models/resnet.py", "study/runs.py"):
        (root / rel).write_text((root / rel).read_text() + "# changed\n")
        changed = code_digest(root)
        assert changed != before, rel
        before = changed
    (root / "models" / "transformer.py").write_text("")  # a new module counts too
    assert code_digest(root) != before


def test_this_process_has_one_code():
    code = training_code()
    assert code.startswith("0.") and code == training_code() and "+" in code


def test_other_code_counts_by_code():
    now = "1.0+aaaaaaaaaaaa"
    codes = [now, now, "0.9+bbbbbbbbbbbb", None, float("nan"), "0.9+bbbbbbbbbbbb"]
    assert other_code(codes, now) == {"0.9+bbbbbbbbbbbb": 2, NOT_RECORDED: 2}
    assert not other_code([now] * 3, now)
    assert describe_codes([now, now]) == now
    mixed = describe_codes(codes)
    assert mixed.startswith("mixed") and f"{now} (2)" in mixed and f"{NOT_RECORDED} (2)" in mixed


def test_every_run_of_the_tiny_study_records_its_code(tiny_study):
    _, out, report = tiny_study
    con = sqlite3.connect(out / "results.sqlite")
    codes = {r[0] for r in con.execute("SELECT code FROM runs UNION SELECT code FROM scratch")}
    assert codes == {training_code()}
    assert f"<td>{training_code()}</td>" in report.read_text()


def test_a_study_reused_after_a_code_change_says_so(tiny_study, tmp_path, capsys):
    spec, out, _ = tiny_study
    copy = tmp_path / "study"
    shutil.copytree(out, copy)
    with sqlite3.connect(copy / "results.sqlite") as con:
        ids = [r[0] for r in con.execute("SELECT run_id FROM runs WHERE paradigm = 'sl' LIMIT 3")]
        con.execute("UPDATE runs SET code = '0.0.1+000000000000' WHERE run_id = ?", ids[:1])
        con.execute("UPDATE runs SET code = NULL WHERE run_id IN (?, ?)", ids[1:])
    summary = train_runs(spec, copy, progress=False)
    assert summary.other_code == 3 and summary.done == 0  # kept and used, not trained again
    err = capsys.readouterr().err
    assert f"3 finished jobs (of {summary.total}) were trained by other code" in err
    assert "0.0.1+000000000000 (1)" in err and f"{NOT_RECORDED} (2)" in err
    status = study_status(copy)
    assert sum(status.other_code.values()) == 3
    assert f"3 finished jobs (of {summary.total}) were trained by other code" in status.format()
    assert not study_status(out).other_code
    html = write_report(copy, spec=spec).read_text()
    assert "mixed, runs by other code beside one another" in html
    assert "0.0.1+000000000000 (1)" in html
