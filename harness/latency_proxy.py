"""A TCP proxy in front of a Redis that delays every reply: a slow Redis, for startup and timeout tests.

Everything the client sends is forwarded at once; every chunk Redis sends back is held for
``delay_ms`` milliseconds from the moment it reached the proxy (so delays do not add up behind each
other) and then passed on, in order. ``delay_ms`` can be changed while the proxy runs; a chunk keeps
the delay in force when it arrived. The proxy runs an asyncio loop in a background thread::

    with LatencyProxy(redis_server.port, delay_ms=300) as proxy:
        app = AppServer(..., env={"SR_REDIS_URL": proxy.url})
        proxy.delay_ms = 2000
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Callable
from types import TracebackType
from typing import Self

from harness.processes import ProcessError, free_port

__all__ = ["LatencyProxy"]

_LOCALHOST = "127.0.0.1"
_CHUNK = 65536


class LatencyProxy:
    """Listens on 127.0.0.1:``port`` (a free one by default); forwards to ``upstream_host:upstream_port``.

    ``connections`` counts the clients it accepted.
    """

    def __init__(
        self,
        upstream_port: int,
        *,
        upstream_host: str = _LOCALHOST,
        delay_ms: float = 0.0,
        port: int | None = None,
    ) -> None:
        """Prepare (but do not start) the proxy."""
        self.upstream_host = upstream_host
        self.upstream_port = upstream_port
        #: How long each chunk from Redis is held, in milliseconds; may be changed at any time.
        self.delay_ms = delay_ms
        #: Called in the proxy's thread with each new connection's number (1, 2, ...) before anything
        #: of it is forwarded: a test can change ``delay_ms`` at an exact point of a client's sequence.
        self.on_connect: Callable[[int], None] | None = None
        #: How many client connections the proxy has accepted.
        self.connections = 0
        self.port = port if port is not None else free_port()
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None

    @property
    def url(self) -> str:
        """``redis://127.0.0.1:<port>/0``: what a client connects to instead of the Redis."""
        return f"redis://{_LOCALHOST}:{self.port}/0"

    # -- lifetime -------------------------------------------------------------------------
    def start(self) -> None:
        """Start listening; returns once the port accepts connections."""
        if self._thread is not None:
            raise ProcessError(f"latency proxy on port {self.port} is already running")
        self._ready.clear()
        self._error = None
        self._thread = threading.Thread(target=self._run, name=f"latency-proxy-{self.port}", daemon=True)
        self._thread.start()
        self._ready.wait()
        if self._error is not None:
            self._thread.join()
            self._thread = None
            raise ProcessError(f"latency proxy could not listen on port {self.port}") from self._error

    def stop(self) -> None:
        """Close the port and every connection, and end the thread; idempotent."""
        thread, self._thread = self._thread, None
        if thread is None:
            return
        if self._loop is not None and self._stop is not None:
            with contextlib.suppress(RuntimeError):  # the loop already ended
                self._loop.call_soon_threadsafe(self._stop.set)
        thread.join()

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # -- the proxy's thread -----------------------------------------------------------------
    def _run(self) -> None:
        try:
            asyncio.run(self._main())
        except BaseException as exc:  # start() raises it when it came before the port was open
            self._error = exc
        finally:
            self._ready.set()

    async def _main(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        tasks: set[asyncio.Task[None]] = set()

        def accept(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            self.connections += 1
            if self.on_connect is not None:
                self.on_connect(self.connections)
            task = asyncio.create_task(self._serve(reader, writer))
            tasks.add(task)
            task.add_done_callback(tasks.discard)

        server = await asyncio.start_server(accept, _LOCALHOST, self.port)
        self._ready.set()
        async with server:
            await self._stop.wait()
        for task in list(tasks):
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def _serve(self, client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter) -> None:
        """One client connection: its own connection to Redis, a pump each way, closed together."""
        try:
            redis_reader, redis_writer = await asyncio.open_connection(self.upstream_host, self.upstream_port)
        except OSError:
            client_writer.close()
            return
        pumps = {
            asyncio.create_task(self._forward(client_reader, redis_writer)),
            asyncio.create_task(self._forward_delayed(redis_reader, client_writer)),
        }
        try:
            await asyncio.wait(pumps, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for pump in pumps:
                pump.cancel()
            await asyncio.gather(*pumps, return_exceptions=True)
            for writer in (client_writer, redis_writer):
                writer.close()
                with contextlib.suppress(OSError):
                    await writer.wait_closed()

    @staticmethod
    async def _forward(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """Client to Redis, at once, until either side closes."""
        with contextlib.suppress(OSError):
            while chunk := await reader.read(_CHUNK):
                writer.write(chunk)
                await writer.drain()

    async def _forward_delayed(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """Redis to client: each chunk ``delay_ms`` after it arrived, in order, until either side closes."""
        loop = asyncio.get_running_loop()
        held: asyncio.Queue[tuple[float, bytes]] = asyncio.Queue()  # (due, chunk); b"" once Redis closed

        async def release() -> None:
            while (item := await held.get())[1]:
                due, chunk = item
                await asyncio.sleep(max(0.0, due - loop.time()))
                writer.write(chunk)
                await writer.drain()

        releaser = asyncio.create_task(release())
        try:
            with contextlib.suppress(OSError):
                while chunk := await reader.read(_CHUNK):
                    held.put_nowait((loop.time() + self.delay_ms / 1000, chunk))
                held.put_nowait((0.0, b""))
                await releaser  # Redis closed: pass on what it sent before, then end
        finally:
            releaser.cancel()
