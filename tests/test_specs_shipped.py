"""The study specs shipped in configs/studies/ load, and the cluster ones plan to the grid they
promise: ``ecgscale study plan`` needs the spec only (no data, no store, no GPU)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from ecgscale.cli import main
from ecgscale.study.runs import expand
from ecgscale.study.specfile import load_spec

STUDIES = Path(__file__).resolve().parents[1] / "configs" / "studies"
SPECS = sorted(STUDIES.glob("*.yaml"))


def test_the_shipped_specs_are_there() -> None:
    assert {"demo.yaml", "code15.yaml", "paper.yaml"} <= {p.name for p in SPECS}


@pytest.mark.parametrize("path", SPECS, ids=[p.name for p in SPECS])
def test_every_shipped_spec_loads(path: Path) -> None:
    spec = load_spec(path)
    assert spec.name
    assert spec.models.sizes and spec.data_sizes


def plan_json(name: str) -> dict:
    result = CliRunner().invoke(
        main, ["study", "plan", str(STUDIES / name), "--format", "json"], catch_exceptions=False
    )
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def test_paper_plan_is_the_papers_grid() -> None:
    plan = plan_json("paper.yaml")
    totals, jobs = plan["totals"], plan["jobs"]
    runs = [j for j in jobs if j["kind"] == "run"]
    assert totals["runs"] == len(runs) >= 120
    assert {j["family"] for j in runs} == {"resnet", "transformer"}
    assert {j["paradigm"] for j in runs} == {"sl", "ssl"}
    # about 20K to about 200M actual parameters (ladder rungs land within 10% of their target)
    assert 18_000 <= totals["params_min"] <= 22_000
    assert 180e6 <= totals["params_max"] <= 220e6
    assert min(j["n_params"] for j in runs) == totals["params_min"]
    assert max(j["data_size"] for j in runs) >= 1_000_000  # CODE's 2.3M records, train split
    assert totals["device"] == "GPU" and totals["device_hours"] > 0
    trained = [j for j in jobs if j["kind"] != "reference"]
    assert all(j["flops"] > 0 and j["device_hours"] > 0 for j in trained)
    references = [j for j in jobs if j["kind"] == "reference"]  # each rung untrained, evaluated
    assert totals["references"] == len(references) == 2 * 7
    assert all(j["flops"] == 0 and j["eval_flops"] > 0 for j in references)
    spec = load_spec(STUDIES / "paper.yaml")
    assert (spec.data.fs, spec.data.n_samples) == (400, 4096)
    assert spec.executor.kind == "slurm" and spec.executor.gpus_per_run >= 1
    code15 = load_spec(STUDIES / "code15.yaml")  # the demo's SSL recipe, as code15.yaml has it
    assert spec.ssl.objective_kwargs() == code15.ssl.objective_kwargs()
    assert spec.ssl.objective_kwargs() == load_spec().ssl.objective_kwargs()
    assert spec.train.time_shift and code15.train.time_shift and load_spec().train.time_shift

    table = CliRunner().invoke(main, ["study", "plan", str(STUDIES / "paper.yaml")])
    assert table.exit_code == 0, table.output
    assert f"{totals['runs']} pre-training runs" in table.stdout
    assert "GPU-hours" in table.stdout and "training FLOPs" in table.stdout


def test_code15_plan_is_a_gpu_cluster_grid() -> None:
    plan = plan_json("code15.yaml")
    totals, jobs = plan["totals"], plan["jobs"]
    runs = [j for j in jobs if j["kind"] == "run"]
    assert totals["runs"] == len(runs) >= 100
    assert {(j["family"], j["paradigm"]) for j in runs} == {
        (f, p) for f in ("resnet", "transformer") for p in ("sl", "ssl")
    }
    assert 18_000 <= totals["params_min"] <= 22_000
    assert 18e6 <= totals["params_max"] <= 22e6
    assert max(j["data_size"] for j in runs) <= 280_000  # CODE-15%'s ~275K train records
    assert totals["device"] == "GPU" and totals["device_hours"] > 0
    spec = load_spec(STUDIES / "code15.yaml")
    assert spec.data.source == "store" and spec.data.id_site == "code15"
    assert {"ptbxl", "cinc2021"} <= set(spec.data.ood_sites)
    assert {s.kind for s in spec.data.ingest} == {"code15", "ptbxl", "cinc2021"}
    assert spec.tasks and spec.train.precision == "auto"  # bf16 on the GPUs it plans for
    # the demo's recipe rules: a per-rung learning-rate sweep (its runs counted in the plan)
    # and SSL by time spans hidden in all leads with normalised targets
    assert len(spec.train.lrs) == 3 and totals["runs"] == len(expand(spec))
    assert len(expand(spec)) == 140 + 2 * 2 * 2 * len(spec.models.sizes)
    assert spec.ssl.mask == "time" and spec.ssl.norm_target and spec.ssl.decoder_depth == 1
    ex = spec.executor
    assert ex.kind == "slurm" and ex.gpus_per_run == 1 and ex.slurm.backend == "slurm"
    # the time limit covers the longest job at the plan's rate
    assert ex.slurm.time_min * 60 >= totals["longest_job_hours"] * 3600
