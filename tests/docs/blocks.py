"""The fenced code blocks of the docs, and which test proves each one.

Every test under ``tests/docs/`` that proves a block *claims* it at module level, in one line::

    MINIMAL = claim("README.md", "python", 'subject="42"')             # the one block containing that text
    GUIDE_APP = claim_example("docs/guide.md", "examples/existing_app.py")  # the block equal to the file

and then uses ``MINIMAL.text`` (or :func:`run_python`) in its tests. ``tests/docs/test_doc_blocks.py``
imports every test module here and fails when a block of a checked document is claimed by no test, or
when a claim matches no block or more than one; so a doc edit cannot add an unproven example, and a
claimed block cannot silently disappear.
"""

from __future__ import annotations

import contextlib
import importlib
import json
import re
import shlex
import shutil
import subprocess
import sys
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass
from types import ModuleType
from typing import Any

import fakeredis
import pytest
from packaging.requirements import Requirement

import starlette_refresh
from harness.processes import REPO_ROOT
from starlette_refresh import TokenAuth
from starlette_refresh.clock import Clock

#: Documents whose blocks are tested elsewhere: static/README.md by static/tests/examples.test.mjs.
ELSEWHERE = frozenset({"static/README.md"})


def documents() -> list[str]:
    """Every Markdown document at the repository root and in docs/, relative to the root."""
    found = [*sorted(REPO_ROOT.glob("*.md")), *sorted((REPO_ROOT / "docs").glob("*.md"))]
    return [
        p.relative_to(REPO_ROOT).as_posix()
        for p in found
        if p.relative_to(REPO_ROOT).as_posix() not in ELSEWHERE
    ]


@dataclass(frozen=True)
class Block:
    """One fenced block: its document, position, language (first word of the info string) and text."""

    doc: str
    index: int
    line: int
    lang: str
    text: str

    def __str__(self) -> str:
        first = self.text.strip().splitlines()[0] if self.text.strip() else ""
        return f"{self.doc}:{self.line} ```{self.lang} block #{self.index} ({first[:60]!r})"


_OPENING = re.compile(r"^(?P<indent>[ \t]*)(?P<fence>`{3,}|~{3,})(?P<info>[^`\n]*)$")


def fenced_blocks(doc: str) -> list[Block]:
    """The fenced blocks of ``doc`` (relative to the repo root), in order.

    Fences may be indented (inside list items); the content is dedented by the opening fence's
    indentation. An unclosed fence is an error, so a broken document cannot hide its blocks.
    """
    return parse_blocks(doc, (REPO_ROOT / doc).read_text(encoding="utf-8"))


def parse_blocks(doc: str, markdown: str) -> list[Block]:
    """The fenced blocks of a Markdown text; ``doc`` names it in the blocks and in errors."""
    lines = markdown.splitlines()
    blocks: list[Block] = []
    number = 0
    while number < len(lines):
        opening = _OPENING.match(lines[number])
        if opening is None:
            number += 1
            continue
        indent, fence = len(opening["indent"]), opening["fence"]
        closing = re.compile(rf"^[ \t]*{re.escape(fence[0])}{{{len(fence)},}}[ \t]*$")
        end = next((i for i in range(number + 1, len(lines)) if closing.match(lines[i])), None)
        if end is None:
            raise AssertionError(f"{doc}:{number + 1}: the fence {fence} is never closed")
        body = [_dedent(line, indent) for line in lines[number + 1 : end]]
        info = opening["info"].strip()
        blocks.append(
            Block(doc, len(blocks), number + 1, info.split()[0] if info else "", "\n".join(body) + "\n")
        )
        number = end + 1
    return blocks


def _dedent(line: str, indent: int) -> str:
    strip = len(line) - len(line.lstrip(" \t"))
    return line[min(indent, strip) :]


@dataclass(frozen=True)
class Claim:
    """A test's claim on one block: the block of ``doc`` in ``lang`` containing ``contains``, or equal
    to the file ``example`` (verbatim, as a reader would copy it)."""

    doc: str
    lang: str
    contains: str | None
    example: str | None
    by: str

    def matches(self, block: Block) -> bool:
        if block.doc != self.doc or block.lang != self.lang:
            return False
        if self.example is not None:
            return block.text == (REPO_ROOT / self.example).read_text(encoding="utf-8")
        return self.contains is not None and self.contains in block.text

    def __str__(self) -> str:
        what = f"equal to {self.example}" if self.example else f"containing {self.contains!r}"
        return f"{self.by}: the ```{self.lang} block of {self.doc} {what}"

    @property
    def block(self) -> Block:
        """The one block this claim names; fails when there is none or more than one."""
        found = [b for b in fenced_blocks(self.doc) if self.matches(b)]
        assert len(found) == 1, (
            f"{self} matches {len(found)} blocks, not exactly one: {[str(b) for b in found]}"
        )
        return found[0]

    @property
    def text(self) -> str:
        return self.block.text


#: Every claim made so far (test modules make theirs at import time).
CLAIMS: list[Claim] = []


def _caller() -> str:
    """The module that called claim() or claim_example()."""
    return str(sys._getframe(2).f_globals.get("__name__", "?"))


def claim(doc: str, lang: str, contains: str) -> Claim:
    """Claims the one ``lang`` block of ``doc`` that contains ``contains``."""
    made = Claim(doc, lang, contains, None, _caller())
    CLAIMS.append(made)
    return made


def claim_example(doc: str, example: str, lang: str = "python") -> Claim:
    """Claims the block of ``doc`` that is the file ``example`` (a path under the repo) verbatim."""
    made = Claim(doc, lang, None, example, _caller())
    CLAIMS.append(made)
    return made


def run_python(claimed: Claim, namespace: dict[str, Any] | None = None) -> dict[str, Any]:
    """Executes a claimed Python block as written, in ``namespace`` (which it returns).

    Line numbers in tracebacks are the document's, so a failure points at the doc.
    """
    block = claimed.block
    namespace = {"__name__": f"docs_block_{block.index}"} if namespace is None else namespace
    source = "\n" * block.line + block.text  # the first line of code is the line after the fence
    exec(compile(source, str(REPO_ROOT / block.doc), "exec"), namespace)  # noqa: S102 - our own docs
    return namespace


def replace_ellipsis(routes: list[Any], *replacement: Any) -> None:
    """Puts ``replacement`` where a block wrote ``...`` in a routes list ("your own routes here")."""
    spots = [i for i, route in enumerate(routes) if route is Ellipsis]
    assert len(spots) == 1, f"expected one ... in the routes, found {len(spots)}"
    routes[spots[0] : spots[0] + 1] = replacement


def shell_lines(text: str) -> list[str]:
    """The command lines of a sh block: comments and blank lines dropped, placeholders kept."""
    lines = []
    for line in text.splitlines():
        command = re.sub(r"(^|\s)#.*$", "", line).strip()
        if command:
            lines.append(command)
    return lines


def python_blocks(markdown: str) -> list[str]:
    """The texts of the ```python blocks in a Markdown string."""
    return re.findall(r"```python\n(.*?)```", markdown, flags=re.DOTALL)


def pip_install(line: str) -> tuple[str, set[str]]:
    """``pip install <this project>[extras]``: the project name and extras, checked against pyproject.toml."""
    words = shlex.split(line)
    assert words[:2] == ["pip", "install"], f"not a pip install: {line!r}"
    assert len(words) == 3, f"not one requirement: {line!r}"
    requirement = Requirement(words[2])
    project = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]
    assert requirement.name == project["name"], f"{line!r} installs {requirement.name}, not {project['name']}"
    unknown = set(requirement.extras) - set(project["optional-dependencies"])
    assert not unknown, f"{line!r} names extras pyproject.toml does not define: {unknown}"
    return requirement.name, set(requirement.extras)


def node_value(expression: str) -> Any:
    """The JSON value of a JavaScript expression in which ``manager`` is static/refresh-manager.js."""
    node = shutil.which("node")
    if node is None:  # pragma: no cover - tests/run insists on node for the JS tests
        pytest.skip("node is not installed")
    manager = (REPO_ROOT / "static" / "refresh-manager.js").as_uri()
    script = (
        f"const manager = await import({json.dumps(manager)});\nconsole.log(JSON.stringify({expression}));"
    )
    done = subprocess.run(
        [node, "--input-type=module", "-e", script], capture_output=True, text=True, timeout=30, check=False
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def doc_text(doc: str) -> str:
    return (REPO_ROOT / doc).read_text(encoding="utf-8")


def search(pattern: str, text: str, flags: int = 0) -> re.Match[str]:
    """``re.search`` that fails the test, naming the pattern, when nothing matches."""
    found = re.search(pattern, text, flags)
    assert found is not None, f"no match for {pattern!r}"
    return found


def markdown_table(doc: str, heading: str, first_column: str) -> list[list[str]]:
    """The rows (cells stripped) of the first table under ``heading`` whose first header is
    ``first_column``."""
    text = doc_text(doc)
    start = text.index(heading)
    lines = text[start:].splitlines()
    header = next(
        i for i, line in enumerate(lines) if re.match(rf"^\|\s*{re.escape(first_column)}\s*\|", line)
    )
    rows = []
    for line in lines[header + 2 :]:
        if not line.startswith("|"):
            break
        rows.append(_cells(line))
    return rows


def _cells(row: str) -> list[str]:
    """A table row's cells; a ``|`` inside a `code` span or escaped as ``\\|`` does not split."""
    cells, current, in_code, previous = [], "", False, ""
    for char in row.strip().removeprefix("|").removesuffix("|"):
        if char == "`":
            in_code = not in_code
        if char == "|" and not in_code and previous != "\\":
            cells.append(current.strip())
            current = ""
        else:
            current += char
        previous = char
    cells.append(current.strip())
    return cells


def backticked(cell: str) -> list[str]:
    """The `code` spans of a table cell."""
    return re.findall(r"`([^`]+)`", cell)


@contextlib.contextmanager
def example_module(
    name: str, monkeypatch: pytest.MonkeyPatch, secret: str, clock: Clock | None = None
) -> Iterator[ModuleType]:
    """``examples/<name>.py`` imported afresh with ``JWT_SECRET`` and ``REDIS_URL`` set, as a reader
    would run it, with its store swapped for fakeredis (the URL is never connected).

    With a ``clock``, the ``TokenAuth`` the example imports from ``starlette_refresh`` runs on it
    unless the example passes its own (so a test can move token lifetimes without sleeping)."""
    monkeypatch.setenv("JWT_SECRET", secret)
    monkeypatch.setenv("REDIS_URL", "redis://127.0.0.1:1/0")
    if clock is not None:
        monkeypatch.setattr(starlette_refresh, "TokenAuth", _on_clock(clock))
    qualified = f"examples.{name}"
    sys.modules.pop(qualified, None)
    module = importlib.import_module(qualified)
    module.auth.store._client = fakeredis.aioredis.FakeRedis(server=fakeredis.FakeServer())
    try:
        yield module
    finally:
        sys.modules.pop(qualified, None)


def _on_clock(clock: Clock) -> type[TokenAuth]:
    class TokenAuthOnClock(TokenAuth):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            kwargs.setdefault("clock", clock)
            super().__init__(*args, **kwargs)

    return TokenAuthOnClock


__all__ = [
    "CLAIMS",
    "REPO_ROOT",
    "Block",
    "Claim",
    "backticked",
    "claim",
    "claim_example",
    "doc_text",
    "documents",
    "example_module",
    "fenced_blocks",
    "markdown_table",
    "node_value",
    "parse_blocks",
    "pip_install",
    "python_blocks",
    "replace_ellipsis",
    "run_python",
    "search",
    "shell_lines",
]
