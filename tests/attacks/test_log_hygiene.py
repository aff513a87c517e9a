"""No raw token in any log line, at any level, during a full session driven through HTTP.

Every log record of every logger is captured at DEBUG while one scenario runs: logins (cookie and
body), protected calls, several refreshes, a grace replay, a reuse after grace (which revokes the
family), session listing and revoke, logout, logout-all, a store outage (503s), and refused access
and refresh tokens (garbage, tampered, expired, the wrong kind). Then no record may contain, in its
formatted message, its raw ``msg``, its ``args``, its exception or stack text or any extra
attribute, any access or refresh token issued or presented during the scenario, nor a JWT signature
segment or a refresh-token MAC part on its own.

The scan can fail: a sanity check requires the logs to carry the fingerprints
(``starlette_refresh.testing.fingerprint``) of refresh tokens that were used, and a meta-test plants raw
tokens, signatures and MACs in log records and requires the scanner to catch each one.

The app runs without its lifespan (see test_attack_catalogue.py): the revocation feed's shutdown
can hang on fakeredis; logins, refreshes and revocations do not depend on it.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

import anyio.from_thread
import fakeredis
import httpx2
import jwt
import pytest
from starlette.testclient import TestClient

from starlette_refresh import TokenAuth
from starlette_refresh.refresh_tokens import RefreshTokenCodec
from starlette_refresh.testing import ManualClock, fingerprint
from tests.apps import SECRET, build_app

BASE_URL = "https://testserver"
ACCESS_TTL = 300
GRACE = 10
MIN_SECRET_CHARS = 16  # shorter strings ("garbage") are not tokens and would match plain words

# Attributes every LogRecord has; anything else on a record came through ``extra=`` and is scanned.
_STANDARD_ATTRIBUTES = set(vars(logging.LogRecord("n", logging.INFO, "p", 1, "m", None, None))) | {
    "message",
    "asctime",
}


# ---------------------------------------------------------------------------------------------
# the scanner
# ---------------------------------------------------------------------------------------------


def record_texts(record: logging.LogRecord) -> list[str]:
    """Everything a handler or formatter could write for ``record``."""
    texts = [str(record.msg), repr(record.args)]
    with contextlib.suppress(TypeError, ValueError, KeyError):  # a bad format: msg and args still go out
        texts.append(record.getMessage())
    if record.args:
        args = record.args.values() if isinstance(record.args, dict) else record.args
        texts.extend(str(arg) for arg in args)
    if record.exc_info:
        texts.append(logging.Formatter().formatException(record.exc_info))
    if record.exc_text:
        texts.append(record.exc_text)
    if record.stack_info:
        texts.append(record.stack_info)
    for name, value in vars(record).items():
        if name not in _STANDARD_ATTRIBUTES:
            texts.append(f"{name}={value!r}")
    return texts


def secret_parts(token: str) -> set[str]:
    """The token itself plus the part that proves it: the JWS signature or the refresh MAC."""
    parts = {token}
    dots = token.count(".")
    if dots in (2, 4):
        parts.add(token.rsplit(".", 1)[1])
    return {part for part in parts if len(part) >= MIN_SECRET_CHARS}


def leaks(records: Iterable[logging.LogRecord], tokens: Iterable[str]) -> list[str]:
    """Every (logger, level, secret, text) where a record carries a secret; empty when clean."""
    secrets = set().union(*(secret_parts(token) for token in tokens)) if tokens else set()
    found = []
    for record in records:
        for text in record_texts(record):
            for secret in secrets:
                if secret in text:
                    found.append(f"{record.name} {record.levelname}: {secret[:20]}... in {text[:200]!r}")
    return found


# ---------------------------------------------------------------------------------------------
# the scenario
# ---------------------------------------------------------------------------------------------


@dataclass
class Session:
    """The app, the clock, and every token that went over the wire."""

    client: TestClient
    clock: ManualClock
    tokens: list[str] = field(default_factory=list)

    def note(self, *tokens: str) -> None:
        self.tokens.extend(token for token in tokens if token)

    def request(self, method: str, path: str, **kwargs: Any) -> httpx2.Response:
        self.client.cookies.clear()
        response = self.client.request(method, path, **kwargs)
        self.client.cookies.clear()
        self.note(*self._tokens_in(response))
        return response

    def _tokens_in(self, response: httpx2.Response) -> list[str]:
        found = [cookie for cookie in [response.cookies.get("refresh_token")] if cookie]
        if response.headers.get("content-type", "").startswith("application/json"):
            body = response.json()
            if isinstance(body, dict):
                found += [body[name] for name in ("access_token", "refresh_token") if name in body]
        return found

    def login(self, transport: str) -> tuple[str, str]:
        response = self.request("POST", "/login", json={"transport": transport})
        assert response.status_code == 200, response.text
        refresh = response.json().get("refresh_token") or response.cookies["refresh_token"]
        return response.json()["access_token"], refresh

    def me(self, access: str) -> int:
        self.note(access)
        return self.request("GET", "/me", headers={"Authorization": f"Bearer {access}"}).status_code

    def refresh_by_cookie(self, refresh: str, expect: int = 200) -> tuple[str, str]:
        self.note(refresh)
        response = self.request("POST", "/auth/refresh", headers={"Cookie": f"refresh_token={refresh}"})
        assert response.status_code == expect, response.text
        if expect != 200:
            return "", ""
        return response.json()["access_token"], response.cookies["refresh_token"]

    def refresh_by_body(self, refresh: str, expect: int = 200) -> tuple[str, str]:
        self.note(refresh)
        response = self.request("POST", "/auth/refresh", json={"refresh_token": refresh})
        assert response.status_code == expect, response.text
        if expect != 200:
            return "", ""
        return response.json()["access_token"], response.json()["refresh_token"]

    def with_bearer(self, method: str, path: str, access: str, **kwargs: Any) -> httpx2.Response:
        self.note(access)
        return self.request(method, path, headers={"Authorization": f"Bearer {access}"}, **kwargs)


@contextlib.contextmanager
def running(auth: TokenAuth, clock: ManualClock) -> Iterator[Session]:
    """The app on one event loop (as in a server), without its lifespan."""
    client = TestClient(build_app(auth), base_url=BASE_URL, raise_server_exceptions=True)
    with anyio.from_thread.start_blocking_portal() as portal:
        client.portal = portal
        try:
            yield Session(client, clock)
        finally:
            client.portal = None


def sid_of(access: str) -> str:
    return str(jwt.decode(access, options={"verify_signature": False})["sid"])


def flip_tail(token: str) -> str:
    index = len(token) - 43
    return token[:index] + ("B" if token[index] == "A" else "A") + token[index + 1 :]


def full_session(s: Session, server: fakeredis.FakeServer) -> dict[str, str]:
    """Drives every kind of request; returns the refresh tokens the sanity check looks for."""
    # logins, both transports, and protected calls
    cookie_access, cookie_refresh = s.login("cookie")
    body_access, body_refresh = s.login("body")
    assert s.me(cookie_access) == 200
    assert s.me(body_access) == 200

    # several refreshes, both transports
    s.clock.advance(30)
    cookie_access2, cookie_refresh2 = s.refresh_by_cookie(cookie_refresh)
    cookie_access3, _ = s.refresh_by_cookie(cookie_refresh2)
    body_access2, body_refresh2 = s.refresh_by_body(body_refresh)
    body_access3, body_refresh3 = s.refresh_by_body(body_refresh2)
    assert s.me(cookie_access3) == 200

    # a grace replay: the same token again within the grace window answers the same new token
    s.clock.advance(2)
    _, replayed = s.refresh_by_body(body_refresh2)
    assert replayed == body_refresh3

    # a reuse after grace: the whole family is revoked
    s.clock.advance(GRACE + 1)
    s.refresh_by_body(body_refresh, expect=400)
    s.refresh_by_body(body_refresh3, expect=400)
    s.refresh_by_cookie(cookie_refresh, expect=400)  # reuse of the cookie family too

    # sessions: list, revoke one, logout (by refresh token, by access token), logout-all
    lister_access, lister_refresh = s.login("body")
    listed = s.with_bearer("GET", "/auth/sessions", lister_access)
    assert listed.status_code == 200
    victim_access, victim_refresh = s.login("cookie")
    revoked = s.with_bearer("DELETE", f"/auth/sessions/{sid_of(victim_access)}", lister_access)
    assert revoked.status_code == 204
    s.refresh_by_cookie(victim_refresh, expect=400)
    s.note(victim_refresh)
    assert s.request("POST", "/auth/logout", json={"refresh_token": lister_refresh}).status_code == 204
    s.note(lister_refresh)
    other_access, _ = s.login("body")
    assert s.with_bearer("POST", "/auth/logout", other_access).status_code == 204
    cookie_logout_access, cookie_logout_refresh = s.login("cookie")
    s.note(cookie_logout_refresh)
    headers = {"Cookie": f"refresh_token={cookie_logout_refresh}"}
    assert s.request("POST", "/auth/logout", headers=headers).status_code == 204
    all_access, _ = s.login("body")
    s.login("cookie")
    assert s.with_bearer("POST", "/auth/logout-all", all_access).status_code == 204

    # a store outage: 503 everywhere the store is needed, then recovery
    outage_access, outage_refresh = s.login("body")
    server.connected = False
    try:
        s.refresh_by_body(outage_refresh, expect=503)
        s.refresh_by_cookie(outage_refresh, expect=503)
        assert s.request("POST", "/login", json={"transport": "body"}).status_code == 503
        assert s.with_bearer("GET", "/auth/sessions", outage_access).status_code == 503
        assert s.with_bearer("POST", "/auth/logout-all", outage_access).status_code == 503
        assert s.request("POST", "/auth/logout", json={"refresh_token": outage_refresh}).status_code == 503
        assert s.me(outage_access) == 200  # access tokens need no store
    finally:
        server.connected = True
    _, recovered_refresh = s.refresh_by_body(outage_refresh)

    # refused tokens: garbage, tampered, forged, the wrong kind, expired, revoked
    forged_refresh = RefreshTokenCodec(SECRET.encode()).mint("0" * 20, "A" * 22, 0)
    for bad in (flip_tail(cookie_access3), cookie_access3[:-10], "x" * 40 + "." + "y" * 40 + ".z"):
        assert s.me(bad) == 401
    assert s.me(recovered_refresh) == 401
    s.refresh_by_body(flip_tail(recovered_refresh), expect=400)
    s.refresh_by_body(forged_refresh, expect=400)
    s.refresh_by_body(outage_access, expect=400)
    s.refresh_by_cookie(flip_tail(recovered_refresh), expect=400)
    assert (
        s.request("POST", "/auth/logout", json={"refresh_token": flip_tail(recovered_refresh)}).status_code
        == 204
    )
    s.note(flip_tail(recovered_refresh), forged_refresh, outage_access, cookie_access3[:-10])
    s.me(victim_access)  # a revoked session's access token (refused once revocation reaches it)
    s.clock.advance(ACCESS_TTL + 60)
    assert s.me(cookie_access2) == 401  # expired
    assert s.me(body_access3) == 401
    s.note(body_access2, cookie_logout_access)
    return {"rotated": cookie_refresh, "reused": body_refresh, "revoked": victim_refresh}


def capture_everything(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    caplog.set_level(logging.DEBUG, logger="starlette_refresh")


def test_no_raw_token_in_any_log_record_of_a_full_session(
    make_auth: Callable[..., TokenAuth],
    clock: ManualClock,
    fake_server: fakeredis.FakeServer,
    caplog: pytest.LogCaptureFixture,
) -> None:
    capture_everything(caplog)
    auth = make_auth(refresh_grace=GRACE)
    with running(auth, clock) as session:
        used = full_session(session, fake_server)
    records = list(caplog.records)

    # The capture really saw the library at every level it logs at.
    library = [r for r in records if r.name.startswith("starlette_refresh")]
    assert any(r.levelno == logging.DEBUG for r in library), "no DEBUG record captured"
    assert any(r.levelno == logging.WARNING for r in library), "no WARNING record (reuse, outage)"
    assert len({t for t in session.tokens if t}) >= 20

    # Sanity: the logs name the tokens the way they should, by fingerprint.
    messages = "\n".join(r.getMessage() for r in library)
    for role, token in used.items():
        assert fingerprint(token) in messages, f"the {role} refresh token's fingerprint is not logged"
    assert "SECURITY" in messages  # the reuse was logged as a security event

    found = leaks(records, session.tokens)
    assert not found, "raw token material in the logs:\n" + "\n".join(found)


# ---------------------------------------------------------------------------------------------
# the scanner can fail
# ---------------------------------------------------------------------------------------------

ACCESS = "eyJhbGciOiJIUzI1NiIsInR5cCI6ImF0K2p3dCJ9.eyJzdWIiOiI0MiJ9.c2lnbmF0dXJlLXNpZ25hdHVyZS1zaWduYXR1cmU"
REFRESH = "srt1.0123456789abcdef0123.AbCdEfGhIjKlMnOpQrSt_-.3.QTyUQqXQoP5G55eG_LZbNjZjJ1lc_n6kunSuvcZe4VE"


def planted(logger: logging.Logger, how: str) -> None:
    if how == "message-arg":
        logger.info("refresh rotated: %s", REFRESH)
    elif how == "inline-msg":
        logger.debug(f"token {ACCESS}")
    elif how == "signature-only":
        logger.warning("bad signature %s", ACCESS.rsplit(".", 1)[1])
    elif how == "mac-only":
        logger.error("mac %s mismatched", REFRESH.rsplit(".", 1)[1])
    elif how == "exception":
        try:
            raise ValueError(f"cannot parse {REFRESH}")
        except ValueError:
            logger.exception("refresh failed")
    elif how == "extra":
        logger.info("refresh failed", extra={"presented": ACCESS})
    else:
        logger.info("refresh %(token)s", {"token": REFRESH})


@pytest.mark.parametrize(
    "how", ["message-arg", "inline-msg", "signature-only", "mac-only", "exception", "extra", "dict-args"]
)
def test_the_scanner_catches_a_planted_token(caplog: pytest.LogCaptureFixture, how: str) -> None:
    capture_everything(caplog)
    planted(logging.getLogger("starlette_refresh.planted"), how)

    assert leaks(caplog.records, [ACCESS, REFRESH])


def test_the_scanner_catches_a_token_only_in_the_args() -> None:
    # A record whose format string drops an argument still hands it to every handler and formatter.
    record = logging.LogRecord(
        "starlette_refresh.x", logging.INFO, __file__, 1, "no placeholder", (ACCESS,), None
    )

    assert leaks([record], [ACCESS])


def test_the_scanner_passes_fingerprints_and_ids(caplog: pytest.LogCaptureFixture) -> None:
    capture_everything(caplog)
    logger = logging.getLogger("starlette_refresh.planted")
    _, tag, sid, generation, _ = REFRESH.split(".")
    logger.info("refresh rotated: session %s gen %s (refresh %s)", sid, generation, fingerprint(REFRESH))
    logger.info("user %s, access %s", tag, fingerprint(ACCESS))

    assert leaks(caplog.records, [ACCESS, REFRESH]) == []


def test_secret_parts_are_the_token_and_its_proof() -> None:
    assert secret_parts(ACCESS) == {ACCESS, ACCESS.rsplit(".", 1)[1]}
    assert secret_parts(REFRESH) == {REFRESH, REFRESH.rsplit(".", 1)[1]}
    assert secret_parts("garbage") == set()
