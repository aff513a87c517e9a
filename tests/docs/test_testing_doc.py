"""docs/testing.md: its example is examples/testing_your_app.py verbatim, and that file's tests pass
(run by pytest in a child process, as a user would run them); what it says of the testing module holds."""

from __future__ import annotations

import subprocess
import sys

import starlette_refresh.testing
from starlette_refresh.refresh_tokens import fingerprint
from tests.docs.blocks import REPO_ROOT, claim_example, doc_text

TESTING = "docs/testing.md"
EXAMPLE = claim_example(TESTING, "examples/testing_your_app.py")


def test_the_page_shows_the_example_verbatim() -> None:
    assert EXAMPLE.text == (REPO_ROOT / "examples" / "testing_your_app.py").read_text()


def test_the_example_tests_pass_under_pytest() -> None:
    run = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "examples/testing_your_app.py"],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert run.returncode == 0, run.stdout + run.stderr
    assert "2 passed" in run.stdout


def test_the_testing_module_offers_what_the_page_names() -> None:
    text = doc_text(TESTING)
    for name in starlette_refresh.testing.__all__:
        assert f"`{name}" in text, f"{TESTING} does not describe starlette_refresh.testing.{name}"
    assert starlette_refresh.testing.fingerprint is fingerprint  # the very tag the logs carry
