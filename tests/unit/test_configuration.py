"""Configuration: every bad setting stops TokenAuth(...) with a ConfigurationError saying what to change."""

from __future__ import annotations

import asyncio
import re
import socket
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from hypothesis import given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from starlette_refresh import ConfigurationError, Settings, StoreUnavailable, TokenAuth
from starlette_refresh.settings import normalize_origin
from starlette_refresh.store import RedisStore
from tests.apps import SECRET

Factory = Callable[..., TokenAuth]


def refused(make: Callable[[], object], message: str) -> str:
    """Asserts ``make()`` raises exactly ConfigurationError whose text contains ``message``."""
    with pytest.raises(ConfigurationError, match=re.escape(message)) as caught:
        make()
    assert type(caught.value) is ConfigurationError
    return str(caught.value)


@pytest.fixture
def closed_port() -> Iterator[int]:
    """A local TCP port that refuses connections (bound, never listening) for the whole test."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    try:
        yield sock.getsockname()[1]
    finally:
        sock.close()


# --------------------------------------------------------------------------- secret


@pytest.mark.parametrize("secret", [None, "", b""])
def test_missing_secret_key(make_auth: Factory, secret: Any) -> None:
    message = refused(lambda: make_auth(secret_key=secret), "TokenAuth needs secret_key")

    assert "at least 32 bytes" in message


@pytest.mark.parametrize("secret", ["x" * 31, b"x" * 31, "short"])
def test_short_secret_key(make_auth: Factory, secret: str | bytes) -> None:
    refused(lambda: make_auth(secret_key=secret), "the secret key must be at least 32 bytes")


@pytest.mark.parametrize("secret", ["x" * 32, b"\x00" * 32, "é" * 16])
def test_32_byte_secret_is_enough(make_auth: Factory, secret: str | bytes) -> None:
    assert make_auth(secret_key=secret).settings.access_ttl == 300


def test_secret_is_needed_even_with_a_key_ring(fake_redis: Any) -> None:
    from starlette_refresh import SigningKey

    refused(
        lambda: TokenAuth(keys=[SigningKey.hmac(SECRET, kid="k")], redis=fake_redis),
        "TokenAuth needs secret_key",
    )


# --------------------------------------------------------------------------- store


def test_no_store_is_an_error_that_explains_there_is_no_in_memory_store() -> None:
    message = refused(lambda: TokenAuth(secret_key=SECRET), "TokenAuth needs a shared session store")

    assert "in-memory" in message
    assert "redis_url=" in message


@pytest.mark.parametrize(
    ("stores", "names"),
    [
        ({"redis_url": "redis://127.0.0.1:6379/0", "redis": "client"}, "redis_url, redis"),
        ({"redis_url": "redis://127.0.0.1:6379/0", "store": "store"}, "redis_url, store"),
        ({"redis": "client", "store": "store"}, "redis, store"),
        (
            {"redis_url": "redis://127.0.0.1:6379/0", "redis": "client", "store": "store"},
            "redis_url, redis, store",
        ),
    ],
)
def test_two_stores_are_an_error(stores: dict[str, Any], names: str) -> None:
    refused(
        lambda: TokenAuth(secret_key=SECRET, **stores),
        f"pass only one of redis_url, redis and store (got {names})",
    )


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:6379/0",
        "redis-cluster://127.0.0.1:7000",
        "sentinel://127.0.0.1:26379/mymaster",
        "127.0.0.1:6379",
        "memory://",
        "",
    ],
)
def test_redis_url_with_a_bad_scheme(url: str) -> None:
    message = refused(
        lambda: TokenAuth(secret_key=SECRET, redis_url=url),
        "redis_url must",
    )
    assert "redis://, rediss://, unix://, redis+cluster://, rediss+cluster://, redis+sentinel://" in message

    assert "client as redis=" in message


@pytest.mark.parametrize(
    "url", ["redis://127.0.0.1:6379/0", "rediss://cache.example:6380/1", "unix:///run/redis.sock?db=0"]
)
def test_redis_url_with_a_good_scheme_builds(url: str) -> None:
    assert isinstance(TokenAuth(secret_key=SECRET, redis_url=url).store, RedisStore)


async def start_then_close(auth: TokenAuth) -> None:
    try:
        await auth.startup()
    finally:
        await auth.shutdown()


def test_valid_config_builds_without_touching_redis(closed_port: int) -> None:
    url = f"redis://127.0.0.1:{closed_port}/0"

    auth = TokenAuth(secret_key=SECRET, redis_url=url, store_timeout=0.5)  # builds: nothing connects

    assert isinstance(auth.store, RedisStore)
    # The unreachable store only shows at startup, loudly, naming where it looked.
    with pytest.raises(StoreUnavailable) as caught:
        asyncio.run(start_then_close(auth))
    message = str(caught.value)
    assert message.startswith(f"starlette-refresh cannot reach its session store ({url}): ")
    assert "the app will not start without its session store" in message


def test_startup_message_redacts_the_redis_password(closed_port: int) -> None:
    auth = TokenAuth(
        secret_key=SECRET, redis_url=f"redis://app:hunter2-pass@127.0.0.1:{closed_port}/0", store_timeout=0.5
    )

    with pytest.raises(StoreUnavailable) as caught:
        asyncio.run(start_then_close(auth))

    assert "hunter2-pass" not in str(caught.value)
    assert f"(redis://app:***@127.0.0.1:{closed_port}/0)" in str(caught.value)


# --------------------------------------------------------------------------- settings through TokenAuth

BAD_SETTINGS: list[tuple[str, dict[str, Any], str]] = [
    ("access-equals-refresh", {"access_ttl": 3600, "refresh_ttl": 3600}, "must be shorter than refresh_ttl"),
    ("access-above-refresh", {"access_ttl": 7200, "refresh_ttl": 3600}, "access_ttl (7200s) must be shorter"),
    (
        "refresh-above-absolute",
        {"refresh_ttl": 90_000, "absolute_ttl": 86_400},
        "refresh_ttl (90000s) must not exceed absolute_ttl (86400s)",
    ),
    ("negative-grace", {"refresh_grace": -1}, "refresh_grace must be >= 0 and shorter than refresh_ttl"),
    (
        "grace-equals-refresh",
        {"refresh_grace": 3600},
        "refresh_grace must be >= 0 and shorter than refresh_ttl",
    ),
    (
        "grace-above-refresh",
        {"refresh_grace": 10_000},
        "refresh_grace must be >= 0 and shorter than refresh_ttl",
    ),
    ("grace-nan", {"refresh_grace": float("nan")}, "refresh_grace must be a number of seconds"),
    ("grace-string", {"refresh_grace": "10"}, "refresh_grace must be a number of seconds"),
    ("leeway-301", {"leeway": 301}, "leeway=301 is more than 5 minutes"),
    ("leeway-negative", {"leeway": -1}, "leeway must be a whole number of seconds >= 0"),
    ("leeway-float", {"leeway": 1.5}, "leeway must be a whole number of seconds >= 0"),
    ("leeway-bool", {"leeway": True}, "leeway must be a whole number of seconds >= 0"),
    ("access-float", {"access_ttl": 1.5}, "access_ttl must be a whole number > 0, got 1.5"),
    ("access-string", {"access_ttl": "300"}, "access_ttl must be a whole number > 0, got '300'"),
    ("access-bool", {"access_ttl": True}, "access_ttl must be a whole number > 0, got True"),
    ("access-zero", {"access_ttl": 0}, "access_ttl must be a whole number > 0, got 0"),
    ("access-negative", {"access_ttl": -300}, "access_ttl must be a whole number > 0, got -300"),
    ("refresh-float", {"refresh_ttl": 3600.0}, "refresh_ttl must be a whole number > 0, got 3600.0"),
    ("absolute-none", {"absolute_ttl": None}, "absolute_ttl must be a whole number > 0, got None"),
    ("store-timeout-zero", {"store_timeout": 0}, "store_timeout must be > 0 seconds"),
    ("store-timeout-nan", {"store_timeout": float("nan")}, "store_timeout must be a number of seconds"),
    ("store-timeout-string", {"store_timeout": "2"}, "store_timeout must be a number of seconds"),
    (
        "access-cache-negative",
        {"access_cache_size": -1},
        "access_cache_size must be a whole number of tokens",
    ),
    ("access-cache-float", {"access_cache_size": 10.5}, "access_cache_size must be a whole number of tokens"),
    ("replica-acks-negative", {"replica_acks": -1}, "replica_acks must be a whole number of replicas >= 0"),
    ("replica-acks-bool", {"replica_acks": True}, "replica_acks must be a whole number of replicas >= 0"),
    ("replica-acks-string", {"replica_acks": "1"}, "replica_acks must be a whole number of replicas >= 0"),
    ("replica-ack-timeout-zero", {"replica_ack_timeout": 0}, "replica_ack_timeout must be > 0"),
    (
        "replica-ack-timeout-nan",
        {"replica_ack_timeout": float("nan")},
        "replica_ack_timeout must be a number",
    ),
    (
        "replica-ack-timeout-too-long",
        {"replica_acks": 1, "replica_ack_timeout": 2.0, "store_timeout": 2.0},
        "replica_ack_timeout must be > 0 and shorter than store_timeout (2.0s)",
    ),
    ("max-sessions-zero", {"max_sessions_per_user": 0}, "max_sessions_per_user must be a whole number > 0"),
    ("retry-after-float", {"retry_after": 1.5}, "retry_after must be a whole number > 0"),
    (
        "prefix-no-slash",
        {"prefix": "auth"},
        "prefix must look like '/auth' (leading slash, no trailing slash)",
    ),
    ("prefix-trailing-slash", {"prefix": "/auth/"}, "prefix must look like '/auth'"),
    ("prefix-root", {"prefix": "/"}, "prefix must look like '/auth'"),
    ("prefix-empty", {"prefix": ""}, "prefix must look like '/auth'"),
    (
        "exclude-no-slash",
        {"exclude": ["/public", "login"]},
        "exclude entries are path prefixes like '/login', got 'login'",
    ),
    ("exclude-empty-entry", {"exclude": [""]}, "exclude entries are path prefixes like '/login', got ''"),
    ("exclude-one-string", {"exclude": "/login"}, "exclude and trusted_origins take a list of strings"),
    (
        "origins-one-string",
        {"trusted_origins": "https://app.example.com"},
        "exclude and trusted_origins take a list of strings",
    ),
    (
        "origin-bare-host",
        {"trusted_origins": ["example.com"]},
        "trusted_origins entries look like 'https://app.example.com', got 'example.com'",
    ),
    (
        "origin-with-path",
        {"trusted_origins": ["https://example.com/app"]},
        "trusted_origins entries look like 'https://app.example.com', got 'https://example.com/app'",
    ),
    (
        "origin-with-query",
        {"trusted_origins": ["https://example.com?x=1"]},
        "trusted_origins entries look like",
    ),
    ("origin-null", {"trusted_origins": ["null"]}, "trusted_origins entries look like"),
    ("origin-wildcard", {"trusted_origins": ["*"]}, "trusted_origins entries look like"),
    ("origin-ftp", {"trusted_origins": ["ftp://example.com"]}, "trusted_origins entries look like"),
    (
        "origin-userinfo",
        {"trusted_origins": ["https://user@example.com"]},
        "trusted_origins entries look like",
    ),
    (
        "samesite-none-insecure",
        {"cookie_samesite": "none", "cookie_secure": False},
        "browsers drop SameSite=None cookies that are not Secure",
    ),
    (
        "samesite-bad",
        {"cookie_samesite": "sometimes"},
        "cookie samesite must be 'strict', 'lax' or 'none', got 'sometimes'",
    ),
    ("samesite-empty", {"cookie_samesite": ""}, "cookie samesite must be 'strict', 'lax' or 'none'"),
    ("cookie-semicolon", {"cookie_name": "rt;path=/"}, "cookie name 'rt;path=/' is not a valid cookie name"),
    ("cookie-space", {"cookie_name": "refresh token"}, "is not a valid cookie name"),
    ("cookie-equals", {"cookie_name": "a=b"}, "is not a valid cookie name"),
    ("cookie-comma", {"cookie_name": "a,b"}, "is not a valid cookie name"),
    ("cookie-newline", {"cookie_name": "rt\r\nSet-Cookie"}, "is not a valid cookie name"),
    ("cookie-empty", {"cookie_name": ""}, "cookie name '' is not a valid cookie name"),
    ("key-prefix-open-brace", {"key_prefix": "sr{"}, "key_prefix must be non-empty and free of '{' and '}'"),
    ("key-prefix-hash-tag", {"key_prefix": "{app}:"}, "key_prefix must be non-empty and free of '{' and '}'"),
    ("key-prefix-close-brace", {"key_prefix": "sr}"}, "key_prefix must be non-empty"),
    ("key-prefix-empty", {"key_prefix": ""}, "key_prefix must be non-empty"),
]


@pytest.mark.parametrize(
    ("overrides", "message"), [(o, m) for _, o, m in BAD_SETTINGS], ids=[name for name, _, _ in BAD_SETTINGS]
)
def test_bad_setting_is_a_configuration_error(
    make_auth: Factory, overrides: dict[str, Any], message: str
) -> None:
    refused(lambda: make_auth(**overrides), message)


def test_boundary_values_are_accepted(make_auth: Factory) -> None:
    auth = make_auth(
        access_ttl=3599,
        refresh_ttl=3600,
        absolute_ttl=3600,
        refresh_grace=0,
        leeway=300,
        prefix="/a",
        exclude=("/$", "/static/"),
        cookie_samesite="none",
        cookie_secure=True,
        trusted_origins=["https://App.Example.com:443", "http://localhost:8000"],
        key_prefix="myapp:sessions:",
    )

    settings = auth.settings
    assert (settings.access_ttl, settings.refresh_ttl, settings.absolute_ttl) == (3599, 3600, 3600)
    assert settings.refresh_grace == 0
    assert settings.leeway == 300
    assert settings.prefix == "/a"
    assert settings.refresh_cookie_path() == "/a"
    assert settings.refresh_cookie_path("/api") == "/api/a"
    assert settings.exclude == ("/$", "/static/")
    assert (settings.cookie_name, settings.cookie_secure, settings.cookie_samesite) == (
        "refresh_token",
        True,
        "none",
    )
    assert settings.trusted_origins == frozenset({"https://app.example.com", "http://localhost:8000"})
    assert settings.key_prefix == "myapp:sessions:"


def test_defaults_match_the_design(fake_redis: Any) -> None:
    settings = TokenAuth(secret_key=SECRET, redis=fake_redis).settings

    assert settings.access_ttl == 900
    assert settings.refresh_ttl == 7 * 86_400
    assert settings.absolute_ttl == 30 * 86_400
    assert settings.refresh_grace == 10
    assert settings.prefix == "/auth"
    assert settings.refresh_cookie_path() == "/auth"
    assert (settings.cookie_name, settings.cookie_secure, settings.cookie_samesite) == (
        "refresh_token",
        True,
        "strict",
    )
    assert (settings.cookie_domain, settings.cookie_path) == (None, None)
    assert settings.issuer is None
    assert settings.audience is None


def test_exclude_accepts_any_iterable(make_auth: Factory) -> None:
    auth = make_auth(exclude=(path for path in ["/login", "/static/"]))

    assert auth.settings.exclude == ("/login", "/static/")


def test_settings_normalize_trusted_origins_as_the_keywords_do() -> None:
    settings = Settings(trusted_origins=["https://App.example.com:443", "http://localhost:8000/"])

    assert settings.trusted_origins == frozenset({"https://app.example.com", "http://localhost:8000"})
    refused(lambda: Settings(trusted_origins=["example.com"]), "trusted_origins entries look like")


def test_settings_refuse_bad_cookie_settings_directly() -> None:
    refused(
        lambda: Settings(cookie_samesite="none", cookie_secure=False),
        "browsers drop SameSite=None cookies that are not Secure",
    )


def test_cookie_name_prefixes_are_held_to_the_browsers_rules() -> None:
    """A __Host- cookie cannot be planted by a sibling subdomain (cookie tossing), but browsers drop
    it unless it is Secure, for the whole host (Path=/) and without a Domain: refused at startup,
    not discovered as a login that sets no cookie."""
    refused(lambda: Settings(cookie_name="__Secure-rt", cookie_secure=False), "unless cookie_secure=True")
    refused(lambda: Settings(cookie_name="__Host-rt"), "unless it has cookie_path='/' and no cookie_domain")
    refused(
        lambda: Settings(cookie_name="__Host-rt", cookie_path="/", cookie_domain="example.com"),
        "unless it has cookie_path='/' and no cookie_domain",
    )
    assert Settings(cookie_name="__Host-rt", cookie_path="/").refresh_cookie_path("/api") == "/"
    assert Settings(cookie_name="__Secure-rt").refresh_cookie_path() == "/auth"


def test_a_host_prefixed_cookie_works_end_to_end(make_auth: Any) -> None:
    from starlette.testclient import TestClient

    from tests.apps import build_app

    auth = make_auth(cookie_name="__Host-refresh", cookie_path="/")
    with TestClient(build_app(auth), base_url="https://testserver") as client:
        login = client.post("/login", json={})
        assert login.status_code == 200
        [set_cookie] = login.headers.get_list("set-cookie")
        assert set_cookie.startswith("__Host-refresh=")
        assert "Path=/;" in set_cookie
        assert "Domain" not in set_cookie
        assert "Secure" in set_cookie
        assert client.post("/auth/refresh").status_code == 200  # the jar sends it back


def test_settings_are_immutable() -> None:
    settings = Settings()

    with pytest.raises(AttributeError):
        settings.access_ttl = 1  # type: ignore[misc]


# --------------------------------------------------------------------------- exclude semantics


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("/static", True),
        ("/static/", True),
        ("/static/app.js", True),
        ("/static/css/site.css", True),
        ("/staticfoo", False),
        ("/static.js", False),
        ("/stati", False),
        ("/other/static", False),
        ("/", False),
        ("", False),
        ("/Static", False),
        ("/assets/", True),
        ("/assets/logo.png", True),
        ("/assets", False),
        ("/assetsfoo", False),
        ("/login", True),
        ("/login/", True),
        ("/login2", False),
        ("/loginx/y", False),
    ],
)
def test_is_excluded_matches_whole_segments(path: str, expected: bool) -> None:
    settings = Settings(exclude=("/static", "/assets/", "/login"))

    assert settings.is_excluded(path) is expected


def test_nothing_is_excluded_by_default() -> None:
    assert Settings().is_excluded("/") is False
    assert Settings().is_excluded("/login") is False


def test_root_exclude_is_refused_because_it_would_cover_everything() -> None:
    with pytest.raises(ConfigurationError, match=re.escape("write '/$' to exclude only the root page")):
        Settings(exclude=("/",))


@pytest.mark.parametrize(
    ("path", "expected"),
    [("/", True), ("/app", True), ("/app/", False), ("/me", False), ("/apple", False), ("/app/x", False)],
)
def test_dollar_suffix_excludes_exactly_one_path(path: str, expected: bool) -> None:
    settings = Settings(exclude=("/$", "/app$"))

    assert settings.is_excluded(path) is expected


# --------------------------------------------------------------------------- origins


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("https://example.com", "https://example.com"),
        ("https://example.com/", "https://example.com"),
        ("https://example.com:443", "https://example.com"),
        ("http://example.com:80", "http://example.com"),
        ("https://example.com:80", "https://example.com:80"),
        ("http://example.com:443", "http://example.com:443"),
        ("http://localhost:8000", "http://localhost:8000"),
        ("HTTPS://App.EXAMPLE.com", "https://app.example.com"),
        ("https://APP.example.COM:8443", "https://app.example.com:8443"),
        ("  https://example.com  ", "https://example.com"),
        ("http://[::1]:8000", "http://[::1]:8000"),
        ("http://[::1]:80", "http://[::1]"),
        ("http://127.0.0.1:8000", "http://127.0.0.1:8000"),
        ("null", ""),
        ("", ""),
        ("example.com", ""),
        ("//example.com", ""),
        ("https://example.com/path", ""),
        ("https://example.com/app/", ""),
        ("https://example.com?x=1", ""),
        ("https://example.com#top", ""),
        ("https://user@example.com", ""),
        ("https://user:pw@example.com", ""),
        ("https://example.com:99999", ""),
        ("https://example.com:port", ""),
        ("ftp://example.com", ""),
        ("file:///etc/passwd", ""),
        ("javascript:alert(1)", ""),
        ("https://", ""),
    ],
)
def test_normalize_origin(value: str, expected: str) -> None:
    assert normalize_origin(value) == expected


def reference_is_excluded(exclude: tuple[str, ...], path: str) -> bool:
    """The rule as documented, written plainly: the precomputed check must agree with it."""
    for prefix in exclude:
        if prefix.endswith("$"):
            if path == prefix[:-1]:
                return True
        elif prefix.endswith("/"):
            if path.startswith(prefix):
                return True
        elif path == prefix or path.startswith(prefix + "/"):
            return True
    return False


SEGMENTS = st.sampled_from(["", "a", "ab", "static", "static2", "x"])
PATHS = st.lists(SEGMENTS, min_size=1, max_size=4).map(lambda parts: "/" + "/".join(parts))
EXCLUDES = st.lists(
    st.tuples(PATHS, st.sampled_from(["", "/", "$"])).map(lambda pair: pair[0].rstrip("/") + pair[1]),
    max_size=4,
).map(lambda entries: tuple(e for e in entries if e.startswith("/") and e != "/"))


@hypothesis_settings(max_examples=500, deadline=None)
@given(exclude=EXCLUDES, path=PATHS)
def test_is_excluded_agrees_with_the_documented_rule(exclude: tuple[str, ...], path: str) -> None:
    assert Settings(exclude=exclude).is_excluded(path) is reference_is_excluded(exclude, path)


# --------------------------------------------------------------------------- one home for the settings


def test_settings_can_be_passed_whole(fake_redis: Any) -> None:
    settings = Settings(access_ttl=60, refresh_ttl=600, absolute_ttl=600, exclude=["/login"])

    auth = TokenAuth(secret_key=SECRET, redis=fake_redis, settings=settings)

    assert auth.settings == settings
    assert auth.settings.is_excluded("/login")


def test_keywords_replace_fields_of_the_settings_passed(fake_redis: Any) -> None:
    base = Settings(access_ttl=60, refresh_ttl=600, absolute_ttl=600, cookie_secure=False)

    auth = TokenAuth(secret_key=SECRET, redis=fake_redis, settings=base, access_ttl=30, exclude=["/x"])

    assert auth.settings.access_ttl == 30
    assert auth.settings.refresh_ttl == 600  # kept from base
    assert auth.settings.cookie_secure is False  # kept from base
    assert auth.settings.is_excluded("/x")
    assert base.access_ttl == 60  # the object passed in is not changed


def test_keywords_are_checked_with_the_settings(fake_redis: Any) -> None:
    base = Settings(access_ttl=60, refresh_ttl=600, absolute_ttl=600)

    refused(
        lambda: TokenAuth(secret_key=SECRET, redis=fake_redis, settings=base, refresh_ttl=30),
        "access_ttl (60s) must be shorter than refresh_ttl (30s)",
    )


@pytest.mark.parametrize(
    ("name", "suggestion"),
    [("acess_ttl", "did you mean 'access_ttl'?"), ("cookie_secured", "did you mean 'cookie_secure'?")],
)
def test_an_unknown_setting_is_refused_with_the_closest_name(
    fake_redis: Any, name: str, suggestion: str
) -> None:
    message = refused(
        lambda: TokenAuth(secret_key=SECRET, redis=fake_redis, **{name: 1}), f"unknown setting {name!r}"
    )

    assert suggestion in message


def test_an_unknown_setting_without_a_close_name_lists_the_settings(fake_redis: Any) -> None:
    message = refused(lambda: TokenAuth(secret_key=SECRET, redis=fake_redis, zzz=1), "unknown setting 'zzz'")

    assert "'access_ttl'" in message
    assert "'max_body_bytes'" in message


def test_every_setting_is_a_keyword_of_token_auth_and_nowhere_else_a_default() -> None:
    from dataclasses import fields
    from inspect import Parameter, signature
    from typing import get_type_hints

    from starlette_refresh.settings import SETTING_NAMES, SettingOptions
    from starlette_refresh.store import RedisStore

    assert set(get_type_hints(SettingOptions)) == SETTING_NAMES
    assert {f.name for f in fields(Settings) if not f.name.startswith("_")} == SETTING_NAMES
    for owner in (TokenAuth, RedisStore):
        named = {p.name for p in signature(owner).parameters.values() if p.kind is not Parameter.VAR_KEYWORD}
        assert not named & SETTING_NAMES, f"{owner.__name__} repeats settings: {named & SETTING_NAMES}"


def test_the_store_reads_the_apps_settings(fake_redis: Any) -> None:
    auth = TokenAuth(secret_key=SECRET, redis=fake_redis, key_prefix="app1:", store_timeout=0.5)

    assert auth.store.layout.session("t" * 20, "s") == "app1:{tttttttttttttttttttt}:s:s"  # type: ignore[attr-defined]
    assert auth.store._guard.timeout == 0.5  # type: ignore[attr-defined]


def test_max_body_bytes_is_a_setting_the_endpoints_obey(make_auth: Factory) -> None:
    from starlette.applications import Starlette
    from starlette.testclient import TestClient

    auth = make_auth(max_body_bytes=64)
    app = Starlette(middleware=[auth.middleware()])
    with TestClient(app) as client:
        answer = client.post("/auth/refresh", json={"refresh_token": "x" * 100})

    assert answer.status_code == 400
    assert answer.json()["error_description"] == "request body larger than 64 bytes"


def test_max_claims_bytes_is_a_setting_logins_obey(make_auth: Factory) -> None:
    auth = make_auth(max_claims_bytes=32)

    with pytest.raises(ValueError, match="claims take more than max_claims_bytes=32 bytes"):
        asyncio.run(auth.sessions.login("alice", {"note": "x" * 40}))
