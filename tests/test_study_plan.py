"""`ecgscale study plan`: a study's grid, FLOPs, device-hours and wall time, before it runs."""

import json
import random
import sqlite3
import time
from io import StringIO
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import yaml
from click.testing import CliRunner
from tiny import TINY_DEMO

from ecgscale.cli import main
from ecgscale.data.store import Store
from ecgscale.evaluate.roles import assign_roles
from ecgscale.models import build, measure
from ecgscale.study.plan import GPU_STEP_FLOOR_S, GPU_TFLOPS, lpt_makespan, pack_hours, plan_study
from ecgscale.study.runner import prepare_data
from ecgscale.study.runs import all_jobs, expand, expand_scratch, model_tag
from ecgscale.study.specfile import load_spec

STUDIES = Path(__file__).resolve().parents[1] / "configs" / "studies"
LADDER_200M = "models.sizes=[20000,200000,2000000,20000000,200000000]"


def _stats(family: str, target: int, spec):
    with torch.device("meta"):
        encoder = build(family, target, input_len=spec.data.n_samples, fs=spec.data.fs)
    return measure(encoder, spec.data.n_samples)


def _flops_per_sample(family: str, target: int, spec) -> int:
    return _stats(family, target, spec).flops_per_sample


def test_demo_plan_lists_the_grid_with_flops_by_hand():
    spec = load_spec()
    plan = plan_study(spec, tflops=1.0)
    jobs = plan.jobs
    runs, scratch = jobs[jobs["kind"] == "run"], jobs[jobs["kind"] == "scratch"]
    assert runs["job_id"].tolist() == [r.run_id for r in expand(spec)]
    assert scratch["job_id"].tolist() == [j.scratch_id for j in expand_scratch(spec)]
    assert len(runs) == 36 and len(scratch) == 10  # LVH's curves only (transfer.tasks)

    tag = model_tag(spec, "resnet", 200_000, spec.fingerprint("data", "train", "ssl"))
    run_id = "resnet-ssl-n200k-d500-s0-" + tag
    run = runs.set_index("job_id").loc[run_id]
    stats = _stats("resnet", 200_000, spec)
    by_hand = stats.flops_per_sample * 64 * 200  # batch 64, 200 steps
    assert run["flops"] == by_hand
    assert run["train_hours"] == pytest.approx(by_hand / 1e12 / 3600)
    # evaluation: one forward pass over each record of the run's roles (probe set, probe
    # validation, ID test, the two OOD sites, both tasks' sets), estimated without a store
    # (demo.yaml: both tasks' largest probed D_F is 200; the from-scratch ladder's larger
    # subsets train only from-scratch models)
    records = 2000 + 280 + 1000 + 2 * 800 + 2 * (200 + 150 + 300)
    assert run["eval_records"] == plan.eval_records.per_run == records
    assert not plan.eval_records.exact
    assert run["eval_flops"] == stats.forward_flops_per_sample * run["eval_records"]
    assert run["hours"] == pytest.approx(run["train_hours"] + run["eval_flops"] / 1e12 / 3600)
    assert run["n_params"] == 201_815  # the ladder's 200K ResNet at 100 Hz x 500

    # From-scratch models (transfer.sizes: the 20K rungs) train with spec.scratch_train
    # (150 steps), at most D_F records a step.
    assert set(scratch["target_params"]) == {20_000}
    small = scratch[scratch["family"] == "transformer"]
    per_sample = _flops_per_sample("transformer", 20_000, spec)
    for d_f, batch in ((50, 50), (200, 64), (800, 64)):  # the from-scratch ladder 50..800
        row = small[small["data_size"] == d_f].iloc[0]
        assert row["flops"] == per_sample * batch * 150

    totals = plan.totals
    assert totals["flops"] == pytest.approx(jobs["flops"].sum())
    # the largest model is the 200K Transformer with its 16-channel stem at 100 Hz
    assert totals["device"] == "CPU core" and totals["params_max"] == 206_260
    assert plan.wall_hours >= jobs["hours"].sum() / plan.slots - 1e-12


def test_plan_counts_a_learning_rate_sweep():
    """Each rung trains at every rate at the sweep's D: the plan lists and counts those runs."""
    one = plan_study(load_spec(None, ["train.families={}"]), tflops=1.0)  # one rate, 200 steps
    spec = load_spec(None, ["train.lr=[0.002, 0.006]", "train.families={}"])
    swept = plan_study(spec, tflops=1.0)
    runs = swept.jobs[swept.jobs["kind"] == "run"]
    assert len(runs) == 36 + 12  # 12 rungs, one more rate each at D = 2000
    at_sweep = runs[runs["job_id"].str.contains("-lr0.00")]
    assert len(at_sweep) == 24 and set(at_sweep["data_size"]) == {2000}
    assert runs["job_id"].str.contains("-lrbest-").sum() == 24  # D = 125, 500: the rung's pick
    per_run = one.jobs[one.jobs["kind"] == "run"].groupby(["family", "target_params"])["flops"]
    extra = runs.groupby(["family", "target_params"])["flops"].sum() - per_run.sum()
    assert (extra == 2 * per_run.first()).all()  # SL and SSL each add one run per rung
    assert swept.totals["flops"] > one.totals["flops"]


def test_plan_counts_steps_that_grow_with_the_data():
    spec = load_spec(
        None,
        ["train.epochs=16", "train.min_steps=50", "train.max_steps=600", "train.families={}"],
    )
    jobs = plan_study(spec, tflops=1.0).jobs
    runs, scratch = jobs[jobs["kind"] == "run"], jobs[jobs["kind"] == "scratch"]
    assert dict(zip(runs["data_size"], runs["max_steps"], strict=True)) == {
        125: 50,  # ceil(16 x 125 / 64) = 32, raised to min_steps
        500: 125,
        2000: 500,
    }
    assert np.allclose(
        jobs["flops"], jobs["flops_per_sample"] * jobs["batch_size"] * jobs["max_steps"]
    )
    by_d_f = dict(zip(scratch["data_size"], scratch["max_steps"], strict=True))
    assert by_d_f[400] == 100 and by_d_f[800] == 150  # transfer.train's max_steps caps D_F too


def test_200m_ladder_plans_in_seconds():
    spec = load_spec(None, [LADDER_200M])
    start = time.perf_counter()
    plan = plan_study(spec)
    elapsed = time.perf_counter() - start
    assert elapsed < 30, elapsed  # ~4 s on a 2-core CPU; nothing is allocated or computed
    text = plan.format()
    assert "parameters: 20K..200M" in text
    assert abs(plan.totals["params_max"] / 200e6 - 1) < 0.1
    assert len(plan.jobs) == len(all_jobs(spec))


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
    evaluated = plan.jobs.set_index("job_id").loc[[first.run_id, second.run_id], "eval_flops"]
    assert plan.throughput.flops_per_s == pytest.approx((6.4e10 + 3.2e10 + evaluated.sum()) / 20)
    assert "calibrated on the 2 finished run(s)" in plan.format()
    status = plan.jobs.set_index("job_id")["status"]
    assert status[first.run_id] == "done" and (status == "done").sum() == 2
    pending = plan.jobs.loc[plan.jobs["status"] != "done", "hours"]
    assert plan.wall_hours == pytest.approx(lpt_makespan(pending.tolist(), plan.slots))
    assert "2 done, 50 to run" in plan.format()  # 36 runs, 6 untrained references, 10 scratch
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
    assert content["totals"]["runs"] == 36 and content["totals"]["scratch"] == 10
    assert content["totals"]["references"] == 6  # the demo's untrained encoders
    assert len(content["jobs"]) == 52
    assert content["assumptions"]["throughput_source"] == "given"

    csv = runner.invoke(main, ["study", "plan", "--format", "csv", "--tflops", "2"])
    frame = pd.read_csv(StringIO(csv.output))
    assert len(frame) == 52 and set(frame["kind"]) == {"run", "reference", "scratch"}
    assert (frame.loc[frame["kind"] == "reference", ["max_steps", "flops"]] == 0).all().all()
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


def test_evaluation_records_are_counted_in_the_store(tmp_path):
    """With the study's store the records are counted: every role's rows, each once."""
    spec = load_spec(None, TINY_DEMO)
    prepare_data(spec, tmp_path, progress=False)
    plan = plan_study(spec, tmp_path, tflops=1.0)
    counted = plan.eval_records
    roles = assign_roles(spec, Store(tmp_path / "store").meta)
    every = [roles.probe_train, roles.probe_val, *(r for *_, r in roles.eval_sets())]
    every += [tr.probed_rows for tr in roles.tasks.values()]
    assert counted.exact and counted.per_run == len(np.unique(np.concatenate(every)))
    assert counted.roles["OOD sets"] == 2 * 60  # two synthetic sites of data.n_ood_records
    assert counted.scratch == {  # a task model's test set, and its validation set's thresholds
        name: len(tr.test) + (len(tr.val) if tr.task.kind != "regression" else 0)
        for name, tr in roles.tasks.items()
    }
    assert "counted in the store" in plan.format()
    assert not plan_study(spec, tmp_path / "elsewhere", tflops=1.0).eval_records.exact


def test_estimates_of_real_data_use_published_sizes():
    """code15.yaml without its store: PTB-XL and CinC 2021 at their published sizes, CinC's
    hospitals within CinC, PTB-XL's tasks within PTB-XL, the mortality task on its own."""
    spec = load_spec(STUDIES / "code15.yaml")
    records = plan_study(spec).eval_records
    assert records.roles == {
        "probe set": 10_000,
        "probe validation": 5_000,
        "ID test": 20_000,
        "OOD sets": 21_799 + 88_253,
        "tasks": 7_500 + 5_000 + 10_000,  # code15_death's largest probed D_F, val, test
    }
    lone = load_spec(STUDIES / "code15.yaml", ["data.ood_sites=[Georgia, CPSC]"])
    assert plan_study(lone).eval_records.roles["OOD sets"] == 10_344 + 6_877


def test_gpu_steps_have_a_floor_and_packing_shares_the_gpu():
    """Tiny models on GPUs take the measured least step time; four to a GPU they hold it for
    the longest of the four (their compute fits easily), so a quarter of the GPU-hours."""
    gpu = ["executor.kind=slurm", "executor.gpus_per_run=1", "train.families={}"]  # 200 steps
    gpu.append("eval.untrained=false")  # jobs that train only
    alone = plan_study(load_spec(None, gpu))
    packed = plan_study(load_spec(None, [*gpu, "executor.runs_per_gpu=4"]))
    jobs = alone.jobs
    assert (jobs["train_hours"] == jobs["max_steps"] * GPU_STEP_FLOOR_S / 3600).all()
    assert alone.totals["device_hours"] == pytest.approx(jobs["hours"].sum())
    assert not alone.packing and alone.totals["packs"] == len(jobs)
    t, p = packed.totals, packed.jobs
    assert (p["runs_per_gpu"] == 4).all() and t["packs"] == -(-len(p) // 4) == 12  # 46 jobs
    by_pack = p.groupby("pack")["hours"].max()  # each group holds its GPU for its longest job
    assert t["device_hours"] == pytest.approx(by_pack.sum())
    assert t["device_hours_unpacked"] == pytest.approx(alone.totals["device_hours"])
    assert 3.5 < t["device_hours_unpacked"] / t["device_hours"] <= 4
    assert t["wall_hours"] <= t["wall_hours_unpacked"] == pytest.approx(alone.wall_hours)
    assert "packing: runs_per_gpu 4: 46 jobs as 12 GPU allocations" in packed.format()
    assert pack_hours([1.0, 2.0], [0.5, 0.5]) == 2.0 and pack_hours([1.0, 1.0], [0.9, 0.9]) == 1.8


def test_paper_plan_shows_evaluation_and_packing():
    result = CliRunner().invoke(main, ["study", "plan", str(STUDIES / "paper.yaml")])
    assert result.exit_code == 0, result.output
    text = result.output
    assert "evaluation FLOPs: " in text and "190,052 records per run" in text
    assert "estimated from the spec" in text
    packing = next(line for line in text.splitlines() if "packing:" in line)
    assert "runs_per_gpu auto (4 runs to a GPU up to 2M parameters, 2 up to 20M" in packing
    assert "GPU-hours instead of" in packing
    args = ["study", "plan", str(STUDIES / "paper.yaml"), "--format", "json"]
    content = json.loads(CliRunner().invoke(main, args).output)
    t = content["totals"]
    assert t["device_hours"] < t["device_hours_unpacked"] and t["eval_device_hours"] > 0
    assert content["eval_records"]["per_run"]["ID test"] == 50_000
