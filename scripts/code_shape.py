"""Prints the shape of the library: its longest functions and its public names.

    python scripts/code_shape.py [package dir]     # default: middleware/starlette_refresh

A function's length is its whole span in lines, from ``def`` to its last line, docstring included.
Used to keep the promise in docs/architecture.md that every function reads in one screen.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path


def function_lengths(package: Path) -> list[tuple[int, str]]:
    """``(lines, "module.py:Class.function")`` for every function and method, longest first."""
    found: list[tuple[int, str]] = []
    for path in sorted(package.glob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        _collect(tree, path.name, "", found)
    return sorted(found, reverse=True)


def _collect(node: ast.AST, module: str, owner: str, found: list[tuple[int, str]]) -> None:
    for child in ast.iter_child_nodes(node):
        if isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef):
            assert child.end_lineno is not None
            name = f"{owner}{child.name}"
            found.append((child.end_lineno - child.lineno + 1, f"{module}:{name}"))
            _collect(child, module, f"{name}.", found)
        elif isinstance(child, ast.ClassDef):
            _collect(child, module, f"{owner}{child.name}.", found)


def public_names(package: Path) -> list[str]:
    """The package's ``__all__``."""
    tree = ast.parse((package / "__init__.py").read_text(encoding="utf-8"))
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(
            isinstance(t, ast.Name) and t.id == "__all__" for t in node.targets
        ):
            return [ast.literal_eval(e) for e in node.value.elts]  # type: ignore[attr-defined]
    return []


def main() -> None:
    package = Path(sys.argv[1] if len(sys.argv) > 1 else "middleware/starlette_refresh")
    lengths = function_lengths(package)
    print(f"{len(lengths)} functions; the ten longest:")
    for lines, name in lengths[:10]:
        print(f"  {lines:4d}  {name}")
    names = public_names(package)
    print(f"__all__: {len(names)} names: {', '.join(names)}")


if __name__ == "__main__":
    main()
