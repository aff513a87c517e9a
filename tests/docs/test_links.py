"""Every relative link and image in README.md, SECURITY.md and docs/*.md points at a file that exists,
and every ``#anchor`` at a heading of its target (GitHub's heading ids). Reference material moves
between pages; a link left behind fails here instead of in a reader's browser."""

from __future__ import annotations

import re
from pathlib import PurePosixPath

import pytest

from tests.docs.blocks import REPO_ROOT, doc_text, documents, parse_blocks

#: ``[text](target)`` and ``![alt](target)``; the text may span lines.
_LINK = re.compile(r"\[[^\]]*\]\(([^()\s]+)\)")
_EXTERNAL = re.compile(r"^[a-z][a-z0-9+.-]*:", re.I)  # https:, mailto:...


def _without_blocks(doc: str) -> str:
    """The document with its fenced blocks blanked out (a ``# comment`` in a sh block is no heading)."""
    lines = doc_text(doc).splitlines()
    for block in parse_blocks(doc, "\n".join(lines)):
        closing = block.line + len(block.text.splitlines())  # 0-based index of the closing fence
        lines[block.line - 1 : closing + 1] = [""] * (closing + 2 - block.line)
    return "\n".join(lines)


def _prose(doc: str) -> str:
    """The document without its fenced blocks and inline code, where brackets are code, not links."""
    return re.sub(r"`[^`\n]*`", "", _without_blocks(doc))


def slug(heading: str) -> str:
    """The id GitHub gives a heading: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


def anchors(doc: str) -> set[str]:
    """The ids of every heading of ``doc`` (repeated headings get ``-1``, ``-2``... as on GitHub)."""
    seen: dict[str, int] = {}
    found = set()
    for heading in re.findall(r"^#{1,6} +(.+?) *#* *$", _without_blocks(doc), re.M):
        base = slug(heading)
        count = seen.get(base, 0)
        seen[base] = count + 1
        found.add(base if count == 0 else f"{base}-{count}")
    return found


def test_slugs_follow_github() -> None:
    assert slug("Failover and `replica_acks`") == "failover-and-replica_acks"
    fetch = "`manager.fetch`: the wrapper for plain `fetch`"
    assert slug(fetch) == "managerfetch-the-wrapper-for-plain-fetch"
    assert slug("Deploying: workers, load balancers, Sentinel and Cluster") == (
        "deploying-workers-load-balancers-sentinel-and-cluster"
    )


def test_links_images_and_headings_are_found() -> None:
    links = _LINK.findall(_prose("README.md"))
    assert "docs/settings.md" in links
    assert "docs/dashboard.png" in links  # an image whose alt text spans two lines
    assert "why-the-protected-path-is-nearly-free" in anchors("docs/performance.md")
    # "# sessions ended, by reason" is a comment in a promql block, not a heading
    assert "sessions-ended-by-reason" not in anchors("docs/observability.md")
    assert "structured-log-fields" in anchors("docs/observability.md")


@pytest.mark.parametrize("doc", documents())
def test_every_relative_link_and_anchor_resolves(doc: str) -> None:
    broken = []
    for target in _LINK.findall(_prose(doc)):
        if _EXTERNAL.match(target):
            continue
        path, _, anchor = target.partition("#")
        resolved = (PurePosixPath(doc).parent / path).as_posix() if path else doc
        file = REPO_ROOT / resolved
        if not file.exists() or not file.resolve().is_relative_to(REPO_ROOT.resolve()):
            broken.append(f"{target}: no such file {resolved}")
        elif anchor and (not resolved.endswith(".md") or anchor not in anchors(resolved)):
            broken.append(f"{target}: {resolved} has no heading #{anchor}")
    assert not broken, f"{doc} links to what is not there:\n  " + "\n  ".join(broken)
