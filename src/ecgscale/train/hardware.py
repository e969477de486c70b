"""What the machine offers a training run: the CPU's model and features, native bf16."""

from __future__ import annotations

import os
import platform
from pathlib import Path

import torch

FEATURES = ("avx2", "fma", "avx512f", "avx512_bf16", "amx_bf16", "amx_tile")
"""CPU flags that decide which kernels torch and oneDNN run."""


def cpu_summary() -> str:
    """CPU model, core count and the vector/bf16 features that decide the kernels."""
    model, flags = platform.processor() or platform.machine(), set()
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        for line in cpuinfo.read_text().splitlines():
            key, _, value = line.partition(":")
            if key.strip() == "model name":
                model = value.strip()
            elif key.strip() == "flags":
                flags = set(value.split())
                break
    features = [f for f in FEATURES if f in flags] or ["(flags unknown)"]
    return f"{model}, {os.cpu_count()} CPUs; {' '.join(features)}"


def native_bf16() -> bool:
    """Whether oneDNN runs bf16 natively on this CPU (otherwise it emulates it, very slowly)."""
    return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())


def resolve_precision(precision: str, device: torch.device) -> str:
    """``"bf16"`` or ``"fp32"``: ``precision`` as given, or for ``"auto"`` bf16 where the
    device computes it natively (a CUDA GPU that supports it, a CPU with AVX-512 BF16 or AMX)
    and fp32 elsewhere (an AVX2 CPU would emulate bf16, far slower than fp32)."""
    if precision != "auto":
        return precision
    if device.type == "cuda":
        return "bf16" if torch.cuda.is_bf16_supported() else "fp32"
    return "bf16" if device.type == "cpu" and native_bf16() else "fp32"
