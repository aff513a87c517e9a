"""``rediss://`` against a real TLS-only redis-server, and passwords and ACL users in the URL.

A certificate authority and a server certificate for 127.0.0.1 are made for each test run. A
client that cannot verify the server, or whose credentials are wrong, must stop the app at startup
with a message that says so (and never shows the password), not serve without its store.
"""

from __future__ import annotations

import datetime
import ipaddress
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from harness.processes import AppServer, free_port
from tests.integration.helpers import login, me, refresh
from tests.support.fixtures import AppServerFactory, RedisServerFactory

pytestmark = pytest.mark.integration

APP = "tests.apps:app_from_env"


def _write_key(path: Path, key: ec.EllipticCurvePrivateKey) -> None:
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )


def make_certificates(folder: Path) -> dict[str, Path]:
    """A CA and a server certificate for 127.0.0.1 signed by it, as PEM files."""
    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "starlette-refresh test CA")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    server_key = ec.generate_private_key(ec.SECP256R1())
    server = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")]))
        .issuer_name(ca_name)
        .public_key(server_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost")]
            ),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )
    folder.mkdir(parents=True, exist_ok=True)
    paths = {name: folder / f"{name}.pem" for name in ("ca", "cert", "key")}
    paths["ca"].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    paths["cert"].write_bytes(server.public_bytes(serialization.Encoding.PEM))
    _write_key(paths["key"], server_key)
    return paths


@pytest.fixture
def tls_redis(redis_server_factory: RedisServerFactory, tmp_path: Path) -> tuple[int, dict[str, Path]]:
    """A redis-server with a TLS port (its plain port serves only the harness); returns the TLS port
    and the PEM files."""
    certificates = make_certificates(tmp_path / "pki")
    tls_port = free_port()
    server = redis_server_factory(
        extra_args=[
            "--tls-port", str(tls_port),
            "--tls-cert-file", str(certificates["cert"]),
            "--tls-key-file", str(certificates["key"]),
            "--tls-ca-cert-file", str(certificates["ca"]),
            "--tls-auth-clients", "no",
        ],
    )  # fmt: skip
    assert server.running
    return tls_port, certificates


def start(factory: AppServerFactory, url: str, *, wait: bool = True) -> AppServer:
    return factory(APP, {"SR_REDIS_URL": url}, factory=True, wait=wait)


def assert_sessions_work(app: AppServer) -> None:
    issued = login(app)
    rotated = refresh(app, issued["refresh_token"])
    assert rotated.status_code == 200
    assert me(app, rotated.json()["access_token"]).status_code == 200


def assert_refuses_to_start(app: AppServer, *expected: str) -> str:
    assert app.wait_exit(timeout=20) != 0
    log = app.log_text()
    assert "cannot reach its session store" in log
    for text in expected:
        assert text in log, log[-2000:]
    return log


def test_rediss_with_the_servers_ca_serves_sessions(
    tls_redis: tuple[int, dict[str, Path]], app_server_factory: AppServerFactory
) -> None:
    port, certificates = tls_redis
    app = start(app_server_factory, f"rediss://127.0.0.1:{port}/0?ssl_ca_certs={certificates['ca']}")

    assert_sessions_work(app)


def test_rediss_that_cannot_verify_the_server_refuses_to_start(
    tls_redis: tuple[int, dict[str, Path]], app_server_factory: AppServerFactory
) -> None:
    port, _ = tls_redis
    app = start(app_server_factory, f"rediss://127.0.0.1:{port}/0", wait=False)

    assert_refuses_to_start(app, "certificate verify failed")


def test_plain_redis_url_against_a_tls_port_refuses_to_start(
    tls_redis: tuple[int, dict[str, Path]], app_server_factory: AppServerFactory
) -> None:
    port, _ = tls_redis
    app = start(app_server_factory, f"redis://127.0.0.1:{port}/0", wait=False)

    assert_refuses_to_start(app)


def test_password_in_the_url(
    redis_server_factory: RedisServerFactory, app_server_factory: AppServerFactory
) -> None:
    server = redis_server_factory(extra_args=["--requirepass", "s3cret-pass"], password="s3cret-pass")

    assert_sessions_work(start(app_server_factory, f"redis://:s3cret-pass@127.0.0.1:{server.port}/0"))

    refused = start(app_server_factory, f"redis://:wrong-pass@127.0.0.1:{server.port}/0", wait=False)
    log = assert_refuses_to_start(refused, "AuthenticationError", ":***@127.0.0.1")
    assert "wrong-pass" not in log


def test_acl_user_in_the_url(
    redis_server_factory: RedisServerFactory, app_server_factory: AppServerFactory
) -> None:
    # The least a session store needs (docs/deployment.md): its own keys and channel, its scripts,
    # pub/sub, and the server facts it reads at startup.
    acl = "-@all +@read +@write +@scripting +@pubsub +@connection +info +time +wait +config|get"
    server = redis_server_factory(
        extra_args=[
            *("--user", "default", "off"),
            *("--user", "sessions", "on", ">app-pass", "~sr:*", "&sr:*", *acl.split()),
        ],
        username="sessions",
        password="app-pass",
    )

    app = start(app_server_factory, f"redis://sessions:app-pass@127.0.0.1:{server.port}/0")
    assert_sessions_work(app)
    assert "NOPERM" not in app.log_text()
    assert "could not read the Redis configuration" not in app.log_text()
