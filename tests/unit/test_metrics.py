"""Observability: Prometheus counters and store timings through ``TokenAuth(observer=...)``, the
structured ``extra`` fields of the decision log lines, and the core's independence from
prometheus_client.

Everything runs in-process on fakeredis and the manual clock; ``fake_server.connected = False``
emulates a Redis outage.
"""

from __future__ import annotations

import ast
import asyncio
import contextlib
import importlib
import logging
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import fakeredis
import jwt
import pytest
from prometheus_client import CollectorRegistry
from redis import exceptions as redis_errors
from starlette.testclient import TestClient

import starlette_refresh
from starlette_refresh import TokenAuth
from starlette_refresh.observe import REFRESH_OUTCOMES, REVOCATION_KINDS, SOCKET_EVENTS, NullObserver
from starlette_refresh.prometheus import PrometheusMetrics
from starlette_refresh.sockets import RENEW_PREFIX, SOCKET_PROTOCOL, TOKEN_PROTOCOL_PREFIX
from starlette_refresh.store import RedisStore
from starlette_refresh.testing import ManualClock, fingerprint
from tests.apps import build_app

BASE_URL = "https://testserver"
GRACE = 10
REFRESH_TTL = 3600
NS = "starlette_refresh"

MakeAuth = Callable[..., TokenAuth]


# ---------------------------------------------------------------------------------------------
# fixtures and helpers
# ---------------------------------------------------------------------------------------------


@pytest.fixture
def registry() -> CollectorRegistry:
    return CollectorRegistry()


@pytest.fixture
def metrics(registry: CollectorRegistry) -> PrometheusMetrics:
    return PrometheusMetrics(registry=registry)


@pytest.fixture
def make_client(make_auth: MakeAuth, metrics: PrometheusMetrics) -> Iterator[Callable[..., TestClient]]:
    """One TestClient (lifespan running) for a TokenAuth reporting to ``metrics``; once per test, as
    the fakeredis client's connections belong to the first client's event loop."""
    with contextlib.ExitStack() as stack:

        def make(**overrides: Any) -> TestClient:
            app = build_app(make_auth(observer=metrics, **overrides))
            return stack.enter_context(TestClient(app, base_url=BASE_URL))

        yield make


def login(client: TestClient, subject: str = "42") -> tuple[str, str]:
    """Logs in with the refresh token in the body; returns (access token, refresh token)."""
    response = client.post("/login", json={"subject": subject, "transport": "body"})
    assert response.status_code == 200, response.text
    body = response.json()
    return body["access_token"], body["refresh_token"]


def refresh(client: TestClient, refresh_token: str, expect: int = 200) -> str:
    """Refreshes by body; returns the new refresh token (or "" when refused)."""
    response = client.post("/auth/refresh", json={"refresh_token": refresh_token})
    assert response.status_code == expect, response.text
    return str(response.json().get("refresh_token", "")) if expect == 200 else ""


def bearer(access_token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {access_token}"}


def sid_of(access_token: str) -> str:
    return str(jwt.decode(access_token, options={"verify_signature": False})["sid"])


def sample(registry: CollectorRegistry, name: str, **labels: str) -> float | None:
    return registry.get_sample_value(f"{NS}_{name}", labels)


def refreshes(registry: CollectorRegistry) -> dict[str, float | None]:
    return {outcome: sample(registry, "refreshes_total", outcome=outcome) for outcome in REFRESH_OUTCOMES}


def revocations(registry: CollectorRegistry) -> dict[str, float | None]:
    return {kind: sample(registry, "revocations_total", kind=kind) for kind in REVOCATION_KINDS}


def websocket_events(registry: CollectorRegistry) -> dict[str, float | None]:
    return {event: sample(registry, "websocket_events_total", event=event) for event in SOCKET_EVENTS}


# ---------------------------------------------------------------------------------------------
# counters
# ---------------------------------------------------------------------------------------------


def test_every_outcome_and_kind_starts_at_zero(
    registry: CollectorRegistry, metrics: PrometheusMetrics
) -> None:
    assert sample(registry, "logins_total") == 0.0
    assert set(refreshes(registry).values()) == {0.0}
    assert set(revocations(registry).values()) == {0.0}
    assert set(REFRESH_OUTCOMES) == {
        "rotated",
        "grace",
        "reused",
        "expired",
        "revoked",
        "invalid",
        "unavailable",
    }
    assert set(REVOCATION_KINDS) == {"logout", "logout_all", "session_revoke", "reuse", "evicted"}


def test_refresh_outcomes_are_counted_exactly(
    make_client: Callable[..., TestClient],
    registry: CollectorRegistry,
    clock: ManualClock,
    fake_server: fakeredis.FakeServer,
) -> None:
    client = make_client()

    _, first = login(client)
    second = refresh(client, first)  # rotated
    assert refresh(client, first) == second  # the same answer within the grace window
    clock.advance(GRACE + 1)
    refresh(client, first, expect=400)  # reused after the grace window: the session is revoked
    refresh(client, second, expect=400)  # revoked (this process knows the revocation)

    _, idle = login(client)
    clock.advance(REFRESH_TTL + 1)
    refresh(client, idle, expect=400)  # expired: idle lifetime over

    _, lost = login(client)
    fakeredis.FakeRedis(server=fake_server).flushall()
    refresh(client, lost, expect=400)  # the record is gone from Redis: counted as revoked

    refresh(client, "srt1.not-a-real-token", expect=400)  # invalid

    _, during_outage = login(client)
    fake_server.connected = False
    try:
        refresh(client, during_outage, expect=503)
    finally:
        fake_server.connected = True
    refresh(client, during_outage)  # the outage ended nothing

    assert refreshes(registry) == {
        "rotated": 2.0,
        "grace": 1.0,
        "reused": 1.0,
        "expired": 1.0,
        "revoked": 2.0,
        "invalid": 1.0,
        "unavailable": 1.0,
    }
    assert sample(registry, "logins_total") == 4.0
    assert revocations(registry) == {
        "logout": 0.0,
        "logout_all": 0.0,
        "session_revoke": 0.0,
        "reuse": 1.0,
        "evicted": 0.0,
    }

    # rotate reached Redis for: rotated, grace, reused, expired, missing, rotated after the outage
    rotate_ok = sample(registry, "store_operation_seconds_count", operation="rotate", outcome="ok")
    assert rotate_ok == 6.0
    in_top_bucket = sample(
        registry, "store_operation_seconds_bucket", operation="rotate", outcome="ok", le="2.5"
    )
    assert in_top_bucket == 6.0
    assert (sample(registry, "store_operation_seconds_sum", operation="rotate", outcome="ok") or 0) > 0
    assert sample(registry, "store_operation_seconds_count", operation="rotate", outcome="unavailable") == 1.0
    assert sample(registry, "store_operation_seconds_count", operation="create", outcome="ok") == 4.0


def test_revocations_are_counted_by_kind_in_sessions(
    make_client: Callable[..., TestClient], registry: CollectorRegistry
) -> None:
    client = make_client(max_sessions_per_user=3)

    _, one = login(client)
    assert client.post("/auth/logout", json={"refresh_token": one}).status_code == 204
    _, two = login(client)
    for _ in range(2):  # idempotent: the second logout ends nothing and counts nothing
        assert client.post("/auth/logout", json={"refresh_token": two}).status_code == 204
    access, _ = login(client)
    assert client.post("/auth/logout", headers=bearer(access)).status_code == 204  # by access token

    first, _ = login(client, "7")
    second, _ = login(client, "7")
    login(client, "7")
    gone = sid_of(first)
    assert client.delete(f"/auth/sessions/{gone}", headers=bearer(second)).status_code == 204
    assert client.delete(f"/auth/sessions/{gone}", headers=bearer(second)).status_code == 404
    assert client.post("/auth/logout-all", headers=bearer(second)).status_code == 204  # two left

    for _ in range(4):  # one over max_sessions_per_user
        login(client, "8")

    assert revocations(registry) == {
        "logout": 3.0,
        "logout_all": 2.0,
        "session_revoke": 1.0,
        "reuse": 0.0,
        "evicted": 1.0,
    }
    assert sample(registry, "logins_total") == 10.0
    assert set(refreshes(registry).values()) == {0.0}


def test_a_login_during_an_outage_is_not_counted(
    make_client: Callable[..., TestClient], registry: CollectorRegistry, fake_server: fakeredis.FakeServer
) -> None:
    client = make_client()
    fake_server.connected = False
    try:
        assert client.post("/login", json={"transport": "body"}).status_code == 503
    finally:
        fake_server.connected = True
    assert sample(registry, "logins_total") == 0.0
    assert sample(registry, "store_operation_seconds_count", operation="create", outcome="unavailable") == 1.0


class _RefusingClient:
    """Answers TIME, then refuses the script with an error that is a bug, not an outage."""

    async def time(self) -> Any:
        return (1_800_000_000, 0)

    async def evalsha(self, *args: Any) -> Any:
        raise redis_errors.ResponseError("ERR user_script:3: Script attempted to access a non local key")


def test_a_store_error_that_is_not_an_outage_is_timed_as_error(
    registry: CollectorRegistry, metrics: PrometheusMetrics
) -> None:
    store = RedisStore(_RefusingClient(), observer=metrics)
    with pytest.raises(redis_errors.ResponseError):
        asyncio.run(store.rotate("0" * 20, "s" * 22, 0, 0, 10_000, 60_000))
    assert sample(registry, "store_operation_seconds_count", operation="rotate", outcome="error") == 1.0
    assert sample(registry, "store_operation_seconds_count", operation="rotate", outcome="ok") is None


def test_a_second_instance_on_one_registry_is_refused(registry: CollectorRegistry) -> None:
    PrometheusMetrics(registry=registry)
    with pytest.raises(ValueError, match="Duplicated"):
        PrometheusMetrics(registry=registry)
    other = PrometheusMetrics(registry=registry, namespace="api_auth")
    other.login()
    assert registry.get_sample_value("api_auth_logins_total") == 1.0


# ---------------------------------------------------------------------------------------------
# structured log fields
# ---------------------------------------------------------------------------------------------


def test_decision_log_lines_carry_structured_fields_and_no_token(
    make_client: Callable[..., TestClient], clock: ManualClock, caplog: pytest.LogCaptureFixture
) -> None:
    client = make_client()
    caplog.set_level(logging.INFO, logger="starlette_refresh")

    access, first = login(client)
    sid = sid_of(access)
    second = refresh(client, first)
    clock.advance(GRACE + 1)
    refresh(client, first, expect=400)
    refresh(client, "srt1.garbage-but-long-enough-to-matter", expect=400)
    tokens = {access, first, second, "srt1.garbage-but-long-enough-to-matter"}
    macs = {t.rsplit(".", 1)[1] for t in (access, first, second)}

    structured = [r for r in caplog.records if hasattr(r, "sr_event")]
    by_event: dict[tuple[str, str | None], logging.LogRecord] = {
        (r.sr_event, getattr(r, "sr_outcome", None)): r for r in structured
    }

    created = by_event[("login", None)]
    assert created.getMessage().startswith(f"login: new session {sid} for user ")
    assert (created.sr_session, created.sr_generation, created.sr_fingerprint) == (sid, 0, fingerprint(first))
    assert len(created.sr_user) == 20

    rotated = by_event[("refresh", "rotated")]
    assert rotated.getMessage().startswith(f"refresh rotated: session {sid} gen 0 ")
    assert rotated.sr_session == sid
    assert rotated.sr_fingerprint == fingerprint(first)
    assert rotated.sr_user == created.sr_user

    reused = by_event[("refresh", "reused")]
    assert reused.levelno == logging.WARNING
    assert reused.getMessage().startswith("SECURITY refresh token reuse detected: ")
    assert reused.sr_session == sid

    announced = by_event[("revocation_announced", None)]
    assert announced.sr_sessions == [sid]

    invalid = by_event[("refresh", "invalid")]
    assert invalid.sr_fingerprint == fingerprint("srt1.garbage-but-long-enough-to-matter")

    for record in structured:
        fields = {name: value for name, value in vars(record).items() if name.startswith("sr_")}
        text = repr(fields)
        leaked = [secret for secret in tokens | macs if secret in text]
        assert not leaked, f"{record.getMessage()!r} carries a token in {fields}"


def test_store_outage_lines_name_the_operation(
    make_client: Callable[..., TestClient],
    fake_server: fakeredis.FakeServer,
    caplog: pytest.LogCaptureFixture,
) -> None:
    client = make_client()
    _, token = login(client)
    caplog.set_level(logging.INFO, logger="starlette_refresh")
    fake_server.connected = False
    try:
        refresh(client, token, expect=503)
    finally:
        fake_server.connected = True
    store = [r for r in caplog.records if getattr(r, "sr_event", None) == "store"]
    assert any(r.sr_operation == "rotate" and r.sr_outcome == "unavailable" for r in store)
    answered = [r for r in caplog.records if getattr(r, "sr_event", None) == "unavailable"]
    assert [r.sr_path for r in answered] == ["/auth/refresh"]


# ---------------------------------------------------------------------------------------------
# wiring and independence from prometheus_client
# ---------------------------------------------------------------------------------------------


def test_null_observer_is_the_default(make_auth: MakeAuth, metrics: PrometheusMetrics) -> None:
    auth = make_auth()
    assert isinstance(auth.observer, NullObserver)
    assert isinstance(auth.sessions.observer, NullObserver)
    observed = make_auth(observer=metrics)
    assert observed.observer is metrics
    assert observed.sessions.observer is metrics


def test_the_core_does_not_import_prometheus_client() -> None:
    probe = (
        "import sys, starlette_refresh, starlette_refresh.observe; "
        "print('prometheus_client' in sys.modules, 'starlette_refresh.prometheus' in sys.modules)"
    )
    answer = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, timeout=60
    )
    assert answer.stdout.split() == ["False", "False"]


def imports_of(source: Path) -> set[str]:
    """Every module name ``source`` imports, relative imports resolved (the package is flat)."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(source.read_text(), str(source))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = f"starlette_refresh.{base}".rstrip(".")
            names.add(base)
            names.update(f"{base}.{alias.name}" for alias in node.names)
    return names


def test_only_the_prometheus_module_imports_prometheus_client_and_nothing_imports_it() -> None:
    package = Path(starlette_refresh.__file__).parent
    imports = {source.name: imports_of(source) for source in package.rglob("*.py")}
    assert {
        name
        for name, modules in imports.items()
        if any(m.split(".")[0] == "prometheus_client" for m in modules)
    } == {"prometheus.py"}
    assert {name for name, modules in imports.items() if "starlette_refresh.prometheus" in modules} == set()


def test_the_prometheus_module_says_which_extra_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "prometheus_client", None)  # makes its import fail
    monkeypatch.delitem(sys.modules, "starlette_refresh.prometheus")
    with pytest.raises(ImportError, match=r'pip install "starlette-refresh\[prometheus\]"'):
        importlib.import_module("starlette_refresh.prometheus")


def test_websocket_events_and_the_open_sockets_gauge(
    make_client: Callable[..., TestClient], registry: CollectorRegistry, clock: ManualClock
) -> None:
    client = make_client(access_ttl=300, leeway=0)
    assert websocket_events(registry) == dict.fromkeys(SOCKET_EVENTS, 0.0)
    assert sample(registry, "websockets_open") == 0.0
    (renewing, renewing_refresh), (revoked, _), (expiring, _) = login(client), login(client), login(client)

    def protocols(token: str) -> list[str]:
        return [SOCKET_PROTOCOL, TOKEN_PROTOCOL_PREFIX + token]

    with (
        client.websocket_connect("/ws/echo", subprotocols=protocols(renewing)) as a,
        client.websocket_connect("/ws/echo", headers=bearer(revoked)) as b,
        client.websocket_connect("/ws/echo", subprotocols=protocols(expiring)) as c,
    ):
        for ws in (a, b, c):
            ws.receive_json()
        assert sample(registry, "websockets_open") == 3.0
        renewed = client.post("/auth/refresh", json={"refresh_token": renewing_refresh})
        a.send_text(RENEW_PREFIX + renewed.json()["access_token"])
        assert a.receive_text().startswith("starlette-refresh.renewed ")
        a.send_text(RENEW_PREFIX + "not-a-token")
        assert a.receive()["reason"] == "renewal refused"
        assert client.post("/auth/logout", headers=bearer(revoked)).status_code == 204
        assert b.receive()["reason"] == "session revoked"
        clock.advance(300)  # the third token's end (the first was renewed, the second is gone)
        assert c.receive()["reason"] == "token expired"
    assert websocket_events(registry) == {
        "opened": 3.0,
        "renewed": 1.0,
        "renewal_refused": 1.0,
        "expired": 1.0,
        "revoked": 1.0,
        "ended": 3.0,
    }
    assert sample(registry, "websockets_open") == 0.0
