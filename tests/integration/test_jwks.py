"""Other services verify access tokens from the published JWK Set, with stock libraries and no secret.

Real uvicorn processes (``tests.apps:app_from_env`` with ``SR_KEYS``) on a real redis-server; the
tokens come from a real login and refresh. The verifiers are PyJWT's ``PyJWKClient`` and, in Node,
``jose``'s ``createRemoteJWKSet`` + ``jwtVerify`` (tests/js/jose_verifier.mjs), each fetching
``/auth/jwks.json`` over HTTP. The key rotation of docs/guide.md ("Rotating signing keys") is played
as a rolling deploy over two processes, with both verifiers caching the set throughout.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx2
import jwt
import pytest

from harness.processes import AppServer, RedisServer
from starlette_refresh.access_tokens import AccessTokenCodec
from starlette_refresh.keys import KeyRing, SigningKey
from starlette_refresh.settings import Settings
from tests.integration.helpers import app_env, login, me, refresh
from tests.support.fixtures import AppServerFactory
from tests.unit.test_jwks import private_pem, public_pem

pytestmark = pytest.mark.integration

APP = "tests.apps:app_from_env"
ROOT = Path(__file__).resolve().parents[2]
JOSE_VERIFIER = ROOT / "tests" / "js" / "jose_verifier.mjs"


@dataclass(frozen=True)
class KeyFiles:
    """One key pair on disk, as ``SR_KEYS`` entries: signing (private PEM) or verify-only (public)."""

    kid: str
    algorithm: str
    private: Path
    public: Path

    @classmethod
    def write(cls, folder: Path, kid: str, algorithm: str) -> KeyFiles:
        pem = private_pem(algorithm)
        private, public = folder / f"{kid}.pem", folder / f"{kid}.pub.pem"
        private.write_bytes(pem)
        public.write_bytes(public_pem(pem))
        return cls(kid, algorithm, private, public)

    @property
    def signs(self) -> str:
        return f"{self.kid}:{self.algorithm}:{self.private}"

    @property
    def verifies(self) -> str:
        return f"{self.kid}:{self.algorithm}:{self.public}"

    def sign_elsewhere(self) -> str:
        """A valid access token signed with this key by another service (or a process of an older
        deploy), minted by the library's codec outside the app."""
        key = SigningKey.from_pem(self.private.read_bytes(), kid=self.kid, algorithm=self.algorithm)
        return AccessTokenCodec(KeyRing([key]), Settings(), time.time).issue("elsewhere", "s-1").token


def elsewhere(tmp_path: Path) -> Path:
    """A folder for keys the app never sees."""
    folder = tmp_path / "elsewhere"
    folder.mkdir(exist_ok=True)
    return folder


def ring(*entries: str) -> str:
    """An ``SR_KEYS`` value."""
    return ",".join(entries)


def jwks_url(app: AppServer) -> str:
    return f"{app.url}/auth/jwks.json"


def pyjwt_verify(client: jwt.PyJWKClient, token: str) -> dict[str, Any]:
    """What a Python service does with PyJWT: the key for the token's kid from the (cached) set,
    then the signature and times checked with that key's algorithm only."""
    key = client.get_signing_key_from_jwt(token)
    claims: dict[str, Any] = jwt.decode(token, key, algorithms=[key.algorithm_name])
    return claims


class JoseVerifier:
    """A long-running Node process verifying tokens with ``jose``; one remote key set per URL."""

    def __init__(self, cache_max_age_ms: int | None = None) -> None:
        node = shutil.which("node")
        assert node, "the Node verifier needs node (>= 20) on PATH"
        assert (ROOT / "static" / "node_modules" / "jose").is_dir(), (
            "jose is not installed: run `npm ci` in static/ (tests/run does)"
        )
        argv = [node, str(JOSE_VERIFIER)] + ([str(cache_max_age_ms)] if cache_max_age_ms else [])
        self._process = subprocess.Popen(
            argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, bufsize=1
        )

    def verify(self, url: str, token: str) -> dict[str, Any]:
        assert self._process.stdin is not None
        assert self._process.stdout is not None
        self._process.stdin.write(f"{url}\t{token}\n")
        self._process.stdin.flush()
        line = self._process.stdout.readline()
        assert line, f"the Node verifier died: {self._stderr()}"
        answer: dict[str, Any] = json.loads(line)
        return answer

    def _stderr(self) -> str:
        self._process.kill()
        _, err = self._process.communicate(timeout=5)
        return err

    def close(self) -> None:
        if self._process.stdin is not None:
            self._process.stdin.close()
        try:
            self._process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait()


@pytest.fixture
def jose() -> Iterator[JoseVerifier]:
    verifier = JoseVerifier()
    try:
        yield verifier
    finally:
        verifier.close()


def test_pyjwkclient_verifies_the_tokens_of_a_login_and_a_refresh(
    tmp_path: Path, redis_server: RedisServer, app_server_factory: AppServerFactory
) -> None:
    signing = KeyFiles.write(tmp_path, "es-2025", "ES256")
    verify_only = KeyFiles.write(tmp_path, "rs-2024", "RS256")
    app = app_server_factory(
        APP, app_env(redis_server, SR_KEYS=ring(signing.signs, verify_only.verifies)), factory=True
    )
    issued = login(app)
    refreshed = refresh(app, issued["refresh_token"])
    assert refreshed.status_code == 200, refreshed.text
    client = jwt.PyJWKClient(jwks_url(app))

    for token in (issued["access_token"], refreshed.json()["access_token"]):
        claims = pyjwt_verify(client, token)
        assert claims["sub"] == "42"
        assert jwt.get_unverified_header(token)["kid"] == "es-2025"
    # The verify-only key is published too: a token it signed elsewhere verifies, here and at the app.
    assert pyjwt_verify(client, verify_only.sign_elsewhere())["sub"] == "elsewhere"
    assert me(app, verify_only.sign_elsewhere()).status_code == 200
    # And a token signed with a key that is not published, under a published kid, does not.
    impostor = KeyFiles.write(elsewhere(tmp_path), "es-2025", "ES256").sign_elsewhere()
    with pytest.raises(jwt.InvalidSignatureError):
        pyjwt_verify(client, impostor)


def test_jose_in_node_verifies_the_tokens_of_a_login_behind_a_root_path(
    tmp_path: Path, redis_server: RedisServer, app_server_factory: AppServerFactory, jose: JoseVerifier
) -> None:
    """uvicorn ``--root-path /api``, as behind a proxy that strips ``/api``: the set is answered on its
    route path, and the tokens verify in another language's stock library."""
    signing = KeyFiles.write(tmp_path, "ed-2025", "EdDSA")
    verify_only = KeyFiles.write(tmp_path, "ps-2024", "PS256")
    app = app_server_factory(
        APP,
        app_env(redis_server, SR_KEYS=ring(signing.signs, verify_only.verifies)),
        factory=True,
        extra_args=["--root-path", "/api"],
    )
    issued = login(app)
    refreshed = refresh(app, issued["refresh_token"])
    assert refreshed.status_code == 200, refreshed.text
    published = httpx2.get(jwks_url(app), timeout=10)
    assert published.headers["cache-control"].startswith("public, max-age=")
    assert [key["kid"] for key in published.json()["keys"]] == ["ed-2025", "ps-2024"]

    for token in (issued["access_token"], refreshed.json()["access_token"]):
        verified = jose.verify(jwks_url(app), token)
        assert verified == {"ok": True, "sub": "42", "kid": "ed-2025", "alg": "EdDSA"}
    assert jose.verify(jwks_url(app), verify_only.sign_elsewhere())["ok"] is True
    impostor = KeyFiles.write(elsewhere(tmp_path), "ed-2025", "EdDSA").sign_elsewhere()
    assert jose.verify(jwks_url(app), impostor)["code"] == "ERR_JWS_SIGNATURE_VERIFICATION_FAILED"
    # The refresh token is no JWT that a verifier could mistake for an access token.
    assert jose.verify(jwks_url(app), issued["refresh_token"])["ok"] is False


# --- key rotation -----------------------------------------------------------------------------------

ACCESS_TTL = 8
LEEWAY = 1
#: Stands in for the set's ``max-age`` (300 s in production): how long both verifiers cache it.
CACHE_SECONDS = 2.0


class Rotation:
    """One client session across two app processes, and every access token it was ever given.

    ``check`` is the promise: each of those tokens still valid is accepted by both processes and by
    both verifiers, fetching each process's published set through their caches.
    """

    def __init__(self, apps: list[AppServer], jose: JoseVerifier) -> None:
        self.apps = apps
        self.jose = jose
        self.pyjwk = {app.url: jwt.PyJWKClient(jwks_url(app), lifespan=CACHE_SECONDS) for app in apps}
        issued = login(apps[0])
        self.refresh_token: str = issued["refresh_token"]
        self.held: list[str] = [issued["access_token"]]
        self.checked: list[tuple[str, set[str]]] = []

    def mint(self, app: AppServer) -> str:
        """Refreshes on ``app``; returns the kid that signed the new access token."""
        answer = refresh(app, self.refresh_token)
        assert answer.status_code == 200, answer.text
        self.refresh_token = answer.json()["refresh_token"]
        self.held.append(answer.json()["access_token"])
        kid: str = jwt.get_unverified_header(self.held[-1])["kid"]
        return kid

    def check(self, stage: str) -> None:
        now = time.time()
        live = [t for t in self.held if jwt.decode(t, options={"verify_signature": False})["exp"] > now + 0.5]
        for token in live:
            kid = jwt.get_unverified_header(token)["kid"]
            for app in self.apps:
                where = f"{stage}: a valid {kid} token at {app.url}"
                assert me(app, token).status_code == 200, f"{where}: refused by the app"
                assert pyjwt_verify(self.pyjwk[app.url], token)["sub"] == "42", where
                assert self.jose.verify(jwks_url(app), token)["ok"] is True, f"{where}: refused by jose"
        self.checked.append((stage, {jwt.get_unverified_header(t)["kid"] for t in live}))

    def deploy(self, keys: str, stage: str) -> list[str]:
        """A rolling deploy of ``keys``: one process after the other, each restarted, then used to
        refresh, then every valid token checked everywhere. Returns the kids that signed meanwhile."""
        kids = []
        for number, app in enumerate(self.apps, 1):
            app.env["SR_KEYS"] = keys
            app.restart()
            kids.append(self.mint(app))
            self.check(f"{stage}, process {number} of {len(self.apps)} deployed")
        return kids

    def published(self) -> list[list[str]]:
        sets = [httpx2.get(jwks_url(app), timeout=10).json() for app in self.apps]
        return [[key["kid"] for key in published["keys"]] for published in sets]

    def last_expiry(self, kid: str) -> float:
        return max(
            float(jwt.decode(t, options={"verify_signature": False})["exp"])
            for t in self.held
            if jwt.get_unverified_header(t)["kid"] == kid
        )


def test_a_key_rotation_refuses_no_valid_token_at_any_process_or_verifier(
    tmp_path: Path, redis_server: RedisServer, app_server_factory: AppServerFactory
) -> None:
    """The recipe of docs/guide.md, "Rotating signing keys", as a rolling deploy over two processes:

    1. publish B: every process gets A signing, B verify-only; wait the set's max-age;
    2. B signs: every process gets B signing, A verify-only; wait until A's last token has expired
       (access_ttl + leeway after the last process stopped signing with A);
    3. remove A.

    Mid-deploy in step 2 one process signs with B while the other still has the ring of step 1: it
    accepts B's tokens because step 1 taught it B. Skip step 1 and the test fails there (the app
    answers 401), which is the point of the step; a verifier that had cached a set without B and
    cannot refetch yet (both verifiers refetch for an unknown kid at most once per cooldown) is what
    the wait is for.
    """
    a = KeyFiles.write(tmp_path, "key-a", "ES256")
    b = KeyFiles.write(tmp_path, "key-b", "EdDSA")
    env = app_env(redis_server, SR_ACCESS_TTL=str(ACCESS_TTL), SR_LEEWAY=str(LEEWAY), SR_KEYS=ring(a.signs))
    apps = [app_server_factory(APP, env, factory=True) for _ in range(2)]
    jose = JoseVerifier(cache_max_age_ms=int(CACHE_SECONDS * 1000))
    try:
        rotation = Rotation(apps, jose)
        started = time.monotonic()
        assert [rotation.mint(app) for app in apps] == ["key-a", "key-a"]
        rotation.check("before")

        assert rotation.deploy(ring(a.signs, b.verifies), "1. publish B") == ["key-a", "key-a"]
        assert rotation.published() == [["key-a", "key-b"]] * 2
        time.sleep(CACHE_SECONDS)
        # The client keeps refreshing meanwhile: it holds a fresh token of A as step 2 begins.
        assert rotation.mint(apps[-1]) == "key-a"

        assert rotation.deploy(ring(b.signs, a.verifies), "2. B signs") == ["key-b", "key-b"]
        assert rotation.published() == [["key-b", "key-a"]] * 2
        mid_deploy = dict(rotation.checked)["2. B signs, process 1 of 2 deployed"]
        assert mid_deploy == {"key-a", "key-b"}, "both keys' tokens were live and checked mid-deploy"
        time.sleep(max(0.0, rotation.last_expiry("key-a") + LEEWAY - time.time()))

        assert rotation.deploy(ring(b.signs), "3. remove A") == ["key-b", "key-b"]
        assert rotation.published() == [["key-b"]] * 2
        elapsed = time.monotonic() - started
    finally:
        jose.close()
    print(f"rotation: {len(rotation.held)} tokens, {len(rotation.checked)} checks, {elapsed:.1f} s")
