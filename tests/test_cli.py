"""The command line: broken specs stop at once with one line and exit status 2."""

import subprocess
import sys

import pytest
import yaml
from click.testing import CliRunner

from ecgscale.cli import main

GOOD = {"name": "t", "models": {"sizes": [20000]}, "data_sizes": [100]}


@pytest.mark.parametrize(
    "tree, args, field",
    [
        ({**GOOD, "models": {"families": ["lstm"], "sizes": [20000]}}, [], "families"),
        ({**GOOD, "data_sizes": [-3]}, [], "data_sizes"),
        ({k: v for k, v in GOOD.items() if k != "name"}, [], "name"),
        (GOOD, ["--set", "train.nope=1"], "train.nope"),
    ],
)
def test_broken_spec_exits_2_with_one_line(tmp_path, tree, args, field):
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump(tree))
    result = CliRunner().invoke(main, ["study", str(path), "--out", str(tmp_path / "s"), *args])
    assert result.exit_code == 2
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and field in lines[0]
    assert (str(path) in lines[0]) == (
        not args
    )  # file errors name the file, overrides the override
    assert not (tmp_path / "s").exists()  # stopped before any work


def test_console_script_reports_bad_override():
    proc = subprocess.run(
        [sys.executable, "-m", "ecgscale", "study", "--set", "models.families=[cnn]"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2
    assert proc.stderr.strip().count("\n") == 0 and "models.families[0]" in proc.stderr


def test_train_lists_run_ids():
    result = CliRunner().invoke(main, ["train", "--list"])
    assert result.exit_code == 0
    lines = result.output.splitlines()
    scratch = [line for line in lines if line.startswith("scratch ")]
    untrained = [line for line in lines if "-untrained-" in line]
    assert len(lines) - len(scratch) - len(untrained) == 36
    assert len(untrained) == 6 and len(scratch) == 10  # LVH's curves only


def test_data_sources_and_datasets_are_listed():
    kinds = CliRunner().invoke(main, ["data", "sources"])
    assert kinds.exit_code == 0
    assert {line.split()[0] for line in kinds.output.splitlines()} >= {
        "code15",
        "codetest",
        "ptbxl",
        "cinc2020",
        "cinc2021",
        "wfdb",
        "synthetic",
    }
    sets = CliRunner().invoke(main, ["data", "download", "--list"])
    assert sets.exit_code == 0
    assert {line.split()[0] for line in sets.output.splitlines()} == {
        "ptbxl",
        "cinc2021",
        "code15",
        "code-test",
    }


def test_download_failure_is_one_line(tmp_path):
    result = CliRunner().invoke(
        main,
        [
            "data",
            "download",
            "ptbxl",
            "--to",
            str(tmp_path),
            "--mirror",
            "http://127.0.0.1:9",
            "--retries",
            "0",
        ],
    )
    assert result.exit_code == 1 and result.output.count("\n") <= 2
    assert "ecgscale: error: ptbxl" in result.output


@pytest.mark.parametrize(
    "command, options",
    [
        (["report"], []),
        (["fit"], []),
        (["results"], []),
        (["results"], ["--table", "roles"]),
        (["study", "status"], []),
    ],
)
def test_study_commands_on_a_folder_that_is_not_a_study(tmp_path, command, options):
    result = CliRunner().invoke(main, [*command, str(tmp_path), *options])
    assert result.exit_code == 1
    assert result.output.strip() == (
        f"ecgscale: error: {tmp_path}: not a study folder (no spec.yaml; "
        "`ecgscale study SPEC --out DIR` makes one)"
    )
    assert list(tmp_path.iterdir()) == []  # nothing written there (no results.sqlite)


def test_report_of_a_study_not_run_yet_says_so(tmp_path):
    (tmp_path / "spec.yaml").write_text(yaml.safe_dump(GOOD))
    result = CliRunner().invoke(main, ["report", str(tmp_path)])
    assert result.exit_code == 1
    assert result.output.strip() == (
        f"ecgscale: error: {tmp_path}: no results.sqlite (run the study first)"
    )
