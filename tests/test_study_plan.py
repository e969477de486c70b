"""`ecgscale study plan`: a study's grid, FLOPs, device-hours and wall time, before it runs."""

import json
import random
import sqlite3
import time
from io import StringIO
from pathlib import Path

import pandas as pd
import pytest
import torch
import yaml
from click.testing import CliRunner

from ecgscale.cli import main
from ecgscale.models import build, measure
from ecgscale.study.plan import GPU_TFLOPS, lpt_makespan, plan_study
from ecgscale.study.runs import expand, expand_scratch
from ecgscale.study.spec import load_spec

LADDER_200M = "models.sizes=[20000,200000,2000000,20000000,200000000]"


def _flops_per_sample(family: str, target: int, spec) -> int:
    with torch.device("meta"):
        encoder = build(family, target, input_len=spec.data.n_samples, fs=spec.data.fs)
    return measure(encoder, spec.data.n_samples).flops_per_sample


def test_demo_plan_lists_the_grid_with_flops_by_hand():
    spec = load_spec()
    plan = plan_study(spec, tflops=1.0)
    jobs = plan.jobs
    runs, scratch = jobs[jobs["kind"] == "run"], jobs[jobs["kind"] == "scratch"]
    assert runs["job_id"].tolist() == [r.run_id for r in expand(spec)]
    assert scratch["job_id"].tolist() == [j.scratch_id for j in expand_scratch(spec)]
    assert len(runs) == 36 and len(scratch) == 60

    run_id = "resnet-ssl-n200k-d500-s0-" + spec.fingerprint("data", "train", "ssl")
    run = runs.set_index("job_id").loc[run_id]
    by_hand = _flops_per_sample("resnet", 200_000, spec) * 64 * 200  # batch 64, 200 steps
    assert run["flops"] == by_hand
    assert run["hours"] == pytest.approx(by_hand / 1e12 / 3600)
    assert run["n_params"] == 201_815  # the ladder's 200K ResNet at 100 Hz x 1000

    # From-scratch models train with spec.scratch_train (150 steps), at most D_F records a step.
    small = scratch[(scratch["family"] == "transformer") & (scratch["target_params"] == 60_000)]
    per_sample = _flops_per_sample("transformer", 60_000, spec)
    for d_f, batch in ((50, 50), (200, 64), (800, 64)):  # the from-scratch ladder 50..800
        row = small[small["data_size"] == d_f].iloc[0]
        assert row["flops"] == per_sample * batch * 150

    totals = plan.totals
    assert totals["flops"] == pytest.approx(jobs["flops"].sum())
    assert totals["device"] == "CPU core" and totals["params_max"] == 201_815
    assert plan.wall_hours >= jobs["hours"].sum() / plan.slots - 1e-12


def test_200m_ladder_plans_in_seconds():
    spec = load_spec(None, [LADDER_200M])
    start = time.perf_counter()
    plan = plan_study(spec)
    elapsed = time.perf_counter() - start
    assert elapsed < 30, elapsed  # ~4 s on a 2-core CPU; nothing is allocated or computed
    text = plan.format()
    assert "parameters: 20K..200M" in text
    assert abs(plan.totals["params_max"] / 200e6 - 1) < 0.1
    assert len(plan.jobs) == len(expand(spec)) + len(expand_scratch(spec))


def test_lpt_wall_time_bounds():
    rng = random.Random(0)
    for _ in range(200):
        times = [rng.expovariate(1.0) for _ in range(rng.randint(1, 40))]
        k = rng.randint(1, 8)
        wall = lpt_makespan(times, k)
        assert wall >= sum(times) / k - 1e-9
        assert wall >= max(times) - 1e-9
        assert wall <= sum(times) / k + max(times) + 1e-9
    assert lpt_makespan([3, 3, 2, 2, 2], 2) == 7  # LPT's known miss (the optimum is 6)
    assert lpt_makespan([5, 1, 1], 10) == 5
    with pytest.raises(ValueError):
        lpt_makespan([1.0], 0)


@pytest.mark.parametrize(
    "overrides, slots, expected",
    [
        (["executor.kind=slurm", "executor.slurm.array_parallelism=7"], None, 7),
        (["executor.workers=3"], None, 3),
        (["executor.kind=ray"], None, 1),
        (["executor.kind=ray"], 16, 16),
    ],
)
def test_slots_follow_the_executor(overrides, slots, expected):
    plan = plan_study(load_spec(None, overrides), tflops=1.0, slots=slots)
    assert plan.slots == expected
    times = plan.jobs["hours"]
    assert plan.wall_hours >= max(times.sum() / expected, times.max()) - 1e-12


def test_gpu_default_and_device_hours():
    spec = load_spec(None, ["executor.gpus_per_run=2", "executor.kind=slurm"])
    plan = plan_study(spec)
    assert plan.throughput.source == "gpu-default"
    assert plan.throughput.flops_per_s == pytest.approx(2 * GPU_TFLOPS * 1e12)
    assert plan.jobs["device_hours"].tolist() == pytest.approx((2 * plan.jobs["hours"]).tolist())
    text = plan.format()
    assert "GPU-hours" in text and "A100" in text


def _results(study_dir, rows):
    """A results.sqlite holding the columns of ``runs`` (and ``scratch``) that a plan reads."""
    study_dir.mkdir(parents=True)
    with sqlite3.connect(study_dir / "results.sqlite") as con:
        con.execute(
            "CREATE TABLE runs (run_id TEXT PRIMARY KEY, status TEXT, flops_per_sample REAL, "
            "data_size INTEGER, steps INTEGER, wall_s REAL)"
        )
        con.execute("CREATE TABLE scratch (scratch_id TEXT PRIMARY KEY, status TEXT)")
        con.executemany("INSERT INTO runs VALUES (?, ?, ?, ?, ?, ?)", rows)


def test_cpu_rate_is_calibrated_on_finished_runs(tmp_path):
    spec = load_spec()
    first, second = expand(spec)[:2]
    _results(
        tmp_path / "s",
        [
            (first.run_id, "done", 1e7, 125, 100, 10.0),  # 6.4e10 FLOPs in 10 s
            (second.run_id, "done", 1e7, 32, 100, 10.0),  # D < batch: 3.2e10 in 10 s
            ("other", "failed", 1e7, 125, 50, 1.0),
        ],
    )
    plan = plan_study(spec, tmp_path / "s")
    assert plan.throughput.source == "calibrated"
    assert plan.throughput.flops_per_s == pytest.approx((6.4e10 + 3.2e10) / 20)
    assert "calibrated on the 2 finished run(s)" in plan.format()
    status = plan.jobs.set_index("job_id")["status"]
    assert status[first.run_id] == "done" and (status == "done").sum() == 2
    pending = plan.jobs.loc[plan.jobs["status"] != "done", "hours"]
    assert plan.wall_hours == pytest.approx(lpt_makespan(pending.tolist(), plan.slots))
    assert "2 done, 94 to run" in plan.format()
    # --tflops wins over the calibration
    assert plan_study(spec, tmp_path / "s", tflops=2.0).throughput.source == "given"


def test_cli_plan_table_json_csv(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    runner = CliRunner()
    table = runner.invoke(main, ["study", "plan"])
    assert table.exit_code == 0, table.output
    assert "totals:" in table.output and "wall time: ~" in table.output
    assumption = [line for line in table.output.splitlines() if "assumption:" in line]
    assert len(assumption) == 1 and "torch.mm" in assumption[0]
    assert "parameters: 20K..200K" in table.output

    result = runner.invoke(main, ["study", "plan", "--format", "json", "--tflops", "2"])
    assert result.exit_code == 0, result.output
    content = json.loads(result.output)
    assert content["totals"]["runs"] == 36 and content["totals"]["scratch"] == 60
    assert len(content["jobs"]) == 96
    assert content["assumptions"]["throughput_source"] == "given"

    csv = runner.invoke(main, ["study", "plan", "--format", "csv", "--tflops", "2"])
    frame = pd.read_csv(StringIO(csv.output))
    assert len(frame) == 96 and set(frame["kind"]) == {"run", "scratch"}
    assert list(tmp_path.iterdir()) == []  # a plan writes nothing


def test_cli_plan_bad_spec_is_one_line(tmp_path):
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump({"name": "t", "models": {"sizes": [10]}, "data_sizes": [100]}))
    result = CliRunner().invoke(main, ["study", "plan", str(path)])
    assert result.exit_code == 2
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and "models.sizes[0]" in lines[0]


def test_study_without_subcommand_runs(tmp_path, monkeypatch):
    """`ecgscale study [SPEC] ...` is `ecgscale study run [SPEC] ...`."""
    import ecgscale.study.runner as runner_module

    calls = []

    def fake_run_study(spec, study_dir, *, progress, retry_failed):
        calls.append((spec.name, study_dir, progress, retry_failed))
        return study_dir / "report.html"

    monkeypatch.setattr(runner_module, "run_study", fake_run_study)
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump({"name": "t", "models": {"sizes": [20000]}, "data_sizes": [9]}))
    out = tmp_path / "s"
    for args in (
        ["study", str(path), "--out", str(out), "--quiet", "--retry-failed"],
        ["study", "run", str(path), "--out", str(out), "--quiet", "--retry-failed"],
        ["study", "--quiet", str(path), "--out", str(out), "--retry-failed"],
    ):
        result = CliRunner().invoke(main, args)
        assert result.exit_code == 0, result.output
        assert calls.pop() == ("t", out, False, True)
        assert f"report: {out / 'report.html'}" in result.output
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(main, ["study"])  # the embedded demo
    assert result.exit_code == 0, result.output
    assert calls.pop()[:2] == ("demo", Path("studies/demo"))


def test_study_help_lists_subcommands():
    result = CliRunner().invoke(main, ["study", "--help"])
    assert result.exit_code == 0
    assert "run (default)" in result.output and "plan" in result.output
