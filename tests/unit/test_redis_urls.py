"""redis_url: every form parses to the right topology, builds the right client, and bad ones fail early."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from redis.asyncio import BlockingConnectionPool, ConnectionPool, Redis
from redis.asyncio.cluster import RedisCluster
from redis.asyncio.connection import SSLConnection, UnixDomainSocketConnection
from redis.asyncio.sentinel import SentinelConnectionPool

from starlette_refresh import ConfigurationError, TokenAuth
from starlette_refresh.redis_urls import RedisTarget, client_from_target, parse_redis_url, redact_url
from tests.apps import SECRET


def test_standalone_url_with_credentials_and_database() -> None:
    target = parse_redis_url("redis://app:s%40cret@cache.internal:6380/3")

    assert target == RedisTarget(
        "redis://app:s%40cret@cache.internal:6380/3",
        "standalone",
        False,
        (("cache.internal", 6380),),
        "app",
        "s@cret",
        3,
    )


def test_password_only_url_has_no_username() -> None:
    target = parse_redis_url("redis://:pw@127.0.0.1")

    assert (target.username, target.password, target.hosts) == (None, "pw", (("127.0.0.1", 6379),))


def test_database_in_the_query() -> None:
    assert parse_redis_url("redis://127.0.0.1:6379?db=2").db == 2


def test_ipv6_host() -> None:
    assert parse_redis_url("redis://[::1]:6390/0").hosts == (("::1", 6390),)


def test_cluster_url_lists_startup_nodes() -> None:
    target = parse_redis_url("redis+cluster://u:p@10.0.0.1:7000,10.0.0.2:7001,10.0.0.3")

    assert target.topology == "cluster"
    assert target.hosts == (("10.0.0.1", 7000), ("10.0.0.2", 7001), ("10.0.0.3", 6379))
    assert (target.username, target.password, target.tls) == ("u", "p", False)


def test_sentinel_url_names_the_service_and_database() -> None:
    target = parse_redis_url(
        "rediss+sentinel://:nodepw@s1:26379,s2/sessions/2?sentinel_password=sentpw&ssl_ca_certs=/ca.pem"
    )

    assert target.topology == "sentinel"
    assert target.tls
    assert target.hosts == (("s1", 26379), ("s2", 26379))
    assert (target.service, target.db, target.password) == ("sessions", 2, "nodepw")
    assert target.options == {"sentinel_password": "sentpw", "ssl_ca_certs": "/ca.pem"}


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("redis://a:6379,b:6379/0", "needs redis+cluster:// (Redis Cluster) or redis+sentinel://"),
        ("redis+cluster://a:7000/2", "Redis Cluster has only database 0"),
        ("redis+sentinel://s1:26379", "names no service"),
        ("redis+sentinel://s1:26379/", "names no service"),
        ("redis://a:notaport/0", "bad port 'notaport'"),
        ("redis://a:70000/0", "bad host"),
        ("redis+cluster://a:7000,,b:7001", "empty host"),
        ("redis://a/zero", "the database must be a number, got 'zero'"),
        ("redis://a/1?db=2", "gives the database twice"),
        ("redis://a/1/2", "unexpected path"),
        ("redis://a/0?ssl_ca_certs=/ca.pem", "needs TLS: use the rediss scheme"),
        ("redis://a/0?socket_timeout=5", "option 'socket_timeout' is not supported"),
        ("redis+cluster://a:7000?db=1", "option 'db' is not supported for cluster URLs"),
        ("redis://a/0?sentinel_password=x", "option 'sentinel_password' is not supported"),
        ("redis://a/0?client_name=x&client_name=y", "gives 'client_name' twice"),
        ("rediss://a/0?ssl_cert_reqs=sometimes", "ssl_cert_reqs must be one of required, optional, none"),
        ("rediss://a/0?ssl_check_hostname=maybe", "ssl_check_hostname must be true or false"),
        ("unix://", "names no socket path"),
        ("redis://127.0.0.1:6379/0\n", "contains whitespace"),
        (" redis://127.0.0.1:6379/0", "contains whitespace"),
    ],
)
def test_bad_urls_say_what_is_wrong(url: str, expected: str) -> None:
    with pytest.raises(ConfigurationError) as caught:
        TokenAuth(secret_key=SECRET, redis_url=url)

    assert expected in str(caught.value)


def test_errors_never_show_the_password() -> None:
    with pytest.raises(ConfigurationError) as caught:
        parse_redis_url("redis://user:hunter2-secret@a:bad/0")

    assert "hunter2" not in str(caught.value)
    assert "user:***@a:bad" in str(caught.value)


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("redis://u:pw@h:1/0", "redis://u:***@h:1/0"),
        ("redis://:pw@h:1/0", "redis://:***@h:1/0"),
        ("redis://u@h:1/0", "redis://u@h:1/0"),
        ("redis+cluster://:pw@a:1,b:2", "redis+cluster://:***@a:1,b:2"),
        (
            "redis+sentinel://:pw@s:1/svc?sentinel_password=spw&client_name=x",
            "redis+sentinel://:***@s:1/svc?sentinel_password=***&client_name=x",
        ),
    ],
)
def test_redact_url_masks_every_password(url: str, shown: str) -> None:
    assert redact_url(url) == shown


def build(url: str, timeout: float = 1.5, max_connections: int = 7) -> Any:
    """Builds the client inside an event loop (as the store does), closing it again."""

    async def make() -> Any:
        return client_from_target(parse_redis_url(url), timeout, max_connections)

    return asyncio.run(make())


def test_standalone_client_is_bounded_and_leaves_the_waiting_to_the_store() -> None:
    client = build("redis://u:pw@127.0.0.1:6390/4?client_name=api")

    assert isinstance(client, Redis)
    pool = client.connection_pool
    # A plain pool: the store's guard queues operations (fairly) before they take a connection, so a
    # blocking pool would only add a wait_for per command (tests/integration/test_connection_limit.py)
    assert type(pool) is ConnectionPool
    assert pool.max_connections == 8  # 7 operations at once, plus the revocation subscription
    kwargs = pool.connection_kwargs
    assert (kwargs["host"], kwargs["port"], kwargs["db"]) == ("127.0.0.1", 6390, 4)
    assert (kwargs["username"], kwargs["password"], kwargs["client_name"]) == ("u", "pw", "api")
    # no per-read timeout: the store bounds each operation whole (and a timer per command is costly)
    assert (kwargs["socket_timeout"], kwargs["socket_connect_timeout"]) == (None, 1.5)


def test_tls_client_verifies_with_the_given_ca() -> None:
    client = build("rediss://h:6390/0?ssl_ca_certs=/etc/ca.pem&ssl_check_hostname=false")

    pool = client.connection_pool
    assert pool.connection_class is SSLConnection
    assert pool.connection_kwargs["ssl_ca_certs"] == "/etc/ca.pem"
    assert pool.connection_kwargs["ssl_cert_reqs"] == "required"
    assert pool.connection_kwargs["ssl_check_hostname"] is False


def test_unix_socket_client() -> None:
    client = build("unix:///run/redis/redis.sock?db=1")

    pool = client.connection_pool
    assert pool.connection_class is UnixDomainSocketConnection
    assert (pool.connection_kwargs["path"], pool.connection_kwargs["db"]) == ("/run/redis/redis.sock", 1)


def test_cluster_client_starts_from_every_listed_node() -> None:
    client = build("rediss+cluster://:pw@10.0.0.1:7000,10.0.0.2:7001?ssl_cert_reqs=none")

    assert isinstance(client, RedisCluster)
    assert [(n.host, n.port) for n in client.nodes_manager.startup_nodes.values()] == [
        ("10.0.0.1", 7000),
        ("10.0.0.2", 7001),
    ]
    node_kwargs = client.nodes_manager.connection_kwargs
    assert node_kwargs["password"] == "pw"
    assert node_kwargs["ssl_cert_reqs"] == "none"
    assert node_kwargs["connection_class"] is SSLConnection


def test_sentinel_client_follows_the_named_primary() -> None:
    client = build("redis+sentinel://:pw@127.0.0.1:26390,127.0.0.1:26391/sessions/2?sentinel_password=spw")

    pool = client.connection_pool
    assert isinstance(pool, SentinelConnectionPool)
    assert isinstance(pool, BlockingConnectionPool)  # waits for a free connection like standalone
    assert (pool.service_name, pool.is_master, pool.max_connections) == ("sessions", True, 8)
    assert (pool.connection_kwargs["db"], pool.connection_kwargs["password"]) == (2, "pw")
    sentinels = pool.sentinel_manager.sentinels
    assert [s.connection_pool.connection_kwargs["port"] for s in sentinels] == [26390, 26391]
    assert sentinels[0].connection_pool.connection_kwargs["password"] == "spw"
