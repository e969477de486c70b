"""``benchmarks/gpu_check.sh`` in its dry mode: the GPU check's code, at tiny sizes on the CPU."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "gpu_check.sh"


def run(tmp_path: Path, *args: str, **env: str) -> subprocess.CompletedProcess:
    environment = {**os.environ, "PYTHON": sys.executable, "OUT": str(tmp_path), **env}
    return subprocess.run(
        ["bash", str(SCRIPT), *args], env=environment, capture_output=True, text=True, timeout=600
    )


def test_dry_run_measures_every_section(tmp_path):
    done = run(tmp_path, GPU_CHECK_DRY="1")
    assert done.returncode == 0, done.stderr[-2000:]
    figures = json.loads((tmp_path / "gpu_check.json").read_text())
    assert figures["device"]["dry"] and figures["device"]["name"] == "CPU"
    assert "errors" not in figures and "gpu_check done in" in done.stdout
    assert figures["baseline"]["mm_tflops"] > 0
    mfu = figures["mfu"]
    assert {(r["family"], r["rung"]) for r in mfu} == {
        (f, n) for f in ("resnet", "transformer") for n in (20_000, 50_000, 100_000)
    }
    assert all(r["samples_per_s"] > 0 and r["of_mm"] > 0 for r in mfu)
    evaluation = figures["evaluation"]
    assert evaluation["cpu_fp32_records_per_s"] > 0 and evaluation["ratio_bf16_to_cpu"] > 0
    assert evaluation["bf16_vs_cpu_max_relative_error"] < 1e-6  # fp32 on both sides here
    packing = figures["packing"]
    assert len(packing["packed"]) == 2 and packing["alone"]["samples_per_s"] > 0
    assert packing["gain"] == pytest.approx(
        packing["packed_samples_per_s"] / packing["alone"]["samples_per_s"]
    )
    text = (tmp_path / "gpu_check.txt").read_text()
    assert text == done.stdout
    for line in ("device: CPU", "baseline:", "MFU:", "evaluation:", "packing:", "x alone"):
        assert line in text


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU")
def test_without_a_gpu_it_asks_for_the_dry_mode(tmp_path):
    done = run(tmp_path)
    assert done.returncode == 2 and not list(tmp_path.iterdir())
    assert done.stderr.strip() == "gpu_check: no CUDA GPU here; run it with --dry on a CPU"
