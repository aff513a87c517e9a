"""The library stays readable in one sitting: no function runs past about a screen.

Measured with scripts/code_shape.py, which prints the ten longest functions for a closing note.
A function that is one data literal (an OpenAPI document) is exempt: it reads as a table.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "middleware" / "starlette_refresh"
LONGEST = 55  # "about 50 lines": a docstring or a long signature may take a few more
DATA_LITERALS = {"fastapi.py:_auth_paths"}


def code_shape() -> ModuleType:
    spec = importlib.util.spec_from_file_location("code_shape", ROOT / "scripts" / "code_shape.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_no_function_runs_past_about_fifty_lines() -> None:
    lengths = code_shape().function_lengths(PACKAGE)

    too_long = [(lines, name) for lines, name in lengths if lines > LONGEST and name not in DATA_LITERALS]

    assert not too_long, f"split these functions: {too_long}"
    assert len(lengths) > 200  # the measure sees the whole package


def test_the_exempt_functions_still_exist() -> None:
    names = {name for _, name in code_shape().function_lengths(PACKAGE)}

    assert names >= DATA_LITERALS
