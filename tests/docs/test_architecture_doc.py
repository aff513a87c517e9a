"""docs/architecture.md stays true: every module is placed in a layer, and imports only point down."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

from tests.docs.blocks import claim

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "middleware" / "starlette_refresh"
DOC = (ROOT / "docs" / "architecture.md").read_text(encoding="utf-8")


def layers() -> dict[str, int]:
    """Module -> layer number, from the doc's layer table."""
    found: dict[str, int] = {}
    for number, cell in re.findall(r"^\| (\d+)\. [^|]+\| (.+) \|$", DOC, flags=re.MULTILINE):
        for module in re.findall(r"`(\w+)`", cell):
            assert module not in found, f"{module} is in two layers"
            found[module] = int(number)
    return found


def modules() -> list[str]:
    return sorted(p.stem for p in PACKAGE.glob("*.py") if p.stem != "__init__")


def relative_imports(module: str) -> set[str]:
    tree = ast.parse((PACKAGE / f"{module}.py").read_text(encoding="utf-8"))
    return {
        node.module.split(".")[0]
        for node in ast.walk(tree)
        if isinstance(node, ast.ImportFrom) and node.level == 1 and node.module
    }


def test_every_module_has_a_layer_and_a_line() -> None:
    placed = layers()
    assert sorted(placed) == modules()
    owned = set(re.findall(r"^\| `(\w+)` \|", DOC, flags=re.MULTILINE))
    assert owned == set(modules()), "the 'What each module owns' table lists other modules"


@pytest.mark.parametrize("module", modules())
def test_imports_point_down_only(module: str) -> None:
    placed = layers()
    upward = {
        target: placed[target] for target in relative_imports(module) if placed[target] >= placed[module]
    }
    assert not upward, f"{module} (layer {placed[module]}) imports from its own layer or above: {upward}"


# The diagram: the chain on its first line runs down the layers, and what it names are modules.
DIAGRAM = claim("docs/architecture.md", "", "auth (TokenAuth) ──")


def test_the_diagram_chain_runs_down_the_layers() -> None:
    placed = layers()
    chain = [step.split()[0] for step in DIAGRAM.text.splitlines()[0].split("►")]
    assert chain[-1] == "Redis"
    steps = [placed[name] for name in chain[:-1]]
    assert steps == sorted(steps, reverse=True), f"the diagram's chain {chain} points up a layer"
    assert len(set(steps)) == len(steps)
    named = set(re.findall(r"\b[a-z]+_[a-z_]+\b", DIAGRAM.text))
    assert named, "the diagram names modules such as token_cache"
    assert named <= set(modules()), f"the diagram names modules that do not exist: {named - set(modules())}"
