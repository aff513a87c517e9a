"""The guard: every fenced block of every checked document is claimed by a test under tests/docs/.

A new example in README.md, SECURITY.md or docs/*.md fails here until a test claims it with one line
(see tests/docs/blocks.py) and proves it. static/README.md is checked by static/tests/examples.test.mjs.
"""

from __future__ import annotations

import importlib
import pkgutil
import re

import pytest

import tests.docs
from tests.docs.blocks import CLAIMS, REPO_ROOT, Block, Claim, documents, fenced_blocks, parse_blocks

HOW_TO_CLAIM = """
Every fenced block in the docs must be proven by a test. In the test module for that document
(tests/docs/test_<doc>.py), claim it at module level with one line, then use it in a test:

    EXAMPLE = claim_example("README.md", "examples/<file>.py")    # a verbatim copy of a tested file
    SNIPPET = claim("README.md", "js", "<text only that block contains>")

and run or check EXAMPLE.text / SNIPPET.text (run_python(SNIPPET) executes a Python block).
"""


def _load_every_claim() -> None:
    for module in pkgutil.iter_modules(tests.docs.__path__):
        if module.name.startswith("test_"):
            importlib.import_module(f"tests.docs.{module.name}")


_load_every_claim()


def _all_blocks() -> list[Block]:
    return [block for doc in documents() for block in fenced_blocks(doc)]


def test_the_checked_documents_are_the_roots_and_docs_markdown() -> None:
    docs = documents()
    for expected in ("README.md", "SECURITY.md", "docs/guide.md", "docs/deployment.md", "docs/capacity.md"):
        assert expected in docs
    assert "docs/observability.md" in docs
    assert "static/README.md" not in docs
    assert set(docs) == {
        p.relative_to(REPO_ROOT).as_posix() for p in [*REPO_ROOT.glob("*.md"), *REPO_ROOT.glob("docs/*.md")]
    }


def test_every_block_is_claimed_by_a_test() -> None:
    unclaimed = [str(block) for block in _all_blocks() if not any(c.matches(block) for c in CLAIMS)]
    assert not unclaimed, "blocks no test proves:\n  " + "\n  ".join(unclaimed) + "\n" + HOW_TO_CLAIM


@pytest.mark.parametrize("claimed", CLAIMS, ids=str)
def test_every_claim_names_exactly_one_block(claimed: Claim) -> None:
    assert claimed.block is not None  # resolving fails unless exactly one block matches


# -- The extractor ------------------------------------------------------------------------------


def test_extractor_reads_languages_indented_fences_and_long_fences() -> None:
    markdown = "\n".join(
        [
            "text",
            "```python",
            "x = 1",
            "```",
            "1. a list item:",
            "",
            "   ```sh",
            "   ls -l",
            "     indented more",
            "   ```",
            "~~~",
            "no language",
            "~~~",
            "````markdown",
            "```python",
            "inner",
            "```",
            "````",
        ]
    )
    blocks = parse_blocks("x.md", markdown)
    assert [(b.lang, b.line, b.text) for b in blocks] == [
        ("python", 2, "x = 1\n"),
        ("sh", 7, "ls -l\n  indented more\n"),
        ("", 11, "no language\n"),
        ("markdown", 14, "```python\ninner\n```\n"),
    ]


def test_extractor_refuses_an_unclosed_fence() -> None:
    with pytest.raises(AssertionError, match="never closed"):
        parse_blocks("x.md", "```python\nx = 1\n")


# -- Tests the docs name ------------------------------------------------------------------------


def test_every_test_the_docs_name_exists() -> None:
    """SECURITY.md and docs/deployment.md back their claims with named tests: those must exist."""
    missing = []
    for doc in documents():
        text = (REPO_ROOT / doc).read_text()
        for path, name in re.findall(r"\b(tests/[\w/]+\.py)(?:::(\w+))?", text):
            source = REPO_ROOT / path
            if not source.is_file():
                missing.append(f"{doc}: {path}")
            elif name and not re.search(rf"^(?:async )?def {name}\(", source.read_text(), re.M):
                missing.append(f"{doc}: {path}::{name}")
        for folder in re.findall(r"`(tests/[\w/]+/)`", text):
            if not (REPO_ROOT / folder).is_dir():
                missing.append(f"{doc}: {folder}")
    assert not missing
