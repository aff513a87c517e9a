"""docs/layout.md: every path it names exists, and every page of docs/ is listed there and in the
README's table of documentation, so no page is left where nobody finds it."""

from __future__ import annotations

import re

from tests.docs.blocks import REPO_ROOT, backticked, doc_text, markdown_table

LAYOUT = "docs/layout.md"

#: A `code` span that names a file or folder: ``store.py``, ``refresh-manager.js``, ``unit/``.
_PATH = re.compile(r"[\w-]+(?:\.[a-z]+)+|[\w-]+/")


def _rows() -> dict[str, str]:
    """path -> what lives there."""
    rows = markdown_table(LAYOUT, "# Layout", "path")
    paths = [backticked(row[0]) for row in rows]
    assert all(len(names) == 1 for names in paths), "one path per row"
    return {names[0]: row[1] for names, row in zip(paths, rows, strict=True)}


def test_every_path_and_file_named_exists() -> None:
    missing = []
    for path, contents in _rows().items():
        if not (REPO_ROOT / path).exists():
            missing.append(path)
        folder = REPO_ROOT / path if path.endswith("/") else REPO_ROOT
        for name in backticked(contents):
            if _PATH.fullmatch(name) and not (folder / name).exists():
                missing.append(f"{path}{name}")
    assert not missing, f"{LAYOUT} names what is not there: {missing}"


def test_the_check_reads_files_and_folders_but_not_names() -> None:
    library = backticked(_rows()["middleware/starlette_refresh/"])
    assert [n for n in library if _PATH.fullmatch(n)][:2] == ["auth.py", "middleware.py"]
    assert "TokenAuth" in library
    assert not _PATH.fullmatch("TokenAuth")
    assert not _PATH.fullmatch("static_files()")
    assert _PATH.fullmatch("unit/")


def test_every_docs_page_is_in_the_layout_and_the_readme() -> None:
    pages = sorted(p.name for p in (REPO_ROOT / "docs").glob("*.md"))
    listed = doc_text(LAYOUT)
    readme = {row[0] for row in markdown_table("README.md", "## Documentation", "page")}
    for page in pages:
        assert f"[{page}]({page})" in listed or f"`{page}`" in listed, f"{LAYOUT} does not list docs/{page}"
        assert f"[docs/{page}](docs/{page})" in readme, f"README's Documentation table misses docs/{page}"
