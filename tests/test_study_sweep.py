"""A learning-rate sweep end to end: each rung trains at every rate at ``lr_sweep_d``, its other
data sizes train at the rate with the lowest validation loss there, the laws see one run per
grid point, and the report shows the sweep."""

import sqlite3

import pandas as pd
from click.testing import CliRunner
from tiny import TINY_DATA, TINY_EVAL, TINY_TRAIN, overrides

from ecgscale.cli import main
from ecgscale.study.runner import grid_runs, run_study, sweep_runs
from ecgscale.study.runs import UNTRAINED, expand
from ecgscale.study.specfile import load_spec

RATES = [0.0005, 0.02]


def test_a_sweep_picks_each_rungs_rate_by_validation_loss(tmp_path):
    spec = load_spec(
        None,
        [
            *overrides("data", TINY_DATA),
            *overrides("train", TINY_TRAIN),
            *overrides("eval", TINY_EVAL),
            "models.families=[resnet]",
            "models.sizes=[20000, 40000]",
            "paradigms=[sl]",
            "data_sizes=[60, 120]",
            f"train.lr={RATES}",
            "train.families={}",
            "tasks=[]",
            "transfer.scratch=false",
            "laws.n_boot=0",
            "executor.workers=1",
        ],
    )
    assert spec.lr_sweep_d == 120  # the largest D by default
    report = run_study(spec, tmp_path, progress=False)

    with sqlite3.connect(tmp_path / "results.sqlite") as db:
        runs = pd.read_sql("SELECT * FROM runs", db)
    references = runs[runs["paradigm"] == UNTRAINED]  # the demo's untrained encoders: no rate
    runs = runs[runs["paradigm"] != UNTRAINED]
    assert len(references) == 2 and references["lr"].isna().all()
    assert len(runs) == len(expand(spec)) == 2 * (len(RATES) + 1)
    assert (runs["status"] == "done").all() and (references["status"] == "done").all()
    for size, rung in runs.groupby("target_params"):
        swept = rung[rung["data_size"] == 120].set_index("lr")["pretrain_loss"]
        assert sorted(swept.index) == RATES
        (other,) = rung.loc[rung["data_size"] == 60, "lr"]
        assert other == swept.idxmin(), size  # trained at its sweep's best rate

    grid = grid_runs(spec, runs)
    assert len(grid) == 4 and not grid.duplicated(["target_params", "data_size"]).any()
    at_sweep = grid[grid["data_size"] == 120].set_index("target_params")["lr"]
    at_other = grid[grid["data_size"] == 60].set_index("target_params")["lr"]
    assert at_sweep.equals(at_other)  # the sweep run the laws use is the chosen rate's
    sweep = sweep_runs(spec, runs)
    assert len(sweep) == 4 and sweep["chosen"].sum() == 2

    shown = CliRunner().invoke(main, ["results", str(tmp_path), "--table", "sweep"])
    assert shown.exit_code == 0, shown.output
    assert len(shown.output.splitlines()) == 1 + 4 and "chosen" in shown.output

    html = report.read_text()
    assert "Learning-rate sweep" in html and "Chosen learning rates" in html
    assert "The sweep took 4 runs, 2 of them beyond the grid" in html
