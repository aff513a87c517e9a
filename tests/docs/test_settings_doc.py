"""docs/settings.md: the table is what ``TokenAuth`` takes (its own keywords and the fields of
``Settings``): every argument, nothing else, each with its real default; and the example that
passes a whole ``Settings`` runs as written."""

from __future__ import annotations

import ast
import dataclasses
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
from starlette_refresh.settings import Settings
from tests.apps import SECRET, build_app
from tests.docs.blocks import backticked, claim, markdown_table, run_python

SETTINGS = "docs/settings.md"
WHOLE = claim(SETTINGS, "python", "settings=settings")

#: Defaults the table states in words, and the value they stand for in the signature.
WORDED_DEFAULTS = {
    ("secret_key", "required"): None,
    ("redis_url", "one required"): None,
    ("redis", "one required"): None,
    ("store", "one required"): None,
    ("cookie_path", "root_path + prefix"): None,  # the cookie's path: the root_path, then the prefix
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
    if text == "frozenset()":
        return frozenset()
    if re.fullmatch(r"[a-z_]+\.[a-z_]+", text):  # a function, e.g. time.time
        module, _, attribute = text.partition(".")
        return getattr(importlib.import_module(module), attribute)
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text  # a bare string, e.g. `strict`


def _arguments() -> dict[str, Any]:
    """Every keyword ``TokenAuth`` takes, with its default: its own keyword arguments and, when it
    takes the settings as ``**options`` checked against the ``Settings`` dataclass, that dataclass's
    fields. The one place that reads the signature."""
    arguments: dict[str, Any] = {}
    for name, parameter in inspect.signature(TokenAuth.__init__).parameters.items():
        if parameter.kind is inspect.Parameter.KEYWORD_ONLY:
            arguments[name] = parameter.default
        elif parameter.kind is inspect.Parameter.VAR_KEYWORD:
            for setting in dataclasses.fields(Settings):
                if setting.init and not setting.name.startswith("_"):
                    arguments[setting.name] = _field_default(setting)
    return arguments


def _field_default(setting: dataclasses.Field[Any]) -> Any:
    if setting.default is not dataclasses.MISSING:
        return setting.default
    assert setting.default_factory is not dataclasses.MISSING, f"{setting.name} has no default"
    return setting.default_factory()


def test_arguments_are_read_from_the_signature() -> None:
    arguments = _arguments()
    assert {"secret_key", "redis_url", "access_ttl", "cookie_secure", "clock", "observer"} <= set(arguments)
    assert "self" not in arguments
    assert arguments["access_ttl"] == 900


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
    assert auth.settings.cookie_path is None  # cookie_path: the prefix, at the time it is set
    with TestClient(build_app(auth), base_url="https://testserver") as client:
        cookie = client.post("/login").headers["set-cookie"]
    assert "Path=/session" in cookie


def test_settings_table_observer_default_is_a_null_observer() -> None:
    cell = _settings_rows()["observer"]
    assert "NullObserver" in cell
    auth = TokenAuth(secret_key=SECRET, redis=fakeredis.aioredis.FakeRedis())
    assert isinstance(auth.observer, NullObserver)
    assert time.time is _arguments()["clock"]


# -- A whole Settings ---------------------------------------------------------------------------


def test_a_whole_settings_object_configures_the_app(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("JWT_SECRET", SECRET)
    monkeypatch.setenv("REDIS_URL", "redis://127.0.0.1:1/0")  # built, never connected
    namespace = run_python(WHOLE)
    auth, settings = namespace["auth"], namespace["settings"]
    assert isinstance(settings, Settings)
    assert auth.settings == settings
    assert auth.settings.access_ttl == 300
    assert auth.settings.is_excluded("/static/app.js")
    assert auth.settings.trusted_origins == frozenset({"https://app.example.com"})


def test_keywords_beside_a_settings_object_replace_its_fields() -> None:
    """The doc: "keywords given beside it replace its fields"."""
    base = Settings(access_ttl=300, leeway=5)
    auth = TokenAuth(secret_key=SECRET, redis=fakeredis.aioredis.FakeRedis(), settings=base, access_ttl=600)
    assert (auth.settings.access_ttl, auth.settings.leeway) == (600, 5)


def test_a_misspelt_setting_names_the_one_meant() -> None:
    """The doc: "a misspelt keyword names the setting you probably meant"."""
    with pytest.raises(ConfigurationError, match="access_ttl"):
        TokenAuth(secret_key=SECRET, redis=fakeredis.aioredis.FakeRedis(), acces_ttl=300)  # type: ignore[call-arg]
