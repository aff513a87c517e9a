"""The demo's own redis-server, started when ``REDIS_URL`` is not set.

It runs as a child process bound to 127.0.0.1, keeps its data in ``<DEMO_DATA_DIR>/redis`` with
append-only persistence (``appendfsync everysec``, no RDB snapshots), and is stopped with SIGTERM, so
it writes its AOF before exiting and a restarted demo finds every session again.

The child runs in its own session (a Ctrl-C in the terminal reaches only the demo, which stops the web
server first and Redis last) and, on Linux, is asked to get SIGTERM if the demo dies without cleaning
up (``PR_SET_PDEATHSIG``), so it never outlives the demo.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from types import TracebackType
from typing import IO, Self

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

logger = logging.getLogger("demo_app.redis")

LOCALHOST = "127.0.0.1"
NOT_FOUND_MESSAGE = "redis-server not found: install it (apt-get install redis-server) or set REDIS_URL"

_PR_SET_PDEATHSIG = 1
_START_ATTEMPTS = 3


class EmbeddedRedisError(RuntimeError):
    """The embedded redis-server could not be started; the message says why and what to do."""


class EmbeddedRedis:
    """One redis-server child process with its data under ``data_dir``.

    ``port=None`` picks a free port on each start. Use as a context manager, or call
    :meth:`start` and :meth:`stop` (idempotent).
    """

    def __init__(
        self,
        data_dir: Path,
        *,
        port: int | None = None,
        log_path: Path | None = None,
        executable: str | None = None,
        ready_timeout: float = 30.0,
        stop_timeout: float = 15.0,
    ) -> None:
        self.data_dir = Path(data_dir)
        self.log_path = Path(log_path) if log_path is not None else self.data_dir / "redis.log"
        self.fixed_port = port
        self.port = port or 0
        self.executable = executable
        self.ready_timeout = ready_timeout
        self.stop_timeout = stop_timeout
        self._process: subprocess.Popen[bytes] | None = None
        self._output: IO[bytes] | None = None

    @property
    def pid_path(self) -> Path:
        """The pid file redis-server writes (used to refuse a second server on the same data)."""
        return self.data_dir / "redis-server.pid"

    @property
    def url(self) -> str:
        """``redis://127.0.0.1:<port>/0``."""
        return f"redis://{LOCALHOST}:{self.port}/0"

    @property
    def pid(self) -> int | None:
        """The child's process id while it runs."""
        return self._process.pid if self._process is not None and self._process.poll() is None else None

    @property
    def running(self) -> bool:
        """True while the child process is alive."""
        return self.pid is not None

    def argv(self) -> list[str]:
        """The redis-server command line."""
        executable = self.executable or shutil.which("redis-server")
        if executable is None:
            raise EmbeddedRedisError(NOT_FOUND_MESSAGE)
        return [
            executable,
            "--bind", LOCALHOST,
            "--port", str(self.port),
            "--dir", str(self.data_dir),
            "--appendonly", "yes",
            "--appendfsync", "everysec",
            "--save", "",
            "--daemonize", "no",
            "--pidfile", str(self.pid_path),
            "--logfile", str(self.log_path),
            "--maxmemory-policy", "noeviction",
        ]  # fmt: skip

    def start(self) -> None:
        """Starts redis-server and returns once it answers PING and has loaded its data."""
        if self.running:
            return
        self.argv()  # fails first, with a clear message, when redis-server is missing
        try:
            self.data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        except OSError as exc:
            raise EmbeddedRedisError(f"cannot create {self.data_dir}: {exc.strerror or exc}") from exc
        self._refuse_second_server()
        attempts = 1 if self.fixed_port else _START_ATTEMPTS
        for attempt in range(1, attempts + 1):
            if not self.fixed_port:
                self.port = _free_port()
            elif _port_accepts(self.port):
                raise EmbeddedRedisError(
                    f"REDIS_PORT {self.port} is already in use on {LOCALHOST}; pick another port or unset it"
                )
            offset = self.log_path.stat().st_size if self.log_path.exists() else 0
            self._spawn(self.argv())
            try:
                self._wait_ready()
            except EmbeddedRedisError:
                lost_port_race = "address already in use" in self._log_since(offset).lower()
                self._kill()
                if lost_port_race and attempt < attempts:
                    continue
                raise
            logger.info("redis-server ready at %s (pid %s, data in %s)", self.url, self.pid, self.data_dir)
            return

    def stop(self) -> None:
        """Stops the server with SIGTERM (it flushes its AOF) and waits; SIGKILL after ``stop_timeout``."""
        process = self._process
        if process is None:
            return
        if process.poll() is None:
            logger.info("stopping redis-server (pid %s)", process.pid)
            with contextlib.suppress(ProcessLookupError):
                process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=self.stop_timeout)
            except subprocess.TimeoutExpired:
                logger.warning("redis-server did not stop within %.0fs; killing it", self.stop_timeout)
                self._kill()
        code = process.poll()
        self._close()
        if code not in (0, None):
            logger.warning("redis-server exited with status %s; see %s", code, self.log_path)
        else:
            logger.info("redis-server stopped")

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

    # -- internals ------------------------------------------------------------------------------------

    def _spawn(self, argv: list[str]) -> None:
        output = self.log_path.open("ab")  # early errors (bad arguments) come on stdout/stderr
        try:
            self._process = subprocess.Popen(  # noqa: S603 - argv is built here, no shell
                argv,
                stdin=subprocess.DEVNULL,
                stdout=output,
                stderr=subprocess.STDOUT,
                cwd=self.data_dir,
                start_new_session=True,
                preexec_fn=_die_with_parent(),  # spawned from the main thread: PDEATHSIG is per thread
                close_fds=True,
            )
        except OSError as exc:
            output.close()
            raise EmbeddedRedisError(f"cannot start {argv[0]}: {exc.strerror or exc}") from exc
        self._output = output

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + self.ready_timeout
        probe = redis.Redis(host=LOCALHOST, port=self.port, socket_timeout=1.0, retry=Retry(NoBackoff(), 0))
        last_error = "no answer yet"
        try:
            while True:
                process = self._process
                assert process is not None
                if process.poll() is not None:
                    raise EmbeddedRedisError(
                        f"redis-server exited at startup (status {process.returncode}); "
                        f"see {self.log_path}: {self._last_log_line()}"
                    )
                try:
                    if probe.ping():
                        info = probe.info()
                        if int(info.get("process_id", -1)) != process.pid:
                            last_error = f"port {self.port} is answered by another redis-server"
                        elif int(info.get("loading", 0)) or int(info.get("async_loading", 0)):
                            last_error = "still loading its data"
                        else:
                            return
                except redis.RedisError as exc:
                    last_error = str(exc) or type(exc).__name__
                if time.monotonic() >= deadline:
                    raise EmbeddedRedisError(
                        f"redis-server not ready after {self.ready_timeout:.0f}s ({last_error}); "
                        f"see {self.log_path}"
                    )
                time.sleep(0.05)
        finally:
            probe.close()

    def _refuse_second_server(self) -> None:
        """Two servers appending to one AOF would corrupt it: refuse when the pid file is live."""
        try:
            pid = int(self.pid_path.read_text(encoding="ascii").strip())
        except (FileNotFoundError, ValueError):
            return
        if _is_redis_server(pid):
            raise EmbeddedRedisError(
                f"another redis-server (pid {pid}) already uses {self.data_dir}; is the demo already "
                "running? Stop it, or choose another DEMO_DATA_DIR"
            )
        self.pid_path.unlink(missing_ok=True)  # left by a server that did not shut down cleanly

    def _kill(self) -> None:
        process = self._process
        if process is not None and process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                process.kill()
            process.wait(timeout=self.stop_timeout)
        self._close()

    def _close(self) -> None:
        if self._output is not None:
            self._output.close()
            self._output = None

    def _log_since(self, offset: int) -> str:
        try:
            with self.log_path.open("rb") as handle:
                handle.seek(offset)
                return handle.read().decode("utf-8", errors="replace")
        except OSError:
            return ""

    def _last_log_line(self) -> str:
        lines = [line for line in self._log_since(0).splitlines() if line.strip()]
        return lines[-1].strip() if lines else "(empty log)"


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((LOCALHOST, 0))
        port: int = sock.getsockname()[1]
        return port


def _port_accepts(port: int) -> bool:
    try:
        with socket.create_connection((LOCALHOST, port), timeout=0.2):
            return True
    except OSError:
        return False


def _is_redis_server(pid: int) -> bool:
    """True when ``pid`` is a live process that looks like a redis-server."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # alive, owned by someone else: do not touch its data
    cmdline = Path(f"/proc/{pid}/cmdline")
    if not cmdline.exists():
        return True  # no /proc (macOS): assume the worst
    try:
        return b"redis-server" in cmdline.read_bytes()
    except OSError:
        return False


def _die_with_parent() -> Callable[[], None] | None:
    """A ``preexec_fn`` that makes the child get SIGTERM when the demo process dies (Linux only)."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
    except OSError:
        return None
    prctl = libc.prctl
    parent = os.getpid()

    def preexec() -> None:
        prctl(_PR_SET_PDEATHSIG, int(signal.SIGTERM), 0, 0, 0)
        if os.getppid() != parent:  # the parent died before prctl took effect
            os._exit(1)

    return preexec
