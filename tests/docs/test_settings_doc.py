"""docs/settings.md: the table is the real signature of ``TokenAuth``: every argument, nothing else,
each with its real default."""

from __future__ import annotations

import ast
import importlib
import inspect
import re
import time
from typing import Any

import fakeredis
import pytest
from starlette.testclient import TestClient

from starlette_refresh import TokenAuth
from starlette_refresh.errors import ConfigurationError
from starlette_refresh.observe import NullObserver
from tests.apps import SECRET, build_app
from tests.docs.blocks import backticked, markdown_table

SETTINGS = "docs/settings.md"

#: Defaults the table states in words, and the value they stand for in the signature.
WORDED_DEFAULTS = {
    ("secret_key", "required"): None,
    ("redis_url", "one required"): None,
    ("redis", "one required"): None,
    ("store", "one required"): None,
    ("cookie_path", "prefix"): None,  # the cookie's path defaults to the endpoint prefix
}


def _settings_rows() -> dict[str, str]:
    """argument -> default cell, one entry per argument named in the settings table."""
    table: dict[str, str] = {}
    for row in markdown_table(SETTINGS, "# Settings", "argument"):
        names = backticked(row[0])
        assert names, f"a settings row without an argument: {row}"
        defaults = [row[1]] * len(names) if len(names) == 1 or "," not in row[1] else row[1].split(", ")
        assert len(defaults) == len(names), f"one default per argument in {row}"
        for name, default in zip(names, defaults, strict=True):
            assert name not in table, f"{name} appears twice in the settings table"
            table[name] = default
    return table


def _value(name: str, cell: str) -> Any:
    if (name, cell) in WORDED_DEFAULTS:
        return WORDED_DEFAULTS[name, cell]
    spans = backticked(cell)
    assert spans, f"the default of {name} is neither `code` nor a known wording: {cell!r}"
    text = spans[0]
    if re.fullmatch(r"[a-z_]+\.[a-z_]+", text):  # a function, e.g. time.time
        module, _, attribute = text.partition(".")
        return getattr(importlib.import_module(module), attribute)
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text  # a bare string, e.g. `strict`


def _arguments() -> dict[str, Any]:
    """What the table is checked against: every keyword argument of ``TokenAuth`` and its default.

    This is the one place that reads the signature; when the settings become one typed object, this
    is where the table starts being checked against its fields (plus the keywords that are not
    settings)."""
    parameters = inspect.signature(TokenAuth.__init__).parameters
    return {name: p.default for name, p in parameters.items() if name != "self"}


def test_settings_table_names_every_argument_and_nothing_else() -> None:
    parameters = set(_arguments())
    table = set(_settings_rows())
    assert table - parameters == set(), "the settings table names arguments TokenAuth does not take"
    assert parameters - table == set(), "TokenAuth arguments missing from docs/settings.md"


def test_settings_table_states_the_real_defaults() -> None:
    arguments = _arguments()
    for name, cell in _settings_rows().items():
        default = arguments[name]
        stated = _value(name, cell)
        message = f"docs/settings.md says {name} defaults to {cell}, TokenAuth says {default!r}"
        assert stated == default, message
        assert type(stated) in (type(default), int), message


def test_settings_table_worded_defaults_are_true() -> None:
    with pytest.raises(ConfigurationError, match="secret_key"):
        TokenAuth(redis=fakeredis.aioredis.FakeRedis())  # secret_key: required
    with pytest.raises(ConfigurationError, match="shared session store"):
        TokenAuth(secret_key=SECRET)  # redis_url / redis / store: one required
    auth = TokenAuth(
        secret_key=SECRET, redis=fakeredis.aioredis.FakeRedis(), prefix="/session", exclude=["/login"]
    )
    assert auth.settings.cookie.path is None  # cookie_path: the prefix, at the time it is set
    with TestClient(build_app(auth), base_url="https://testserver") as client:
        cookie = client.post("/login").headers["set-cookie"]
    assert "Path=/session" in cookie


def test_settings_table_observer_default_is_a_null_observer() -> None:
    cell = _settings_rows()["observer"]
    assert "NullObserver" in cell
    auth = TokenAuth(secret_key=SECRET, redis=fakeredis.aioredis.FakeRedis())
    assert isinstance(auth.observer, NullObserver)
    assert time.time is _arguments()["clock"]
