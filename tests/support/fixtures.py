"""pytest fixtures that start real ``redis-server`` / uvicorn processes.

Register with ``pytest_plugins = ["tests.support.fixtures"]`` in ``tests/conftest.py``.
Every server a fixture starts is stopped at the end of the test, even if it fails.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Protocol

import pytest

from harness.processes import AppServer, RedisServer

__all__ = [
    "AppServerFactory",
    "RedisServerFactory",
    "app_server_factory",
    "redis_server",
    "redis_server_factory",
]


class RedisServerFactory(Protocol):
    """Signature of the callable returned by the ``redis_server_factory`` fixture."""

    def __call__(
        self,
        *,
        appendonly: bool = True,
        port: int | None = None,
        extra_args: Sequence[str] = (),
        data_dir: Path | None = None,
        username: str | None = None,
        password: str | None = None,
    ) -> RedisServer:
        """Start and return a new RedisServer (data in a fresh dir under tmp_path)."""
        ...


class AppServerFactory(Protocol):
    """Signature of the callable returned by the ``app_server_factory`` fixture."""

    def __call__(
        self,
        app_ref: str,
        env: Mapping[str, str] | None = None,
        *,
        factory: bool = False,
        port: int | None = None,
        wait: bool = True,
        extra_args: Sequence[str] = (),
    ) -> AppServer:
        """Start and return a new AppServer.

        With ``wait=False`` the process is only spawned (not awaited), for tests that
        expect a startup failure and call ``server.wait_exit()``.
        """
        ...


def _stop_all(servers: Sequence[RedisServer | AppServer]) -> None:
    """Stop servers in reverse start order; keep going if one of them fails."""
    for server in reversed(servers):
        with contextlib.suppress(Exception):
            server.stop()
        if server.running:  # pragma: no cover - stop() already escalates to SIGKILL
            server.kill()


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    """A started redis-server (AOF on, ``appendfsync always``) in ``tmp_path / "redis"``."""
    server = RedisServer(tmp_path / "redis")
    server.start()
    try:
        yield server
    finally:
        _stop_all([server])


@pytest.fixture
def redis_server_factory(tmp_path: Path) -> Iterator[RedisServerFactory]:
    """A callable that starts additional redis-servers; all are stopped after the test."""
    servers: list[RedisServer] = []

    def make(
        *,
        appendonly: bool = True,
        port: int | None = None,
        extra_args: Sequence[str] = (),
        data_dir: Path | None = None,
        username: str | None = None,
        password: str | None = None,
    ) -> RedisServer:
        if data_dir is None:
            data_dir = tmp_path / f"redis-{len(servers) + 1}"
        server = RedisServer(
            data_dir,
            port=port,
            appendonly=appendonly,
            extra_args=extra_args,
            username=username,
            password=password,
        )
        servers.append(server)
        server.start()
        return server

    try:
        yield make
    finally:
        _stop_all(servers)


@pytest.fixture
def app_server_factory(tmp_path: Path) -> Iterator[AppServerFactory]:
    """A callable that starts uvicorn app servers; all are stopped after the test.

    Logs go to ``tmp_path / "app-<n>"``; see :meth:`AppServer.log_text`.
    """
    servers: list[AppServer] = []

    def make(
        app_ref: str,
        env: Mapping[str, str] | None = None,
        *,
        factory: bool = False,
        port: int | None = None,
        wait: bool = True,
        extra_args: Sequence[str] = (),
    ) -> AppServer:
        server = AppServer(
            app_ref,
            env,
            port=port,
            factory=factory,
            log_dir=tmp_path / f"app-{len(servers) + 1}",
            extra_args=extra_args,
        )
        servers.append(server)
        server.start(wait=wait)
        return server

    try:
        yield make
    finally:
        _stop_all(servers)
