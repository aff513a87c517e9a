"""Turns a ``redis_url`` into a redis-py asyncio client: standalone, Cluster or Sentinel.

The URL forms (``s`` after ``redis`` means TLS, for the data nodes and the sentinels alike)::

    redis://[[user]:password@]host[:port][/db]                    one server
    rediss://...                                                  one server over TLS
    unix://[[user]:password@]/path/to/redis.sock[?db=0]           one server on a Unix socket
    redis+cluster://[[user]:password@]host:port[,host:port...]    Redis Cluster (startup nodes)
    redis+sentinel://[[user]:password@]host:port[,host:port...]/service[/db]
                                                                  the primary named ``service``

The credentials are those of the data nodes. Sentinels that need their own take
``sentinel_username`` and ``sentinel_password`` in the query. Other query parameters:
``client_name``, ``db`` and, with TLS only, ``ssl_ca_certs``, ``ssl_certfile``, ``ssl_keyfile``,
``ssl_cert_reqs`` (``required``, ``optional`` or ``none``) and ``ssl_check_hostname``. Anything else
is refused when the app is built: a misspelt option must not be ignored. For settings beyond these,
build the client yourself and pass ``redis=``.

Every URL is parsed when :class:`~starlette_refresh.TokenAuth` is built, so a bad one fails at
import time; the client itself is created later, inside the running event loop.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal
from urllib.parse import parse_qsl, unquote, urlsplit, urlunsplit

from redis import exceptions as redis_errors

from .errors import ConfigurationError

Topology = Literal["standalone", "cluster", "sentinel"]

_SCHEMES: dict[str, tuple[Topology, bool]] = {
    "redis": ("standalone", False),
    "rediss": ("standalone", True),
    "unix": ("standalone", False),
    "redis+cluster": ("cluster", False),
    "rediss+cluster": ("cluster", True),
    "redis+sentinel": ("sentinel", False),
    "rediss+sentinel": ("sentinel", True),
}
_DEFAULT_PORT = {"standalone": 6379, "cluster": 6379, "sentinel": 26379}
_TLS_OPTIONS = frozenset(
    {"ssl_ca_certs", "ssl_certfile", "ssl_keyfile", "ssl_cert_reqs", "ssl_check_hostname"}
)
_OPTIONS: dict[Topology, frozenset[str]] = {
    "standalone": frozenset({"db", "client_name"}) | _TLS_OPTIONS,
    "cluster": frozenset({"client_name"}) | _TLS_OPTIONS,
    "sentinel": frozenset({"db", "client_name", "sentinel_username", "sentinel_password"}) | _TLS_OPTIONS,
}
_CERT_REQS = ("required", "optional", "none")
_BOOLEANS = {"true": True, "yes": True, "1": True, "false": False, "no": False, "0": False}

SCHEMES = tuple(f"{scheme}://" for scheme in _SCHEMES)


@dataclass(frozen=True)
class RedisTarget:
    """A parsed ``redis_url``: where the store lives and how to talk to it."""

    url: str
    topology: Topology
    tls: bool
    hosts: tuple[tuple[str, int], ...]
    username: str | None = None
    password: str | None = None
    db: int = 0
    service: str | None = None
    options: dict[str, str] = field(default_factory=dict)


def parse_redis_url(url: object) -> RedisTarget:
    """Parses and checks ``url``; raises :class:`ConfigurationError` saying what is wrong."""
    if not isinstance(url, str) or "://" not in url:
        raise ConfigurationError(
            f"redis_url must be a URL starting with one of {', '.join(SCHEMES)}, got {_shown(url)}; "
            "or pass a redis-py asyncio client as redis=..."
        )
    if url != url.strip() or any(c.isspace() for c in url):
        raise ConfigurationError(
            f"redis_url contains whitespace (a stray space or newline from an environment file?): "
            f"{_shown(redact_url(url))}"
        )
    scheme = url.split("://", 1)[0].lower()
    if scheme not in _SCHEMES:
        raise ConfigurationError(
            f"redis_url must start with one of {', '.join(SCHEMES)}, got {_shown(redact_url(url))}; "
            "or pass a redis-py asyncio client as redis=..."
        )
    topology, tls = _SCHEMES[scheme]
    parts = urlsplit(url)
    options = _options(parts.query, topology, tls, url)
    userinfo, _, hostlist = parts.netloc.rpartition("@")
    username, password = _credentials(userinfo)
    if scheme == "unix":
        if not parts.path:
            raise ConfigurationError(f"redis_url {redact_url(url)!r} names no socket path")
        return RedisTarget(url, topology, tls, (), username, password, _db(options.pop("db", "0"), url))
    hosts = _hosts(hostlist, _DEFAULT_PORT[topology], url)
    segments = [unquote(s) for s in parts.path.split("/") if s]
    if topology == "standalone":
        if len(hosts) > 1:
            raise ConfigurationError(
                f"redis_url {redact_url(url)!r} lists several hosts; a list of hosts needs "
                "redis+cluster:// (Redis Cluster) or redis+sentinel:// (Sentinel)"
            )
        db = _path_db(segments, options, url)
        return RedisTarget(url, topology, tls, hosts, username, password, db, None, options)
    if topology == "cluster":
        if segments and segments != ["0"]:
            raise ConfigurationError(
                f"redis_url {redact_url(url)!r} selects a database; Redis Cluster has only database 0"
            )
        return RedisTarget(url, topology, tls, hosts, username, password, 0, None, options)
    if not segments:
        raise ConfigurationError(
            f"redis_url {redact_url(url)!r} names no service: use "
            "redis+sentinel://host:26379[,host:26379...]/<service name as in 'sentinel monitor'>[/db]"
        )
    service, db = segments[0], _path_db(segments[1:], options, url)
    return RedisTarget(url, topology, tls, hosts, username, password, db, service, options)


def client_from_target(target: RedisTarget, timeout: float, max_connections: int) -> Any:
    """A redis-py asyncio client for ``target``; call it inside the event loop that will use it.

    The store admits at most ``max_connections`` operations at once; the pools get one connection more,
    for the revocation feed's subscription, which holds its connection for as long as it runs.

    Its retry policy is one quick retry (a pooled connection may be stale after a Redis restart or a
    failover), so an outage turns into a 503 within about ``timeout`` seconds instead of a request that
    hangs. Commands have no socket timeout of their own: the store bounds every operation as a whole
    (``OperationGuard``, ``asyncio.timeout``), and redis-py drops a connection whose command was
    cancelled. A per-read timeout would bound nothing more, yet cost every command a timer and, on
    Python 3.11, a task (``asyncio.wait_for``). The store's guard admits at most ``max_connections``
    operations at once, first come first served, so the pools never run out; a Cluster client has
    ``max_connections`` per node.
    """
    from redis.asyncio.retry import Retry
    from redis.backoff import ExponentialWithJitterBackoff

    max_connections += 1  # the subscription's
    common: dict[str, Any] = {
        "username": target.username,
        "password": target.password,
        "socket_timeout": None,
        "socket_connect_timeout": timeout,
        "retry": Retry(ExponentialWithJitterBackoff(base=0.02, cap=0.1), retries=1),
        "retry_on_error": [redis_errors.ConnectionError, redis_errors.TimeoutError],
        "health_check_interval": 30,
        "client_name": target.options.get("client_name"),
        **_tls_kwargs(target),
    }
    if target.topology == "cluster":
        return _cluster_client(target, max_connections, common)
    if target.topology == "sentinel":
        return _sentinel_client(target, timeout, max_connections, common)
    return _standalone_client(target, timeout, max_connections, common)


def _cluster_client(target: RedisTarget, max_connections: int, common: dict[str, Any]) -> Any:
    from redis.asyncio.cluster import ClusterNode, RedisCluster

    nodes = [ClusterNode(host, port) for host, port in target.hosts]
    return RedisCluster(startup_nodes=nodes, max_connections=max_connections, **common)


def _sentinel_client(
    target: RedisTarget, timeout: float, max_connections: int, common: dict[str, Any]
) -> Any:
    from redis.asyncio.sentinel import Sentinel

    sentinel_kwargs: dict[str, Any] = {
        "username": target.options.get("sentinel_username"),
        "password": target.options.get("sentinel_password"),
        "socket_timeout": timeout,
        "socket_connect_timeout": timeout,
        **_tls_kwargs(target),
    }
    sentinel = Sentinel(  # type: ignore[no-untyped-call,unused-ignore]
        list(target.hosts), sentinel_kwargs=sentinel_kwargs, db=target.db, **common
    )
    assert target.service is not None
    return sentinel.master_for(
        target.service, connection_pool_class=_blocking_sentinel_pool(), max_connections=max_connections
    )


def _standalone_client(
    target: RedisTarget, timeout: float, max_connections: int, common: dict[str, Any]
) -> Any:
    # A plain pool, not a blocking one: the store's guard already admits at most max_connections
    # operations at once, first come first served, so the pool never runs out; a blocking pool would
    # only add a condition and, on Python 3.11, a wait_for task to every command.
    from redis.asyncio import ConnectionPool, Redis

    if target.url.startswith("unix://"):
        pool = ConnectionPool.from_url(target.url, max_connections=max_connections, **common)
    else:
        ((host, port),) = target.hosts
        connection_class = _ssl_connection_class() if target.tls else None
        pool = ConnectionPool(
            max_connections=max_connections,
            host=host,
            port=port,
            db=target.db,
            **({"connection_class": connection_class} if connection_class else {}),
            **{k: v for k, v in common.items() if k != "ssl"},
        )
    return Redis.from_pool(pool)  # the client owns the pool, so closing it disconnects


def redact_url(url: str) -> str:
    """``url`` with every password replaced by ``***``, for messages and logs."""
    parts = urlsplit(url)
    userinfo, at, hosts = parts.netloc.rpartition("@")
    if at and ":" in userinfo:
        parts = parts._replace(netloc=f"{userinfo.split(':', 1)[0]}:***@{hosts}")
    if "sentinel_password=" in parts.query:
        query = "&".join(
            "sentinel_password=***" if pair.startswith("sentinel_password=") else pair
            for pair in parts.query.split("&")
        )
        parts = parts._replace(query=query)
    return urlunsplit(parts)


def _options(query: str, topology: Topology, tls: bool, url: str) -> dict[str, str]:
    try:
        pairs = parse_qsl(query, keep_blank_values=True, strict_parsing=bool(query))
    except ValueError as exc:
        raise ConfigurationError(f"redis_url {redact_url(url)!r} has a malformed query: {exc}") from exc
    options: dict[str, str] = {}
    for name, value in pairs:
        if name in options:
            raise ConfigurationError(f"redis_url gives {name!r} twice")
        if name not in _OPTIONS[topology]:
            raise ConfigurationError(
                f"redis_url option {name!r} is not supported for {topology} URLs; supported: "
                f"{', '.join(sorted(_OPTIONS[topology]))}. For other settings build the redis-py "
                "client yourself and pass redis=..."
            )
        if name in _TLS_OPTIONS and not tls:
            raise ConfigurationError(
                f"redis_url option {name!r} needs TLS: use the rediss scheme (rediss://, "
                "rediss+cluster://, rediss+sentinel://)"
            )
        options[name] = value
    if options.get("ssl_cert_reqs", "required") not in _CERT_REQS:
        raise ConfigurationError(f"ssl_cert_reqs must be one of {', '.join(_CERT_REQS)}")
    if options.get("ssl_check_hostname", "true").lower() not in _BOOLEANS:
        raise ConfigurationError("ssl_check_hostname must be true or false")
    return options


def _credentials(userinfo: str) -> tuple[str | None, str | None]:
    if not userinfo:
        return None, None
    user, colon, password = userinfo.partition(":")
    return (unquote(user) or None), (unquote(password) if colon else None)


def _hosts(hostlist: str, default_port: int, url: str) -> tuple[tuple[str, int], ...]:
    hosts = []
    for item in hostlist.split(","):
        if not item:
            raise ConfigurationError(f"redis_url {redact_url(url)!r} has an empty host")
        if item.startswith("["):  # [IPv6]:port
            host, _, rest = item[1:].partition("]")
            port_text = rest.removeprefix(":")
        else:
            host, _, port_text = item.partition(":")
        try:
            port = int(port_text) if port_text else default_port
        except ValueError:
            raise ConfigurationError(f"redis_url {redact_url(url)!r} has a bad port {port_text!r}") from None
        if not host or not 0 < port < 65536:
            raise ConfigurationError(f"redis_url {redact_url(url)!r} has a bad host {item!r}")
        hosts.append((host, port))
    return tuple(hosts)


def _path_db(segments: list[str], options: dict[str, str], url: str) -> int:
    if len(segments) > 1:
        raise ConfigurationError(f"redis_url {redact_url(url)!r} has an unexpected path")
    in_query = options.pop("db", None)
    if segments and in_query is not None:
        raise ConfigurationError(f"redis_url {redact_url(url)!r} gives the database twice (path and ?db=)")
    return _db(segments[0] if segments else (in_query or "0"), url)


def _db(text: str, url: str) -> int:
    if not text.isdigit():
        raise ConfigurationError(
            f"redis_url {redact_url(url)!r}: the database must be a number, got {text!r}"
        )
    return int(text)


def _tls_kwargs(target: RedisTarget) -> dict[str, Any]:
    if not target.tls:
        return {}
    options = target.options
    kwargs: dict[str, Any] = {
        "ssl": True,
        "ssl_cert_reqs": options.get("ssl_cert_reqs", "required"),
        "ssl_check_hostname": _BOOLEANS[options.get("ssl_check_hostname", "true").lower()],
    }
    for name in ("ssl_ca_certs", "ssl_certfile", "ssl_keyfile"):
        if name in options:
            kwargs[name] = options[name]
    return kwargs


def _ssl_connection_class() -> Any:
    from redis.asyncio.connection import SSLConnection

    return SSLConnection


def _blocking_sentinel_pool() -> Any:
    """A Sentinel pool that waits for a free connection, like the standalone one, instead of failing."""
    from redis.asyncio import BlockingConnectionPool
    from redis.asyncio.sentinel import SentinelConnectionPool

    class BlockingSentinelConnectionPool(SentinelConnectionPool, BlockingConnectionPool):
        pass

    return BlockingSentinelConnectionPool


def _shown(value: object) -> str:
    return repr(value)[:60]
