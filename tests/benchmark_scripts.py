"""The scripts of ``benchmarks/`` as modules, for the tests of what they compute."""

import functools
import importlib.util
import sys
from pathlib import Path
from types import ModuleType

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


@functools.cache
def script(name: str) -> ModuleType:
    """``benchmarks/<name>.py`` as a module (registered first: its dataclasses look it up)."""
    spec = importlib.util.spec_from_file_location(f"benchmarks_{name}", BENCHMARKS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module
