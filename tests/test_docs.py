"""README.md and docs/*.md: their cheap commands run, their links and names resolve, and the
README stays short.

A fenced block is run only when the line right above it is a marker (docs/README.md, "Commands
that are tested", says the same for writers of the docs):

    <!-- doc-test -->            run it: every command exits 0 (```bash: the whole block;
                                 ```console: the lines starting with "$ ")
    <!-- doc-test: output -->    ```console: the output equals the block's other lines ("..." is
                                 any number of lines)
    <!-- doc-test: exit=N -->    the last command exits with status N, the others with 0
    <!-- doc-test: synopsis -->  a usage block: each `ecgscale ...` line names a real command and
                                 only options it has

The blocks of a page run in order in one temporary folder (with the repository's configs/ linked
into it), so a block may use the files an earlier one wrote. A command that is only
`ecgscale ...` runs in this process through click's CliRunner (torch is imported once, which
keeps the whole file within seconds); any other block runs in `bash -e`, with `ecgscale` and
`python` on its PATH running this checkout's package.
"""

from __future__ import annotations

import ast
import importlib
import os
import re
import shlex
import stat
import subprocess
import sys
import traceback
from dataclasses import dataclass
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from ecgscale.cli import main

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
PAGES = [README, *sorted((ROOT / "docs").glob("*.md"))]
README_MAX_BYTES = 12 * 1024
FIRST_SCREEN = 40
"""Lines of the README a newcomer sees first: the two commands must be in them."""
"""The README's figure may be missing only while this comment is right above its link."""

MARKER = re.compile(r"^<!--\s*doc-test(?::\s*(?P<options>[^>]*?))?\s*-->$")
FENCE = re.compile(r"^(?P<indent> *)(?P<fence>`{3,}|~{3,})\s*(?P<info>[^`]*)$")
LINK = re.compile(r"!?\[(?P<text>[^\]]*)\]\((?P<target>[^)\s]+)(?:\s+\"[^\"]*\")?\)")
INLINE_CODE = re.compile(r"(?<!`)`(?P<code>[^`\n]+)`(?!`)")
REPO_PATH = re.compile(r"^(?:src|configs|benchmarks|tests|docs|\.ci)/[\w./-]+$")
DOTTED = re.compile(r"^ecgscale(?:\.[A-Za-z_]\w*)+")
SHELL_SYNTAX = set("|&;<>()$`*?!{}~")
TIMEOUT_S = 120


@dataclass
class Block:
    page: Path
    line: int  # of the opening fence, from 1
    lang: str
    text: str
    options: str | None  # the marker's options ("" for a bare doc-test); None: not marked
    end: int  # the line of the closing fence

    @property
    def where(self) -> str:
        return f"{self.page.relative_to(ROOT)}:{self.line}"

    @property
    def marked(self) -> bool:
        return self.options is not None

    @property
    def flags(self) -> set[str]:
        return set((self.options or "").split())

    @property
    def exit_status(self) -> int:
        statuses = [int(f.split("=", 1)[1]) for f in self.flags if f.startswith("exit=")]
        return statuses[0] if statuses else 0


def blocks(page: Path) -> list[Block]:
    """The fenced blocks of a Markdown page, with their markers."""
    lines = page.read_text(encoding="utf-8").splitlines()
    found, i = [], 0
    while i < len(lines):
        opening = FENCE.match(lines[i])
        if not opening:
            i += 1
            continue
        indent, fence = len(opening["indent"]), opening["fence"]
        above = lines[i - 1].strip() if i > 0 else ""
        marker = MARKER.match(above)
        body, j = [], i + 1
        while j < len(lines):
            closing = FENCE.match(lines[j])
            if closing and closing["fence"].startswith(fence) and not closing["info"].strip():
                break
            body.append(lines[j][indent:] if lines[j][:indent].strip() == "" else lines[j])
            j += 1
        lang = opening["info"].split()[0] if opening["info"].strip() else ""
        options = (marker["options"] or "") if marker else None
        found.append(Block(page, i + 1, lang, "\n".join(body), options, j + 1))
        i = j + 1
    return found


def prose(page: Path) -> list[tuple[int, str]]:
    """The lines of a page outside fenced blocks, numbered from 1."""
    fenced: set[int] = set()
    for block in blocks(page):
        fenced.update(range(block.line, block.end + 1))
    lines = page.read_text(encoding="utf-8").splitlines()
    return [(n, line) for n, line in enumerate(lines, 1) if n not in fenced]


def logical_lines(text: str) -> list[str]:
    """Lines with their backslash continuations joined; blank and comment lines dropped."""
    joined, current = [], ""
    for line in text.splitlines():
        if line.rstrip().endswith("\\"):
            current += line.rstrip()[:-1] + " "
            continue
        current += line
        if current.strip() and not current.lstrip().startswith("#"):
            joined.append(current.strip())
        current = ""
    return joined


def simple_ecgscale(line: str) -> list[str] | None:
    """The arguments of a line that is only an `ecgscale` command (no shell syntax outside
    quotes), else None."""
    try:
        lexer = shlex.shlex(line, posix=True, punctuation_chars="|&;<>()")
        lexer.whitespace_split = True
        lexer.commenters = "#"
        tokens = list(lexer)
    except ValueError:
        return None
    quoted = re.sub(r"'[^']*'|\"[^\"]*\"", "", line.split(" #", 1)[0])
    if not tokens or tokens[0] != "ecgscale" or SHELL_SYNTAX & set(quoted):
        return None
    return tokens[1:]


@dataclass
class Command:
    line: str
    expected: list[str]  # the output lines shown under it (console blocks)


def commands(block: Block) -> list[Command]:
    """The commands of a block, each with the output the block shows for it."""
    if block.lang != "console":
        return [Command(line, []) for line in logical_lines(block.text)]
    found: list[Command] = []
    pending = ""
    for line in block.text.splitlines():
        if pending or line.startswith("$ "):
            text = line[2:] if not pending else line
            if text.rstrip().endswith("\\"):
                pending += text.rstrip()[:-1] + " "
                continue
            found.append(Command((pending + text).strip(), []))
            pending = ""
        elif found:
            found[-1].expected.append(line)
    return found


def matches(expected: list[str], actual: list[str]) -> bool:
    """Whether ``actual`` lines equal ``expected``, where a line "..." stands for any lines."""
    expected = [e.rstrip() for e in expected]
    actual = [a.rstrip() for a in actual]
    while expected and not expected[-1]:
        expected.pop()
    while actual and not actual[-1]:
        actual.pop()

    def match(i: int, j: int) -> bool:
        if i == len(expected):
            return j == len(actual)
        if expected[i] == "...":
            return any(match(i + 1, k) for k in range(j, len(actual) + 1))
        return j < len(actual) and expected[i] == actual[j] and match(i + 1, j + 1)

    return match(0, 0)


def shims(folder: Path) -> dict[str, str]:
    """An environment whose `ecgscale` and `python` are this interpreter with this checkout."""
    folder.mkdir(exist_ok=True)
    for name, run in (("ecgscale", f'"{sys.executable}" -m ecgscale'), ("python", sys.executable)):
        path = folder / name
        path.write_text(f'#!/bin/sh\nexec {run} "$@"\n')
        path.chmod(path.stat().st_mode | stat.S_IXUSR)
    env = dict(os.environ)
    env["PATH"] = f"{folder}{os.pathsep}{env.get('PATH', '')}"
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT / "src"), env.get("PYTHONPATH")]))
    return env


def run_block(block: Block, workdir: Path, env: dict[str, str]) -> None:
    """Run one marked block in ``workdir``; fail with the block's place and the output."""
    cmds = commands(block)
    assert cmds, f"{block.where}: a doc-test block without commands"
    in_process = all(simple_ecgscale(c.line) is not None for c in cmds)
    if not in_process and block.lang != "console":
        result = subprocess.run(
            ["bash", "-e", "-c", block.text],
            cwd=workdir,
            env=env,
            capture_output=True,
            text=True,
            timeout=TIMEOUT_S,
        )
        assert result.returncode == block.exit_status, (
            f"{block.where}: exit status {result.returncode}, documented "
            f"{block.exit_status}\n{result.stdout}{result.stderr}"
        )
        return
    for n, command in enumerate(cmds):
        want = block.exit_status if n == len(cmds) - 1 else 0
        args = simple_ecgscale(command.line)
        if args is not None:
            result = CliRunner().invoke(main, args, catch_exceptions=True)
            status, output = result.exit_code, result.output
            if result.exception is not None and not isinstance(result.exception, SystemExit):
                output += "".join(traceback.format_exception(result.exception))
        else:
            done = subprocess.run(
                ["bash", "-c", command.line],
                cwd=workdir,
                env=env,
                capture_output=True,
                text=True,
                timeout=TIMEOUT_S,
            )
            status, output = done.returncode, done.stdout + done.stderr
        assert status == want, (
            f"{block.where}: `{command.line}` exited {status}, documented {want}\n{output}"
        )
        if "output" in block.flags:
            assert matches(command.expected, output.splitlines()), (
                f"{block.where}: `{command.line}` printed\n{output}\nthe page shows\n"
                + "\n".join(command.expected)
            )


RUNNABLE = {
    page.name if page != README else "README.md": page
    for page in PAGES
    if any(b.marked and "synopsis" not in b.flags for b in blocks(page))
}


@pytest.mark.parametrize("name", sorted(RUNNABLE))
def test_marked_commands_run(name, tmp_path, monkeypatch):
    """Every marked block of the page runs, in order, as documented (exit status, output)."""
    page = RUNNABLE[name]
    workdir = tmp_path / "work"
    workdir.mkdir()
    (workdir / "configs").symlink_to(ROOT / "configs", target_is_directory=True)
    env = shims(tmp_path / "bin")
    monkeypatch.chdir(workdir)
    for block in blocks(page):
        if block.marked and "synopsis" not in block.flags:
            assert block.lang in ("bash", "console"), f"{block.where}: cannot run {block.lang!r}"
            run_block(block, workdir, env)


def _command(tokens: list[str], where: str) -> tuple[click.Command, list[str]]:
    """The click command a synopsis line names, and the tokens after its name."""
    assert tokens[0] == "ecgscale", f"{where}: {tokens[0]!r} is not ecgscale"
    cmd: click.Command = main
    rest = tokens[1:]
    while isinstance(cmd, click.Group):
        if rest and rest[0] in cmd.commands:
            cmd, rest = cmd.commands[rest[0]], rest[1:]
        elif getattr(cmd, "default", None):
            cmd = cmd.commands[cmd.default]
        else:
            raise AssertionError(f"{where}: `{' '.join(tokens)}` names no command of {cmd.name}")
    return cmd, rest


def synopsis_lines() -> list[tuple[str, list[str]]]:
    found = []
    for page in PAGES:
        for block in blocks(page):
            if "synopsis" in block.flags:
                for line in logical_lines(block.text):
                    found.append((block.where, shlex.split(line, comments=True)))
    return found


def test_synopsis_names_real_commands_and_options():
    """Each line of a usage block names a command `ecgscale` has, with options it takes, and
    the options it requires."""
    lines = synopsis_lines()
    assert lines, "no <!-- doc-test: synopsis --> block found"
    for where, tokens in lines:
        cmd, rest = _command(tokens, where)
        known = {o for p in cmd.params for o in [*p.opts, *p.secondary_opts]}
        used = set()
        for token in rest:
            option = token.strip("[]").split("=", 1)[0]
            if option.startswith("-") and option not in ("-", "...") and not option[1:2].isdigit():
                assert option in known, f"{where}: `ecgscale {cmd.name}` has no option {option}"
                used.add(option)
        for param in cmd.params:
            if isinstance(param, click.Option) and param.required:
                assert used & set(param.opts), f"{where}: {cmd.name} requires {param.opts[0]}"


def test_readme_command_line_names_every_command():
    """The README's command-line block shows every top-level command."""
    shown = {
        tokens[1]
        for where, tokens in synopsis_lines()
        if where.startswith("README.md") and len(tokens) > 1
    }
    assert shown >= set(main.commands), f"not in the README: {set(main.commands) - shown}"


def test_readme_is_short_with_the_two_commands_first():
    text = README.read_text(encoding="utf-8")
    size = len(text.encode("utf-8"))
    assert size <= README_MAX_BYTES, f"README.md is {size} bytes, over {README_MAX_BYTES}"
    first = "\n".join(text.splitlines()[:FIRST_SCREEN])
    assert "make study" in first and "make test" in first


def slug(heading: str) -> str:
    """GitHub's anchor of a heading."""
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", heading.strip().lstrip("#").strip())
    text = re.sub(r"[^\w\- ]", "", text.replace("`", "").lower())
    return text.replace(" ", "-")


def anchors(page: Path) -> set[str]:
    seen: dict[str, int] = {}
    found = set()
    for _, line in prose(page):
        if re.match(r"^#{1,6} ", line):
            base = slug(line)
            count = seen.get(base, 0)
            seen[base] = count + 1
            found.add(base if count == 0 else f"{base}-{count}")
    return found


def links(page: Path) -> list[tuple[int, str]]:
    found = []
    for n, line in prose(page):
        for link in LINK.finditer(INLINE_CODE.sub("", line)):
            found.append((n, link["target"]))
    return found


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_relative_links_resolve(page):
    """Every relative link points to a file that exists, and its #anchor to a heading there."""
    for n, target in links(page):
        if re.match(r"^[a-z][a-z0-9+.-]*:", target):
            continue  # https:, mailto:
        path, _, anchor = target.partition("#")
        file = (page.parent / path).resolve() if path else page
        where = f"{page.relative_to(ROOT)}:{n}"
        assert file.exists(), f"{where}: {target} does not exist"
        if anchor and file.suffix == ".md":
            assert anchor in anchors(file), f"{where}: no heading #{anchor} in {path or page.name}"


def resolve(dotted: str) -> object:
    """The object a dotted name such as ecgscale.study.plan.plan_study names."""
    parts = dotted.split(".")
    for k in range(len(parts), 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:k]))
        except ModuleNotFoundError:
            continue
        for name in parts[k:]:
            obj = getattr(obj, name)
        return obj
    raise ModuleNotFoundError(dotted)


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_paths_and_names_in_backticks_exist(page):
    """A repository path in backticks exists; an `ecgscale.x.y` name resolves."""
    for n, line in prose(page):
        for code in INLINE_CODE.finditer(line):
            text = code["code"].strip()
            where = f"{page.relative_to(ROOT)}:{n}"
            if REPO_PATH.match(text):
                assert (ROOT / text).exists(), f"{where}: {text} does not exist"
            elif dotted := DOTTED.match(text):
                try:
                    resolve(dotted.group(0))
                except (ImportError, AttributeError) as err:
                    raise AssertionError(f"{where}: {dotted.group(0)}: {err}") from None


def _chain(node: ast.AST) -> str | None:
    parts = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if isinstance(node, ast.Name) and node.id == "ecgscale":
        return ".".join(["ecgscale", *reversed(parts)])
    return None


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_python_blocks_import(page):
    """The imports of every ```python block resolve, and so does every `ecgscale.<name>` it
    uses (the blocks are not run: they need trained runs or your data)."""
    for block in blocks(page):
        if block.lang != "python":
            continue
        tree = ast.parse(block.text, filename=block.where)
        for node in ast.walk(tree):
            try:
                if isinstance(node, ast.Import):
                    for alias in node.names:
                        importlib.import_module(alias.name)
                elif isinstance(node, ast.ImportFrom) and node.module:
                    module = importlib.import_module(node.module)
                    for alias in node.names:
                        if not hasattr(module, alias.name):
                            importlib.import_module(f"{node.module}.{alias.name}")
                elif isinstance(node, ast.Attribute) and (dotted := _chain(node)):
                    resolve(dotted)
            except (ImportError, AttributeError) as err:
                raise AssertionError(f"{block.where}: {err}") from None


def test_blocks_are_marked_somewhere():
    """The docs keep enough runnable blocks for this file to mean something."""
    marked = [b for page in PAGES for b in blocks(page) if b.marked]
    assert len([b for b in marked if "synopsis" not in b.flags]) >= 10
    assert any("output" in b.flags for b in marked)
    assert any(b.exit_status for b in marked)
