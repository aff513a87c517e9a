"""pytest fixtures that start real ``redis-server`` / uvicorn processes.

Register with ``pytest_plugins = ["tests.support.fixtures"]`` in ``tests/conftest.py``.
Every server a fixture starts is stopped at the end of the test, even if it fails.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Generic, Protocol, Self, TypeVar

import pytest

from harness.processes import AppServer, RedisServer, Stoppable, stop_quietly

__all__ = [
    "AppServerFactory",
    "Launched",
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


Handle = TypeVar("Handle", bound=Stoppable)


class Launched(Generic[Handle]):
    """What one factory fixture launched: servers or topologies, in start order.

    Every factory fixture creates one, has its ``make`` call :meth:`add` before starting what it
    built, and ends with ``with launched: yield make``, which stops all of them when the test
    ends, however it ended.
    """

    def __init__(self, root: Path, prefix: str) -> None:
        self._root = root
        self._prefix = prefix
        self._handles: list[Handle] = []

    def next_dir(self) -> Path:
        """A fresh directory for the next handle: ``<root>/<prefix>-<n>``, n counting from 1."""
        return self._root / f"{self._prefix}-{len(self._handles) + 1}"

    def add(self, handle: Handle) -> Handle:
        """Remember ``handle``; call before starting it, so one that fails half-way is stopped too."""
        self._handles.append(handle)
        return handle

    def stop_all(self) -> None:
        """Stop everything, newest first (it may depend on older ones); one failing stops no other."""
        stop_quietly(reversed(self._handles))

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop_all()


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    """A started redis-server (AOF on, ``appendfsync always``) in ``tmp_path / "redis"``."""
    server = RedisServer(tmp_path / "redis")
    server.start()
    try:
        yield server
    finally:
        stop_quietly([server])


@pytest.fixture
def redis_server_factory(tmp_path: Path) -> Iterator[RedisServerFactory]:
    """A callable that starts additional redis-servers; all are stopped after the test."""
    servers: Launched[RedisServer] = Launched(tmp_path, "redis")

    def make(
        *,
        appendonly: bool = True,
        port: int | None = None,
        extra_args: Sequence[str] = (),
        data_dir: Path | None = None,
        username: str | None = None,
        password: str | None = None,
    ) -> RedisServer:
        server = servers.add(
            RedisServer(
                data_dir if data_dir is not None else servers.next_dir(),
                port=port,
                appendonly=appendonly,
                extra_args=extra_args,
                username=username,
                password=password,
            )
        )
        server.start()
        return server

    with servers:
        yield make


@pytest.fixture
def app_server_factory(tmp_path: Path) -> Iterator[AppServerFactory]:
    """A callable that starts uvicorn app servers; all are stopped after the test.

    Logs go to ``tmp_path / "app-<n>"``; see :meth:`AppServer.log_text`.
    """
    servers: Launched[AppServer] = Launched(tmp_path, "app")

    def make(
        app_ref: str,
        env: Mapping[str, str] | None = None,
        *,
        factory: bool = False,
        port: int | None = None,
        wait: bool = True,
        extra_args: Sequence[str] = (),
    ) -> AppServer:
        server = servers.add(
            AppServer(
                app_ref, env, port=port, factory=factory, log_dir=servers.next_dir(), extra_args=extra_args
            )
        )
        server.start(wait=wait)
        return server

    with servers:
        yield make
