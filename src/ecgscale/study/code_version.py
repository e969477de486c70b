"""Which code made a study's numbers. A run's code is ecgscale's version and a digest of the
source that shapes its numbers (data, models, objectives, training, evaluation, the spec's
defaults and the run's own steps), recorded in each run's row (column ``code``).

A run id hashes the spec and the model's shape, not the code, so that a study resumes after an
upgrade. A study folder reused after a change to that code therefore keeps its finished runs as
they were: :func:`other_code` finds them, the study says so, and the report names the code of
every run it shows. Stages after the results (laws, report, command line) are not part of the
digest: a change there moves no run's numbers. Likewise a synthetic store made once per study
folder (or shared through ``data.store``) keeps its records when the generator changes: the
store records the generator that made them (``made_by.json``), and a study on records of
another generator says so.
"""

from __future__ import annotations

import functools
import sys
from collections import Counter
from collections.abc import Iterable, Mapping
from pathlib import Path

from tqdm.auto import tqdm

import ecgscale
from ecgscale.data.store import read_made_by
from ecgscale.data.synthetic import generator_code
from ecgscale.digest import files_digest

SHAPING = ("data", "evaluate", "models", "objectives", "spec", "train")
"""The package's folders whose code shapes a run's numbers (every module in them)."""

SHAPING_MODULES = ("study/runs.py", "study/eval_records.py")
"""Modules elsewhere that do: how a run is built, trained and evaluated, on which records."""

NOT_RECORDED = "not recorded"
"""How :func:`describe_codes` names runs recorded before runs carried their code (and
:func:`store_generator` a store made before stores recorded their generator)."""

SYNTHETIC_SOURCE = "synthetic"
"""The store source a study's synthetic records are ingested as."""


def shaping_files(root: Path) -> list[Path]:
    """The source files under package folder ``root`` that enter the digest."""
    files = [p for p in root.rglob("*.py") if p.relative_to(root).parts[0] in SHAPING]
    return files + [root / m for m in SHAPING_MODULES if (root / m).is_file()]


def code_digest(root: Path) -> str:
    """:func:`~ecgscale.digest.files_digest` of :func:`shaping_files`."""
    return files_digest(root, shaping_files(root))


@functools.cache
def training_code() -> str:
    """This process's training code: ``<ecgscale version>+<digest>``."""
    return f"{ecgscale.__version__}+{code_digest(Path(ecgscale.__file__).parent)}"


def _named(code: object) -> str:
    """A recorded code, or :data:`NOT_RECORDED` for a missing one (None, NaN, "")."""
    return code if isinstance(code, str) and code else NOT_RECORDED


def other_code(codes: Iterable[object], current: str | None = None) -> Counter:
    """How many of ``codes`` (the ``code`` of done runs) differ from ``current`` (default:
    :func:`training_code`), by code; a missing code counts as :data:`NOT_RECORDED`."""
    current = current or training_code()
    return Counter(c for c in map(_named, codes) if c != current)


def describe_codes(codes: Iterable[object]) -> str:
    """``codes`` as a report states them: one code, or each with its count when they differ."""
    named = Counter(map(_named, codes))
    if len(named) == 1:
        return next(iter(named))
    parts = ", ".join(f"{code} ({count})" for code, count in named.most_common())
    return f"mixed, runs by other code beside one another: {parts}"


def warn_other_code(codes: Mapping[str, str | None], ids: set[str]) -> int:
    """Warn on stderr about the finished jobs among ``ids`` (``codes``: job id → the code that
    trained it) that other code trained; their count."""
    others = other_code(code for job, code in codes.items() if job in ids)
    if others:
        tqdm.write(other_code_warning(others, len(ids)), file=sys.stderr)
    return sum(others.values())


def other_code_warning(others: Counter, total: int) -> str:
    """A warning that ``sum(others)`` finished jobs of the ``total`` came from other code."""
    n = sum(others.values())
    codes = ", ".join(f"{code} ({count})" for code, count in others.most_common())
    return (
        f"warning: {n} finished jobs (of {total}) were trained by other code than this "
        f"ecgscale's ({training_code()}): {codes}. They are kept and used as they are; to "
        "train them with this code, run the study into a new --out."
    )


def store_generator(store_root: Path) -> str:
    """The generator code that made the synthetic records of the store at ``store_root``
    (:data:`NOT_RECORDED` for a store older than the record)."""
    return read_made_by(store_root, SYNTHETIC_SOURCE).get("generator") or NOT_RECORDED


def warn_other_generator(store_root: Path) -> None:
    """Warn on stderr when the store's synthetic records were not made by this ecgscale's
    generator."""
    made = store_generator(store_root)
    if made != generator_code():
        tqdm.write(
            f"warning: {store_root}: its synthetic records were generated by another generator "
            f"({made}) than this ecgscale's ({generator_code()}); the study uses them as they "
            "are. For records of this generator, use a new --out (or another data.store).",
            file=sys.stderr,
        )


def provenance(codes: Iterable[object], store_root: Path | None) -> dict[str, str]:
    """What a report states of the code behind its numbers: the runs' :func:`describe_codes`
    and, for a synthetic store at ``store_root``, its :func:`store_generator`."""
    out = {"training code": describe_codes(codes)}
    if store_root is not None:
        out["synthetic records generated by"] = store_generator(store_root)
    return out
