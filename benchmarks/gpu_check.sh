#!/usr/bin/env bash
# What a GPU gives ecgscale, each figure against a baseline measured in the same run: MFU of the
# 5M/50M/200M rungs (12 x 4096 @ 400 Hz, bf16), evaluation on the GPU vs the CPU (records/s),
# packed vs one-run-per-GPU training of the 500K rung. Sized for 3-5 minutes on an H200 (an
# estimate from the step times measured there: not yet run on a GPU); a section that fails is
# reported and the others still run (exit status 1).
#
#   benchmarks/gpu_check.sh                 # on a machine with a CUDA GPU
#   benchmarks/gpu_check.sh --dry           # or GPU_CHECK_DRY=1: tiny sizes on the CPU, seconds
#   OUT=figures benchmarks/gpu_check.sh     # also figures/gpu_check.json and gpu_check.txt
#
# Python: $PYTHON, else .venv/bin/python, else python3 (with torch and this package's
# dependencies); the sources under src/ come first. Stops after $GPU_CHECK_TIMEOUT s (900).
# Options: --peak-tflops X (nominal bf16 peak, if the GPU is not in its table), --seconds S.
set -euo pipefail
cd "$(dirname "$0")/.."
if [[ -z "${PYTHON:-}" ]]; then
  if [[ -x .venv/bin/python ]]; then PYTHON=.venv/bin/python; else PYTHON=python3; fi
fi
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}"
exec timeout "${GPU_CHECK_TIMEOUT:-900}" "$PYTHON" benchmarks/gpu_check.py "$@"
