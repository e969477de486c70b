"""Which code trained a run: ecgscale's version and a digest of the source that shapes a run's
numbers (data, models, objectives, training, evaluation, the spec's defaults and the run's own
steps), recorded in each run's row (column ``code``).

A run id hashes the spec and the model's shape, not the code, so that a study resumes after an
upgrade. A study folder reused after a change to that code therefore keeps its finished runs as
they were: :func:`other_code` finds them, the study says so, and the report names the code of
every run it shows. Stages after the results (laws, report, command line) are not part of the
digest: a change there moves no run's numbers.
"""

from __future__ import annotations

import functools
import hashlib
from collections import Counter
from collections.abc import Iterable
from pathlib import Path

import ecgscale

SHAPING = ("data", "evaluate", "models", "objectives", "spec", "train")
"""The package's folders whose code shapes a run's numbers (every module in them)."""

SHAPING_MODULES = ("study/runs.py", "study/eval_records.py")
"""Modules elsewhere that do: how a run is built, trained and evaluated, on which records."""

NOT_RECORDED = "not recorded"
"""How :func:`describe_codes` names runs recorded before runs carried their code."""


def shaping_files(root: Path) -> list[Path]:
    """The source files under package folder ``root`` that enter the digest, in a fixed order."""
    files = [p for p in root.rglob("*.py") if p.relative_to(root).parts[0] in SHAPING]
    files += [root / m for m in SHAPING_MODULES if (root / m).is_file()]
    return sorted(files, key=lambda p: p.relative_to(root).as_posix())


def code_digest(root: Path) -> str:
    """SHA-256 (12 hex digits) of :func:`shaping_files`' paths and contents."""
    h = hashlib.sha256()
    for path in shaping_files(root):
        h.update(path.relative_to(root).as_posix().encode() + b"\0")
        h.update(path.read_bytes() + b"\0")
    return h.hexdigest()[:12]


@functools.cache
def training_code() -> str:
    """This process's training code: ``<ecgscale version>+<digest>``."""
    return f"{ecgscale.__version__}+{code_digest(Path(ecgscale.__file__).parent)}"


def other_code(codes: Iterable[object], current: str | None = None) -> Counter:
    """How many of ``codes`` (the ``code`` of done runs) differ from ``current`` (default:
    :func:`training_code`), by code; a missing code counts as :data:`NOT_RECORDED`."""
    current = current or training_code()
    named = (c if isinstance(c, str) and c else NOT_RECORDED for c in codes)
    return Counter(c for c in named if c != current)


def describe_codes(codes: Iterable[object]) -> str:
    """``codes`` as a report states them: one code, or each with its count when they differ."""
    named = Counter(c if isinstance(c, str) and c else NOT_RECORDED for c in codes)
    if len(named) == 1:
        return next(iter(named))
    parts = ", ".join(f"{code} ({count})" for code, count in named.most_common())
    return f"mixed, runs by other code beside one another: {parts}"


def other_code_warning(what: str, others: Counter, total: int) -> str:
    """A warning that ``sum(others)`` finished ``what`` of the ``total`` came from other code."""
    n = sum(others.values())
    codes = ", ".join(f"{code} ({count})" for code, count in others.most_common())
    return (
        f"warning: {n} finished {what} (of {total}) were trained by other code than this "
        f"ecgscale's ({training_code()}): {codes}. They are kept and used as they are; to "
        "train them with this code, run the study into a new --out."
    )
