"""The verified-token cache: every answer the middleware gives from it equals the full check's.

The cache adds states a token can be in (remembered, remembered but past its window, evicted). The
tests below drive the real middleware as a raw ASGI app, with a manual clock, and compare an app that
remembers headers with one that does not (``access_cache_size=0``). They share the clock and the
secret, and every revocation goes to both. The last test runs random sequences of requests, clock
moves (forward and back, landing on the window's edges), revocations and evictions, and requires the
same status and body at every step.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import Any

import fakeredis
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from starlette_refresh import TokenAuth
from starlette_refresh.revocations import entry_for
from starlette_refresh.testing import ManualClock
from starlette_refresh.token_cache import VerifiedTokens
from tests.apps import SECRET

ACCESS_TTL = 300
LEEWAY = 10
START = 1_800_000_000.0
Answer = tuple[int, Any]


class Service:
    """A one-route app behind the middleware, called without a server."""

    def __init__(self, clock: ManualClock, cache_size: int) -> None:
        self.auth = TokenAuth(
            secret_key=SECRET,
            redis=fakeredis.aioredis.FakeRedis(server=fakeredis.FakeServer()),  # never used by /me
            clock=clock,
            access_ttl=ACCESS_TTL,
            leeway=LEEWAY,
            access_cache_size=cache_size,
        )

        async def me(request: Request) -> JSONResponse:
            return JSONResponse({"sub": request.user.identity, "claims": dict(request.user.claims)})

        self.app = Starlette(routes=[Route("/me", me)], middleware=[self.auth.middleware()])
        self.full_checks = 0
        verify = self.auth.access.verify

        def counting(token: str) -> Any:
            self.full_checks += 1
            return verify(token)

        self.auth.access.verify = counting  # type: ignore[method-assign]

    def get(self, token: str) -> Answer:
        return asyncio.run(self._get([(b"authorization", f"Bearer {token}".encode())]))

    async def _get(self, headers: list[tuple[bytes, bytes]]) -> Answer:
        scope = {
            "type": "http", "http_version": "1.1", "method": "GET", "scheme": "http", "path": "/me",
            "raw_path": b"/me", "root_path": "", "query_string": b"", "headers": headers,
            "server": ("test", 80), "client": ("test", 1),
        }  # fmt: skip
        sent: list[dict[str, Any]] = []

        async def receive() -> dict[str, Any]:
            return {"type": "http.request", "body": b"", "more_body": False}

        async def send(message: dict[str, Any]) -> None:
            sent.append(message)

        await self.app(scope, receive, send)
        body = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
        return sent[0]["status"], json.loads(body)

    def revoke(self, session_id: str) -> None:
        self.auth.revocations.add([entry_for("t" * 20, session_id)], self.auth.clock() + ACCESS_TTL + LEEWAY)


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(START)


@pytest.fixture
def service(clock: ManualClock) -> Service:
    return Service(clock, cache_size=100)


def issue(service: Service, subject: str = "ana", session_id: str = "S" * 22, **claims: Any) -> str:
    return service.auth.access.issue(subject, session_id, claims).token


def test_a_second_request_is_answered_from_the_cache(service: Service) -> None:
    token = issue(service)

    assert service.get(token)[0] == 200
    assert service.get(token)[0] == 200
    assert service.full_checks == 1


def test_a_cached_token_expires_exactly_when_an_uncached_one_does(
    service: Service, clock: ManualClock
) -> None:
    token = issue(service)
    service.get(token)

    clock.advance(ACCESS_TTL + LEEWAY - 0.001)
    assert service.get(token)[0] == 200
    clock.advance(0.001)
    assert service.get(token) == (401, {"error": "invalid_token", "error_description": "token expired"})


def test_a_clock_that_goes_back_before_the_tokens_issue_takes_the_full_path(
    service: Service, clock: ManualClock
) -> None:
    token = issue(service)
    service.get(token)

    clock.now = START - LEEWAY - 1

    assert service.get(token)[1]["error_description"] == "token issued in the future"


def test_a_tampered_copy_of_a_cached_token_is_not_a_hit(service: Service) -> None:
    token = issue(service)
    service.get(token)
    signature = token.rsplit(".", 1)[1]
    tampered = token[: -len(signature)] + ("A" if signature[0] != "A" else "B") + signature[1:]

    assert service.get(tampered)[1]["error_description"] == "signature verification failed"


def test_invalid_tokens_are_never_remembered(service: Service) -> None:
    for garbage in ("x.y.z", "a" * 100, issue(service) + "x"):
        assert service.get(garbage)[0] == 401
        assert service.get(garbage)[0] == 401
    assert service.full_checks == 6


def test_the_cache_is_bounded_and_evicted_tokens_still_verify(clock: ManualClock) -> None:
    service = Service(clock, cache_size=8)
    tokens = [issue(service, f"user-{i}") for i in range(20)]
    for token in tokens:
        service.get(token)

    assert service.get(tokens[-1])[0] == 200
    assert service.full_checks == 20  # the newest eight are remembered
    assert service.get(tokens[0])[1]["sub"] == "user-0"  # evicted long ago: the full path answers
    assert service.full_checks == 21


def test_cached_claims_cannot_be_changed_by_the_app(service: Service) -> None:
    token = issue(service, role="reader")
    principal_claims = service.auth.access.verify(token)

    with pytest.raises(TypeError):
        principal_claims["role"] = "admin"  # type: ignore[index]
    assert service.get(token)[1]["claims"]["role"] == "reader"


def test_cache_size_zero_turns_it_off(clock: ManualClock) -> None:
    service = Service(clock, cache_size=0)
    token = issue(service)

    for _ in range(3):
        assert service.get(token)[0] == 200
    assert service.full_checks == 3


def test_verified_tokens_keeps_the_window_it_was_given(clock: ManualClock) -> None:
    cache: VerifiedTokens[str, dict[str, str]] = VerifiedTokens(2, clock)
    cache.remember("t", {"sub": "a"}, START - 1, START + 1)

    assert cache.get("t") == {"sub": "a"}
    clock.now = START - 1.001
    assert cache.get("t") is None  # before its window: dropped
    assert cache.get("unknown") is None


# Steps that land near the edges of a window (expiry, issue time, the leeway), and anything else.
EDGES = [ACCESS_TTL + LEEWAY, ACCESS_TTL - LEEWAY, LEEWAY, -LEEWAY, ACCESS_TTL, 1.0]
ADVANCES = st.one_of(
    st.sampled_from(EDGES + [-edge for edge in EDGES]).flatmap(
        lambda edge: st.sampled_from([edge - 0.001, edge, edge + 0.001, edge / 2])
    ),
    st.floats(-400, 400, allow_nan=False),
)
STEPS = st.lists(
    st.one_of(
        st.tuples(st.just("request"), st.integers(0, 5)),
        st.tuples(st.just("advance"), ADVANCES),
        st.tuples(st.just("revoke"), st.integers(0, 2)),
        st.tuples(st.just("issue"), st.integers(0, 2)),
    ),
    max_size=40,
)


@settings(max_examples=200, deadline=None)
@given(steps=STEPS)
@example(steps=[("request", 0), ("advance", ACCESS_TTL + LEEWAY), ("request", 0)])
@example(steps=[("request", 0), ("advance", ACCESS_TTL + LEEWAY - 0.001), ("request", 0)])
@example(steps=[("request", 0), ("advance", -LEEWAY - 0.001), ("request", 0)])
@example(steps=[("request", 0), ("advance", -LEEWAY), ("request", 0)])
@example(
    steps=[("request", 1), ("revoke", 1), ("request", 1), ("advance", ACCESS_TTL + LEEWAY), ("request", 1)]
)
def test_the_cache_never_changes_a_verdict(steps: list[tuple[str, Any]]) -> None:
    clock = ManualClock(START)
    cached, uncached = Service(clock, cache_size=3), Service(clock, cache_size=0)
    sessions = ["A" * 22, "B" * 22, "C" * 22]
    mint: Callable[[int], str] = lambda i: issue(cached, f"user-{i % 3}", sessions[i % 3])  # noqa: E731
    tokens = [mint(i) for i in range(3)]
    for action, value in steps:
        if action == "request":
            token = tokens[value % len(tokens)]
            assert cached.get(token) == uncached.get(token)
        elif action == "advance":
            clock.now += value
        elif action == "revoke":
            cached.revoke(sessions[value])
            uncached.revoke(sessions[value])
        else:
            tokens.append(mint(value))
