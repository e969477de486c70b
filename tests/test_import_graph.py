"""The import graph of ``src/ecgscale`` runs one way: each stage imports only earlier stages.

The allowed order, earliest first (a stage is a folder of ``ecgscale``, or a module at its top
level; every module of a folder, its sub-folders included, belongs to the folder's stage):

0. foundation: ``ecgscale`` (the package: version and the lazy public API), ``configs`` (the
   embedded specs), ``spec`` (the spec types: pydantic models that check registered names only
   when given them), ``numformat`` (number formatting), ``interrupts`` (stopping worker pools),
   ``digest`` (digests of source files) -- they import nothing of ``ecgscale`` but themselves;
1. ``data``: sources, harmonising, the record store, synthetic records;
2. ``models``: encoder families, their ladders, exported encoders loaded back;
3. ``objectives``: what pre-training minimises, by name (a registry like the models');
4. ``train``: the pre-training loop, its schedule, checkpoints, the process-group plumbing;
5. ``evaluate``: roles of records, probes, task models, metrics, encoders run on recordings;
6. ``laws``: fitting laws and what they imply, a study's law stage, its transfer analysis;
7. ``report``: figures (their style helpers public), figures of fitted laws, the HTML report;
8. ``study``: reading spec files (names checked against the registries), the grid and its
   jobs, executors, workers, the results store, the stages from data to report, plan and
   status; one function trains a job, :func:`ecgscale.study.runs.execute`, for the CLI, the
   workers and ``torchrun`` (:mod:`ecgscale.study.torchrun`) alike;
9. ``card``, then 10. ``export``: a finished run out of its study, with its model card;
11. ``cli``, then 12. ``__main__``: the command line.

The tests fail on (a) an import of a later stage, or of another stage of the same rank
(imports inside functions and under ``TYPE_CHECKING`` count), (b) a circle of imports whose
modules lie in two or more folders (there is none within a folder either), (c) an import of
another stage's private (``_name``) member, and (d) a module over 600 lines. A new folder or
top-level module fails (a) until it is placed in :data:`ORDER`. The last test builds a small
package that breaks (a) to (c) and checks that each is caught.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1] / "src" / "ecgscale"

ORDER: list[tuple[str, ...]] = [
    ("ecgscale", "configs", "spec", "numformat", "interrupts", "digest"),
    ("data",),
    ("models",),
    ("objectives",),
    ("train",),
    ("evaluate",),
    ("laws",),
    ("report",),
    ("study",),
    ("card",),
    ("export",),
    ("cli",),
    ("__main__",),
]
"""Stages, earliest first; the stages of one tuple may not import each other."""

MAX_LINES = 600


def modules(root: Path = ROOT) -> dict[str, Path]:
    """Every module of the package at ``root`` by dotted name (a package by its
    ``__init__.py``)."""
    out = {}
    for path in sorted(root.rglob("*.py")):
        parts = path.relative_to(root.parent).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = path
    return out


def imports(name: str, path: Path, known: dict[str, Path]) -> list[tuple[str, int, str]]:
    """``(module, line, member)`` for each ``ecgscale`` module that ``name`` imports (anywhere
    in the file); ``member`` is the name taken from it by ``from … import`` (else "")."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found += [(a.name, node.lineno, "") for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")
                anchor = anchor[: len(anchor) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            for alias in node.names:
                sub = f"{base}.{alias.name}"
                found.append(
                    (sub, node.lineno, "") if sub in known else (base, node.lineno, alias.name)
                )
    return [(m, line, member) for m, line, member in found if m in known and m != name]


def stage(name: str) -> str:
    parts = name.split(".")
    return parts[1] if len(parts) > 1 else parts[0]


def rank(stage_name: str) -> int | None:
    return next((i for i, group in enumerate(ORDER) if stage_name in group), None)


def graph(root: Path = ROOT) -> tuple[dict[str, Path], dict[str, list[tuple[str, int, str]]]]:
    known = modules(root)
    return known, {name: imports(name, path, known) for name, path in known.items()}


def where(known: dict[str, Path], name: str, line: int) -> str:
    """``ecgscale/folder/module.py:line``."""
    return f"{known[name].relative_to(known['ecgscale'].parents[1]).as_posix()}:{line}"


def against_flow(known: dict[str, Path], edges: dict) -> list[str]:
    """Each import of a later stage (or of a stage not in :data:`ORDER`), one line each."""
    wrong = []
    for name, targets in edges.items():
        for target, line, _ in targets:
            a, b = stage(name), stage(target)
            if a != b and (rank(a) is None or rank(b) is None or rank(b) >= rank(a)):
                wrong.append(f"{where(known, name, line)}: {a} imports {target} ({b})")
    return sorted(set(wrong))


def circles(known: dict[str, Path], edges: dict) -> list[str]:
    """Each circle of imports whose modules lie in two or more folders, one line each."""
    simple = {name: {t for t, _, _ in targets} for name, targets in edges.items()}
    out = []
    for members in strongly_connected(simple):
        folders = {known[m].parent for m in members}
        if len(folders) > 1:
            out.append(f"{len(folders)} folders: {', '.join(members)}")
    return out


def private_names(known: dict[str, Path], edges: dict) -> list[str]:
    """Each private (``_name``) member imported from another stage, one line each."""
    return sorted(
        f"{where(known, name, line)}: {member} from {target}"
        for name, targets in edges.items()
        for target, line, member in targets
        if member.startswith("_") and not member.endswith("__") and stage(target) != stage(name)
    )


def strongly_connected(edges: dict[str, set[str]]) -> list[list[str]]:
    """The components of ``edges`` with more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    out = []
    for root in sorted(edges):
        if root in index:
            continue
        work = [(root, iter(sorted(edges[root])))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is None:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[node])
                if low[node] == index[node]:
                    members = []
                    while True:
                        member = stack.pop()
                        on_stack.discard(member)
                        members.append(member)
                        if member == node:
                            break
                    if len(members) > 1:
                        out.append(sorted(members))
            elif child not in index:
                index[child] = low[child] = len(index)
                stack.append(child)
                on_stack.add(child)
                work.append((child, iter(sorted(edges[child]))))
            elif child in on_stack:
                low[node] = min(low[node], index[child])
    return out


def test_every_stage_is_placed():
    known = modules()
    unplaced = sorted({stage(name) for name in known if rank(stage(name)) is None})
    assert not unplaced, f"place these in ORDER (tests/test_import_graph.py): {unplaced}"


def test_no_import_of_a_later_stage():
    wrong = against_flow(*graph())
    assert not wrong, "imports against the flow:\n" + "\n".join(wrong)


def test_no_circle_across_folders():
    found = circles(*graph())
    assert not found, "circles of imports across folders:\n" + "\n".join(found)


def test_no_private_name_of_another_stage():
    wrong = private_names(*graph())
    assert not wrong, "private names imported from another stage:\n" + "\n".join(wrong)


def test_modules_are_short():
    long = {
        str(path.relative_to(ROOT.parent)): n
        for path in modules().values()
        if (n := len(path.read_text().splitlines())) > MAX_LINES
    }
    assert not long, f"modules over {MAX_LINES} lines: {long}"


def test_the_checks_catch_bad_imports(tmp_path):
    """Each check fails on a package made to break it: a relative import inside a function
    of an earlier stage, which closes a circle, and a private name."""
    pkg = tmp_path / "ecgscale"
    for folder in (pkg, pkg / "data", pkg / "study"):
        folder.mkdir(exist_ok=True)
        (folder / "__init__.py").write_text("")
    (pkg / "data" / "store.py").write_text("def f():\n    from ..study import runs\n")
    (pkg / "study" / "runs.py").write_text("from ecgscale.data.store import _g, f\n")
    known, edges = graph(pkg)
    assert edges["ecgscale.data.store"] == [("ecgscale.study.runs", 2, "")]
    assert against_flow(known, edges) == [
        "ecgscale/data/store.py:2: data imports ecgscale.study.runs (study)"
    ]
    assert circles(known, edges) == ["2 folders: ecgscale.data.store, ecgscale.study.runs"]
    assert private_names(known, edges) == ["ecgscale/study/runs.py:1: _g from ecgscale.data.store"]
