"""Fresh virtual environments for the tests that install a built wheel (packaging, rolling upgrade).

A venv is made without pip and filled by this interpreter's pip (``pip --python``): ``ensurepip``
alone took 9 s of a slow CI machine's time per venv, for a pip the test never needs again.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path


def run(argv: list[str], cwd: Path, timeout: float = 300) -> str:
    """Runs ``argv`` outside this venv (no ``PYTHONPATH``, no ``VIRTUAL_ENV``); its output, or a
    failed assertion that shows the end of what it printed."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    done = subprocess.run(
        argv, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout, check=False
    )
    assert done.returncode == 0, f"{' '.join(argv)} failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    return done.stdout


def new_venv(where: Path, *requirements: str) -> Path:
    """A new venv at ``where`` with ``requirements`` (wheel paths or specifiers) installed; its python."""
    run([sys.executable, "-m", "venv", "--without-pip", str(where)], where.parent)
    python = where / "bin" / "python"
    pip = [
        sys.executable,
        "-m",
        "pip",
        "--python",
        str(python),
        "install",
        "-q",
        "--disable-pip-version-check",
    ]
    run([*pip, *requirements], where.parent)
    return python
