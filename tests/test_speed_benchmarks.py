"""The speed benchmarks in ``benchmarks/``: each runs to its ratio at tiny sizes, and the training
benchmark's plain models are the project's models written another way (same weights, same loss).

Timings are not checked (speed is measured by running the benchmarks, never asserted in tests):
these tests keep the scripts working as the models change, e.g. when the ladder's Transformer
gained its convolutional stem and the plain Transformer of ``bench_train.py`` did not."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch
from benchmark_scripts import BENCHMARKS, script

from ecgscale.spec import TrainSpec


def run(name: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(BENCHMARKS / f"{name}.py"), *args],
        capture_output=True,
        text=True,
        timeout=300,
    )


@pytest.mark.parametrize("family", ["resnet", "transformer"])
@pytest.mark.parametrize(("input_len", "fs"), [(500, 100.0), (4096, 400.0)])
def test_plain_models_train_as_the_projects(family, input_len, fs):
    """Same initial weights, same batches, fp32: the same losses step after step (the demo's
    100 Hz shape, and CODE's 400 Hz one, where the Transformer's stem has stride 4)."""
    bench = script("bench_train")
    batches = bench.synthetic_batches(2, 8, input_len, fs, 0)
    result = bench.compare(
        family, 20_000, batches, steps=3, fs=fs, cfg=TrainSpec(precision="fp32"), seed=0
    )
    assert result.n_params == pytest.approx(20_000, rel=0.1)
    assert result.plain_losses == pytest.approx(result.project_losses, rel=2e-3)
    assert result.plain_losses[0] == pytest.approx(result.project_losses[0], rel=1e-5)


def test_plain_transformer_reads_the_projects_stem():
    bench = script("bench_train")
    shape = bench.shape_for("transformer", 200_000, input_len=4096, fs=400.0)
    assert shape["stem"] and shape["stem_stride"] > 1  # the path this test is about
    plain = bench.plain_model("transformer", shape, 6)
    objective = bench.create_objective(
        "sl", bench.build("transformer", 200_000, input_len=4096, fs=400.0), fs=400.0
    )
    plain.load_project(objective)
    x = torch.randn(2, 12, 4096)
    torch.testing.assert_close(plain.eval()(x), objective.eval().logits(x), rtol=1e-4, atol=1e-5)


def test_training_benchmark_prints_both_families():
    done = run(
        "bench_train",
        *("--families", "resnet", "transformer", "--rungs", "20000", "--steps", "3"),
        *("--input-len", "500", "--fs", "100", "--batch", "8", "--threads", "1"),
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert "CPU:" in done.stdout
    rows = [line for line in done.stdout.splitlines() if line.startswith(("resnet", "transf"))]
    assert len(rows) == 2 and all("x |" in row for row in rows)


@pytest.mark.parametrize(
    ("name", "args", "expect"),
    [
        ("bench_ssl_decoder", ["--batch", "4", "--length", "100", "--repeats", "4"], "ratio"),
        ("bench_ssl_target", ["--batch", "4", "--length", "100", "--repeats", "4"], "speed-up"),
    ],
)
def test_ssl_benchmarks_print_their_ratios(name, args, expect):
    done = run(name, *args)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.startswith("CPU:") and expect in done.stdout


@pytest.mark.parametrize(
    ("name", "args"),
    [
        ("bench_train", ["--steps", "2"]),
        ("bench_ssl_decoder", ["--repeats", "3"]),
        ("bench_ssl_target", ["--repeats", "2"]),
    ],
)
def test_too_few_steps_for_a_median_are_refused(name, args):
    done = run(name, *args)
    assert done.returncode == 2 and "must" in done.stderr.splitlines()[-1]


def test_laws_benchmark_prints_its_ratios():
    done = run(
        "bench_laws", "--boot", "4", "--big-boot", "8", "--naive-refits", "2", "--repeat", "1"
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.startswith("CPU:")
    ratios = [line for line in done.stdout.splitlines() if line.rstrip().endswith("×")]
    assert len(ratios) >= 4


def test_gpu_hours_estimates_the_grid():
    done = run("gpu_hours", "--input-len", "500", "--fs", "100")
    assert done.returncode == 0, done.stderr[-2000:]
    assert "grid total:" in done.stdout and "GPU-hours" in done.stdout


def test_data_benchmark_runs_its_four_stages(shared_data, tmp_path):
    done = run(
        "bench_data",
        *("--ptbxl", str(shared_data / "ptbxl-sample"), "--workdir", str(tmp_path)),
        *("--code15-records", "400", "--batches", "5", "--baseline-reads", "5"),
        *("--warmup-steps", "1", "--train-steps", "2", "--train-seconds", "1"),
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.startswith("CPU:") and "total wall time" in done.stdout
    stages = [line.split()[1] for line in done.stdout.splitlines() if line.startswith("== ")]
    assert stages == ["1a.", "1b.", "2.", "3.", "4."]
