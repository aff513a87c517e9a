"""Real ``redis-server`` and ``uvicorn`` processes for the tests and the benchmarks.

It lives outside ``tests/`` so that ``bench/`` can start the same servers without importing the
tests.  Everything binds to ``127.0.0.1`` on a free ephemeral port; nothing here ever talks to a
Redis on the default port 6379.  Every process started through this module is tracked and
terminated at interpreter exit (``atexit``), and on Linux it is additionally asked to die
with the parent process (``PR_SET_PDEATHSIG``) so a crashed or SIGKILLed pytest or benchmark
does not leave servers behind.
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import ctypes.util
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import IO, Any, Protocol, Self

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

__all__ = [
    "REPO_ROOT",
    "AppServer",
    "ProcessError",
    "RedisServer",
    "Stoppable",
    "free_port",
    "stop_quietly",
]

#: Root of the repository (the directory holding ``pyproject.toml``).
REPO_ROOT: Path = Path(__file__).resolve().parents[1]

_LOCALHOST = "127.0.0.1"
_STOP_TIMEOUT = 10.0
_LOG_TAIL_LINES = 60


class ProcessError(RuntimeError):
    """A managed process failed to start, died unexpectedly or could not be stopped."""


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that was free at the time of the call.

    The port is obtained by binding to port 0 and closing the socket again, so another
    process could in principle grab it before the caller does; the servers below retry
    with a fresh port when that race is lost on their first start.
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((_LOCALHOST, 0))
        port: int = sock.getsockname()[1]
        return port


def _port_accepts(port: int, timeout: float = 0.2) -> bool:
    """Return True if a TCP connection to 127.0.0.1:``port`` succeeds."""
    try:
        with socket.create_connection((_LOCALHOST, port), timeout=timeout):
            return True
    except OSError:
        return False


def _tail(path: Path, lines: int = _LOG_TAIL_LINES) -> str:
    """Return the last ``lines`` lines of ``path`` (or a note that it does not exist)."""
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except FileNotFoundError:
        return f"<{path} does not exist>"
    return "\n".join(text.splitlines()[-lines:])


# --------------------------------------------------------------------------------------
# Child-process lifetime management
# --------------------------------------------------------------------------------------

_PR_SET_PDEATHSIG = 1


def _load_prctl() -> Callable[..., int] | None:
    """Return libc's ``prctl`` on Linux, else None (resolved once, in the parent)."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
    except OSError:
        return None
    prctl: Callable[..., int] = libc.prctl
    return prctl


_PRCTL = _load_prctl()


def _make_preexec() -> Callable[[], None] | None:
    """Build a ``preexec_fn`` that makes the child get SIGKILL when this process dies.

    Only used when spawning from the main thread: PR_SET_PDEATHSIG fires when the
    *thread* that forked the child exits, and the main thread lives as long as the
    interpreter does.
    """
    prctl = _PRCTL
    if prctl is None or threading.current_thread() is not threading.main_thread():
        return None
    parent_pid = os.getpid()

    def preexec() -> None:
        prctl(_PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0)
        if os.getppid() != parent_pid:  # parent already died before prctl took effect
            os._exit(1)

    return preexec


_LIVE: set[_ManagedProcess] = set()
_LIVE_LOCK = threading.Lock()


def _cleanup_all() -> None:
    """atexit hook: kill every process still tracked by this module."""
    with _LIVE_LOCK:
        live = list(_LIVE)
    for proc in live:
        with contextlib.suppress(Exception):
            proc.kill()


atexit.register(_cleanup_all)


class _ManagedProcess:
    """One server child process on 127.0.0.1: its address, its files, and spawn / stop / kill.

    Subclasses say only what differs between servers: the class attributes below and the
    command line.  The port is picked once (``port=None``: a free one) and kept across restarts,
    so clients built before a restart find the server again.
    """

    _name: str = "process"
    #: ``url`` is ``<_scheme>://127.0.0.1:<port><_url_path>``.
    _scheme: str = "tcp"
    _url_path: str = ""
    #: File names in ``data_dir``: the server's own log, and where its stdout/stderr go.
    _log_name: str = "process.log"
    _output_name: str = "process.stdout.log"

    def __init__(self, data_dir: Path, *, port: int | None) -> None:
        self.data_dir = Path(data_dir)
        # A port the caller chose is never swapped for another after a lost bind race.
        self._port_is_fixed = port is not None
        self._port = port if port is not None else free_port()
        self._ever_started = False
        self._proc: subprocess.Popen[bytes] | None = None
        self._output: IO[bytes] | None = None

    # -- address and files --------------------------------------------------------------
    @property
    def port(self) -> int:
        """TCP port the server listens on (stable across restarts)."""
        return self._port

    @property
    def url(self) -> str:
        """``<scheme>://127.0.0.1:<port>`` plus the server's path (``/0`` for a Redis database)."""
        return f"{self._scheme}://{_LOCALHOST}:{self._port}{self._url_path}"

    @property
    def log_path(self) -> Path:
        """The server's log file."""
        return self.data_dir / self._log_name

    @property
    def output_path(self) -> Path:
        """Captured stdout/stderr of the process (early startup errors land here)."""
        return self.data_dir / self._output_name

    def log_text(self) -> str:
        """Full text of the log file so far ('' before the first start)."""
        if self._output is not None:
            # When the log is the captured output, flush what the child wrote through our handle.
            with contextlib.suppress(ValueError):
                self._output.flush()
        try:
            return self.log_path.read_text(encoding="utf-8", errors="replace")
        except FileNotFoundError:
            return ""

    # -- hooks for subclasses ---------------------------------------------------------
    def _describe_failure(self) -> str:  # pragma: no cover - overridden
        return ""

    # -- spawning ---------------------------------------------------------------------
    def _spawn(
        self,
        argv: Sequence[str],
        *,
        env: Mapping[str, str] | None = None,
        cwd: Path | None = None,
    ) -> None:
        if self.running:
            raise ProcessError(f"{self._name} is already running (pid {self.pid})")
        self._reap()
        self.output_path.parent.mkdir(parents=True, exist_ok=True)
        output = self.output_path.open("ab")
        try:
            proc = subprocess.Popen(
                list(argv),
                stdin=subprocess.DEVNULL,
                stdout=output,
                stderr=subprocess.STDOUT,
                env=dict(env) if env is not None else None,
                cwd=cwd,
                preexec_fn=_make_preexec(),
                close_fds=True,
            )
        except BaseException:
            output.close()
            raise
        self._proc = proc
        self._output = output
        with _LIVE_LOCK:
            _LIVE.add(self)

    def _reap(self) -> None:
        """Forget a process that has exited and close its log handle."""
        if self._output is not None:
            self._output.close()
            self._output = None
        with _LIVE_LOCK:
            _LIVE.discard(self)

    # -- state ------------------------------------------------------------------------
    @property
    def pid(self) -> int | None:
        """PID of the current child process, or None if never started."""
        return self._proc.pid if self._proc is not None else None

    @property
    def running(self) -> bool:
        """True while the child process exists and has not exited."""
        return self._proc is not None and self._proc.poll() is None

    @property
    def returncode(self) -> int | None:
        """Exit status of the last child process (None while running / never started).

        Negative values mean "killed by signal -N", as in :mod:`subprocess`.
        """
        return self._proc.poll() if self._proc is not None else None

    # -- stopping ---------------------------------------------------------------------
    def _signal_and_wait(self, sig: signal.Signals, timeout: float, *, send: bool = True) -> int | None:
        proc = self._proc
        if proc is None:
            return None
        if proc.poll() is None:
            if send:
                with contextlib.suppress(ProcessLookupError):
                    proc.send_signal(sig)
            try:
                proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    proc.kill()
                proc.wait(timeout=_STOP_TIMEOUT)
        self._reap()
        return proc.returncode

    def stop(self, timeout: float = _STOP_TIMEOUT) -> int | None:
        """Stop gracefully with SIGTERM (SIGKILL after ``timeout`` s); idempotent.

        Returns the exit status, or None if the process was never started.
        """
        return self._signal_and_wait(signal.SIGTERM, timeout)

    def kill(self) -> int | None:
        """Kill with SIGKILL (no graceful shutdown, no AOF flush) and wait; idempotent."""
        return self._signal_and_wait(signal.SIGKILL, _STOP_TIMEOUT)

    def wait_exit(self, timeout: float = _STOP_TIMEOUT) -> int:
        """Wait for the process to exit on its own and return its exit status.

        Meant for tests that expect a startup failure.  Raises :class:`ProcessError`
        (after killing the process) if it is still running after ``timeout`` seconds.
        """
        proc = self._proc
        if proc is None:
            raise ProcessError(f"{self._name} was never started")
        try:
            code = proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise ProcessError(
                f"{self._name} still running after {timeout}s; killed it.\n{self._describe_failure()}"
            ) from None
        self._reap()
        return code

    # -- context manager --------------------------------------------------------------
    def start(self) -> None:  # pragma: no cover - overridden
        raise NotImplementedError

    def __enter__(self) -> Self:
        if not self.running:
            self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def __del__(self) -> None:
        # Last-resort safety net; normal code paths call stop()/kill() explicitly.
        proc = getattr(self, "_proc", None)
        if proc is not None and proc.poll() is None:
            with contextlib.suppress(Exception):
                proc.kill()
                proc.wait(timeout=_STOP_TIMEOUT)


class Stoppable(Protocol):
    """A server handle or a whole topology: something teardown can stop."""

    def stop(self) -> object:
        """Stop it; idempotent."""
        ...


def stop_quietly(handles: Iterable[Stoppable]) -> None:
    """Stop ``handles`` in order; one failing to stop must not leave the others running.

    Meant for teardown, where an error must not hide the test's own outcome: it is swallowed,
    and a process still running after a failed :meth:`~_ManagedProcess.stop` is killed.
    Processes among them are all sent SIGTERM first and then waited for in order, so that
    stopping four apps takes about as long as stopping one (~0.2 s for uvicorn).
    """
    handles = list(handles)
    terminating: set[_ManagedProcess] = set()
    for handle in handles:
        if isinstance(handle, _ManagedProcess) and handle.running and handle._proc is not None:
            with contextlib.suppress(ProcessLookupError):
                handle._proc.send_signal(signal.SIGTERM)
                terminating.add(handle)
    for handle in handles:
        with contextlib.suppress(Exception):
            if isinstance(handle, _ManagedProcess) and handle in terminating:
                handle._signal_and_wait(signal.SIGTERM, _STOP_TIMEOUT, send=False)
            else:
                handle.stop()
        if isinstance(handle, _ManagedProcess) and handle.running:  # pragma: no cover - stop() escalates
            handle.kill()


# --------------------------------------------------------------------------------------
# redis-server
# --------------------------------------------------------------------------------------


class RedisServer(_ManagedProcess):
    """A throw-away ``redis-server`` bound to 127.0.0.1 with its data in ``data_dir``.

    With ``appendonly=True`` (the default) the server runs with ``appendfsync always``,
    so every acknowledged write is on disk before the reply is sent and survives a
    :meth:`kill` (SIGKILL) followed by :meth:`restart`.  RDB snapshots are disabled.

    Usage::

        with RedisServer(tmp_path / "redis") as server:
            server.client().set("k", "v")
            server.kill()
            server.restart()
            assert server.client().get("k") == b"v"
    """

    _name = "redis-server"
    _scheme = "redis"
    _url_path = "/0"
    _log_name = "redis.log"
    _output_name = "redis.stdout.log"

    def __init__(
        self,
        data_dir: Path,
        *,
        port: int | None = None,
        appendonly: bool = True,
        extra_args: Sequence[str] = (),
        username: str | None = None,
        password: str | None = None,
    ) -> None:
        """Prepare (but do not start) a server; ``port=None`` picks a free port now.

        ``username``/``password`` are what this harness itself logs in with, for servers whose
        ``extra_args`` require authentication (``--requirepass``, ``--user``).
        """
        super().__init__(data_dir, port=port)
        self.username = username
        self.password = password
        self.appendonly = appendonly
        self.extra_args: list[str] = list(extra_args)

    def argv(self) -> list[str]:
        """The exact command line used to start the server."""
        executable = shutil.which("redis-server")
        if executable is None:
            raise ProcessError(
                "redis-server not found on PATH. Run tests/run (it installs it), or "
                "install it yourself: apt-get install redis-server"
            )
        argv = [
            executable,
            "--port", str(self._port),
            "--bind", _LOCALHOST,
            "--dir", str(self.data_dir),
            "--appendonly", "yes" if self.appendonly else "no",
        ]  # fmt: skip
        if self.appendonly:
            argv += ["--appendfsync", "always"]
        argv += [
            "--save", "",
            "--daemonize", "no",
            "--logfile", str(self.log_path),
            "--protected-mode", "no",
        ]  # fmt: skip
        return argv + self.extra_args

    def client(self, **kwargs: Any) -> redis.Redis:
        """A new synchronous redis-py client for this server (``socket_timeout=5``).

        Keyword arguments (e.g. ``decode_responses=True``) are passed to
        :class:`redis.Redis` and override the defaults.
        """
        options: dict[str, Any] = {
            "host": _LOCALHOST,
            "port": self._port,
            "socket_timeout": 5,
            "username": self.username,
            "password": self.password,
        }
        options.update(kwargs)
        return redis.Redis(**options)

    def start(self, timeout: float = 10.0) -> None:
        """Launch the server and block until PING succeeds and no dataset is loading.

        If the port was chosen automatically and was stolen before the first start, a
        new port is picked (up to 3 attempts).  Raises :class:`ProcessError` with the
        log tail on failure.
        """
        self.data_dir.mkdir(parents=True, exist_ok=True)
        attempts = 1 if (self._port_is_fixed or self._ever_started) else 3
        for attempt in range(attempts):
            self._spawn(self.argv(), cwd=self.data_dir)
            try:
                self._wait_ready(timeout)
            except ProcessError:
                self.kill()
                lost_race = "Address already in use" in _tail(self.log_path, 10)
                if lost_race and attempt + 1 < attempts:
                    self._port = free_port()
                    continue
                raise
            self._ever_started = True
            return

    def _wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        last_error: BaseException | None = None
        # No client-side retries: redis-py 8 otherwise retries 10x with backoff per call.
        probe = redis.Redis(
            host=_LOCALHOST,
            port=self._port,
            socket_timeout=1,
            retry=Retry(NoBackoff(), 0),
            username=self.username,
            password=self.password,
        )
        try:
            while True:
                if not self.running:
                    raise ProcessError(
                        f"redis-server exited during startup (status {self.returncode}).\n"
                        + self._describe_failure()
                    )
                try:
                    if probe.ping():
                        # Make sure it is OUR process answering, not another server that
                        # already holds the port (our child then dies with EADDRINUSE).
                        info = probe.info()
                        if int(info.get("process_id", -1)) != self.pid:
                            last_error = ProcessError(
                                f"port {self._port} is served by another redis-server "
                                f"(pid {info.get('process_id')})"
                            )
                        elif not int(info.get("loading", 0)) and not int(info.get("async_loading", 0)):
                            return
                        else:
                            last_error = None
                except redis.RedisError as exc:  # connection refused, LOADING, ...
                    last_error = exc
                if time.monotonic() >= deadline:
                    raise ProcessError(
                        f"redis-server on port {self._port} not ready after {timeout}s "
                        f"(last error: {last_error!r}).\n" + self._describe_failure()
                    )
                time.sleep(0.05)
        finally:
            probe.close()

    def restart(self, timeout: float = 10.0) -> None:
        """Stop (SIGTERM) if running, then start again on the same port and data dir.

        After a :meth:`kill`, this reloads the AOF, which tests use to check durability.
        """
        self.stop()
        self.start(timeout)

    def _describe_failure(self) -> str:
        return (
            f"command: {' '.join(self.argv())}\n"
            f"--- tail of {self.log_path} ---\n{_tail(self.log_path)}\n"
            f"--- tail of {self.output_path} ---\n{_tail(self.output_path)}"
        )

    def __repr__(self) -> str:
        state = f"pid={self.pid}" if self.running else "stopped"
        return f"<RedisServer {self.url} dir={self.data_dir} {state}>"


# --------------------------------------------------------------------------------------
# uvicorn app server
# --------------------------------------------------------------------------------------


class AppServer(_ManagedProcess):
    """An ASGI app served by ``python -m uvicorn`` in a child process on 127.0.0.1.

    ``app_ref`` is a uvicorn import string such as ``"tests.apps.basic:app"`` (or a
    factory callable's path with ``factory=True``).  ``env`` is merged onto
    ``os.environ``; the repository root is always on ``PYTHONPATH`` (after any
    ``PYTHONPATH`` given in ``env``) so ``tests.*`` modules import.  Output of the child
    (stdout and stderr) goes to ``log_path``.
    """

    _name = "uvicorn"
    _scheme = "http"

    def __init__(
        self,
        app_ref: str,
        env: Mapping[str, str] | None = None,
        *,
        port: int | None = None,
        factory: bool = False,
        cwd: Path = REPO_ROOT,
        log_dir: Path | None = None,
        extra_args: Sequence[str] = (),
        python: str | Path | None = None,
    ) -> None:
        """Prepare (but do not start) a server; ``port=None`` picks a free port now.

        ``log_dir`` defaults to a fresh temporary directory.  ``extra_args`` are appended
        to the uvicorn command line.  ``python`` (default: this interpreter) runs uvicorn, e.g. the
        interpreter of a virtual environment with another release installed.
        """
        if log_dir is None:
            log_dir = Path(tempfile.mkdtemp(prefix="sr-app-"))
        super().__init__(log_dir, port=port)
        self.app_ref = app_ref
        self.env: dict[str, str] = dict(env or {})
        self.factory = factory
        self.cwd = Path(cwd)
        self.extra_args: list[str] = list(extra_args)
        self.python = str(python) if python is not None else sys.executable
        # uvicorn logs to stdout, so the log is the captured output. Named after the first port:
        # servers may share a log_dir, and the name stays put if a lost bind race moves the port.
        self._log_name = self._output_name = f"uvicorn-{self._port}.log"

    def argv(self) -> list[str]:
        """The exact command line used to start the server."""
        argv = [
            self.python, "-m", "uvicorn", self.app_ref,
            "--host", _LOCALHOST,
            "--port", str(self._port),
            "--log-level", "info",
        ]  # fmt: skip
        if self.factory:
            argv.append("--factory")
        return argv + self.extra_args

    def child_env(self) -> dict[str, str]:
        """The environment the child runs with (``os.environ`` + ``env`` + PYTHONPATH)."""
        child = dict(os.environ)
        child.update(self.env)
        paths = [p for p in self.env.get("PYTHONPATH", "").split(os.pathsep) if p]
        paths.append(str(REPO_ROOT))
        paths += [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
        child["PYTHONPATH"] = os.pathsep.join(dict.fromkeys(paths))
        child["PYTHONUNBUFFERED"] = "1"
        return child

    def start(self, timeout: float = 15.0, *, wait: bool = True) -> None:
        """Launch uvicorn; with ``wait=True`` block until the port accepts connections.

        uvicorn only binds after the app's lifespan startup has completed, so a
        successful return means startup finished.  Raises :class:`ProcessError` with the
        log tail if the process exits or does not listen within ``timeout`` seconds.
        With ``wait=False`` the process is only spawned; use :meth:`wait_exit` to test
        startup failures.
        """
        attempts = 1 if (self._port_is_fixed or self._ever_started or not wait) else 3
        for attempt in range(attempts):
            if _port_accepts(self._port):
                # Someone else listens there; a connect probe would give a false "ready".
                if attempt + 1 < attempts:
                    self._port = free_port()
                    continue
                raise ProcessError(f"port {self._port} is already in use; cannot start uvicorn")
            offset = self.log_path.stat().st_size if self.log_path.exists() else 0
            self._spawn(self.argv(), env=self.child_env(), cwd=self.cwd)
            if not wait:
                return
            try:
                self._wait_ready(timeout)
            except ProcessError:
                self.kill()
                with self.log_path.open("rb") as fh:
                    fh.seek(offset)
                    new_output = fh.read().decode("utf-8", errors="replace")
                if "address already in use" in new_output.lower() and attempt + 1 < attempts:
                    self._port = free_port()
                    continue
                raise
            self._ever_started = True
            return

    def _wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while True:
            if not self.running:
                raise ProcessError(
                    f"uvicorn exited during startup (status {self.returncode}).\n" + self._describe_failure()
                )
            if _port_accepts(self._port) and self.running:
                return
            if time.monotonic() >= deadline:
                raise ProcessError(
                    f"uvicorn not listening on port {self._port} after {timeout}s.\n"
                    + self._describe_failure()
                )
            time.sleep(0.05)

    def restart(self, timeout: float = 15.0) -> None:
        """Stop (SIGTERM) if running, then start again on the same port."""
        self.stop()
        self.start(timeout)

    def _describe_failure(self) -> str:
        return (
            f"command: {' '.join(self.argv())} (cwd={self.cwd})\n"
            f"--- tail of {self.log_path} ---\n{_tail(self.log_path)}"
        )

    def __repr__(self) -> str:
        state = f"pid={self.pid}" if self.running else "stopped"
        return f"<AppServer {self.app_ref} {self.url} {state}>"
