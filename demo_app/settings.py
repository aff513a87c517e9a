"""The demo's settings, read from the environment and validated once.

Every problem is a :class:`SettingsError` whose message is one line saying which variable is wrong,
what it holds and what it should hold; ``python -m demo_app`` prints it and exits. The session
settings (lifetimes, grace, leeway, the cookie's ``Secure``) are the library's own
:class:`~starlette_refresh.Settings`: this module only parses the variables, and the library's rules
judge the values; its :class:`~starlette_refresh.ConfigurationError` is relabelled with the names of
the variables the user set.

``JWT_SECRET`` may be left out: the demo then generates one secret the first time it runs and keeps
it in ``<DEMO_DATA_DIR>/jwt-secret`` (mode 0600), so every worker and every restart signs with the
same key and nobody is logged out by a restart.
"""

from __future__ import annotations

import logging
import math
import os
import re
import secrets
import stat
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from starlette_refresh import ConfigurationError, Settings

logger = logging.getLogger("demo_app")

#: The demo's one user. The password is public on purpose: this is a demo.
DEMO_EMAIL = "test@example.com"
DEMO_PASSWORD = "password"  # noqa: S105 - the documented demo password
DEMO_SUBJECT = "user-1"

SECRET_FILE_NAME = "jwt-secret"  # noqa: S105 - a file name, not a secret
MIN_SECRET_BYTES = 32

#: The environment variable behind each library setting the demo reads.
ENVIRONMENT_NAMES = {
    "access_ttl": "ACCESS_TOKEN_TTL",
    "refresh_ttl": "REFRESH_TOKEN_TTL",
    "refresh_grace": "REFRESH_GRACE_SECONDS",
    "leeway": "LEEWAY_SECONDS",
    "cookie_secure": "COOKIE_SECURE",
}
_SETTING_NAME = re.compile(r"\b(" + "|".join(ENVIRONMENT_NAMES) + r")\b")

_REDIS_SCHEMES = ("redis", "rediss", "unix")
_WHOLE_NUMBER = re.compile(r"[0-9]+")
_DECIMAL = re.compile(r"[0-9]+(\.[0-9]+)?")
_TRUE = frozenset({"1", "true", "yes", "on"})
_FALSE = frozenset({"0", "false", "no", "off"})


class SettingsError(ValueError):
    """A setting is missing or wrong; the message is one line, ready to show to the user."""


@dataclass(frozen=True, slots=True)
class DemoSettings:
    """Everything the demo reads from the environment. Times are seconds."""

    redis_url: str | None
    jwt_secret: str
    #: The library's settings: lifetimes, grace, leeway (an open WebSocket lives until its token's
    #: exp + leeway) and the cookie. The demo serves plain http on localhost, and browsers drop a
    #: Secure cookie set over plain http (except on localhost in some browsers, not in all), so the
    #: refresh cookie is not Secure unless COOKIE_SECURE=true; a real deployment must always use Secure.
    auth: Settings = field(default_factory=lambda: Settings(cookie_secure=False))
    host: str = "127.0.0.1"
    port: int = 8000
    data_dir: Path = Path(".demo-data")
    web_concurrency: int = 1
    redis_port: int | None = None

    @property
    def public_url(self) -> str:
        """The URL to open in a browser (a wildcard bind address is shown as 127.0.0.1)."""
        host = self.host
        if host in ("0.0.0.0", ""):  # noqa: S104 - comparing, not binding
            host = "127.0.0.1"
        elif host == "::":
            host = "[::1]"
        elif ":" in host and not host.startswith("["):
            host = f"[{host}]"
        return f"http://{host}:{self.port}/"


def load_settings(environ: Mapping[str, str] | None = None, *, cwd: Path | None = None) -> DemoSettings:
    """Reads and checks the settings; raises :class:`SettingsError` with a one-line message.

    ``environ`` defaults to ``os.environ`` and ``cwd`` (where a relative ``DEMO_DATA_DIR`` lives)
    to the current directory. When ``JWT_SECRET`` is not set, reads the secret kept in
    ``DEMO_DATA_DIR``, creating the folder and the secret the first time.
    """
    env = os.environ if environ is None else environ
    auth = _session_settings(env)
    host = _get(env, "HOST") or "127.0.0.1"
    if any(c.isspace() for c in host) or "/" in host:
        raise SettingsError(f"HOST must be a host name or IP address to listen on, got {host!r}")
    port = _port(env, "PORT", 8000)
    redis_port = _optional_port(env, "REDIS_PORT")
    workers = _whole_number(env, "WEB_CONCURRENCY", unit="worker processes")
    web_concurrency = 1 if workers is None else workers
    if not 1 <= web_concurrency <= 64:
        raise SettingsError(
            f"WEB_CONCURRENCY must be between 1 and 64 worker processes, got {_get(env, 'WEB_CONCURRENCY')!r}"
        )
    redis_url = _redis_url(env)
    data_dir = _data_dir(env, cwd)
    jwt_secret = _get(env, "JWT_SECRET")
    if jwt_secret is not None:
        _check_secret(jwt_secret, "JWT_SECRET")
    else:
        jwt_secret = load_or_create_secret(data_dir / SECRET_FILE_NAME)
    return DemoSettings(
        redis_url=redis_url,
        jwt_secret=jwt_secret,
        auth=auth,
        host=host,
        port=port,
        data_dir=data_dir,
        web_concurrency=web_concurrency,
        redis_port=redis_port,
    )


def _session_settings(env: Mapping[str, str]) -> Settings:
    """The library's settings from the variables that are set; the library's defaults for the rest,
    but for the absolute lifetime (never shorter than REFRESH_TOKEN_TTL) and the cookie (see
    :class:`DemoSettings`). The library judges every value."""
    given: dict[str, object] = {
        "access_ttl": _whole_number(env, "ACCESS_TOKEN_TTL", unit="seconds"),
        "refresh_ttl": _whole_number(env, "REFRESH_TOKEN_TTL", unit="seconds"),
        "refresh_grace": _seconds(env, "REFRESH_GRACE_SECONDS"),
        "leeway": _whole_number(env, "LEEWAY_SECONDS", unit="seconds"),
        "cookie_secure": _boolean(env, "COOKIE_SECURE", False),
    }
    options = {name: value for name, value in given.items() if value is not None}
    refresh_ttl = options.get("refresh_ttl")
    if isinstance(refresh_ttl, int) and refresh_ttl > Settings().absolute_ttl:
        options["absolute_ttl"] = refresh_ttl
    try:
        return Settings.build(**options)
    except ConfigurationError as exc:
        raise SettingsError(_SETTING_NAME.sub(lambda m: ENVIRONMENT_NAMES[m[1]], str(exc))) from exc


def load_or_create_secret(path: Path) -> str:
    """The secret kept in ``path``; generates it first (0600, atomically) when the file is missing.

    Several workers may start at once: the secret is written to a private temporary file and
    hard-linked into place, so exactly one secret wins and nobody reads a half-written file.
    """
    try:
        return _read_secret(path)
    except FileNotFoundError:
        pass
    ensure_data_dir(path.parent)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    try:
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(secrets.token_urlsafe(48) + "\n")
            handle.flush()
            os.fsync(handle.fileno())
        try:
            os.link(temporary, path)
        except FileExistsError:
            pass  # another worker was faster; use its secret
        else:
            logger.info("generated a new JWT secret in %s", path)
    except OSError as exc:
        raise SettingsError(f"cannot create the JWT secret file {path}: {exc.strerror or exc}") from exc
    finally:
        temporary.unlink(missing_ok=True)
    return _read_secret(path)


def _read_secret(path: Path) -> str:
    try:
        mode = path.stat().st_mode
        secret = path.read_text(encoding="utf-8").strip()
    except FileNotFoundError:
        raise
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise SettingsError(f"cannot read the JWT secret file {path}: {reason}") from exc
    if stat.S_IMODE(mode) & 0o077:
        logger.warning("%s was readable by other users; restricting it to mode 0600", path)
        try:
            path.chmod(0o600)
        except OSError as exc:
            raise SettingsError(f"cannot restrict {path} to mode 0600: {exc.strerror or exc}") from exc
    _check_secret(secret, str(path), hint=f"delete {path} to generate a new one")
    return secret


def _check_secret(secret: str, source: str, *, hint: str | None = None) -> None:
    size = len(secret.encode("utf-8"))
    if size < MIN_SECRET_BYTES:
        advice = hint or "generate one with: python -c 'import secrets; print(secrets.token_urlsafe(48))'"
        raise SettingsError(f"{source} must hold at least {MIN_SECRET_BYTES} bytes, got {size}; {advice}")


def _get(env: Mapping[str, str], name: str) -> str | None:
    """The variable's value without surrounding blanks; None when unset or blank."""
    value = env.get(name)
    if value is None or not value.strip():
        return None
    return value.strip()


def _whole_number(env: Mapping[str, str], name: str, *, unit: str) -> int | None:
    raw = _get(env, name)
    if raw is None:
        return None
    if not _WHOLE_NUMBER.fullmatch(raw):
        raise SettingsError(f"{name} must be a whole number of {unit}, got {raw!r}")
    return int(raw)


def _seconds(env: Mapping[str, str], name: str) -> float | None:
    raw = _get(env, name)
    if raw is None:
        return None
    if not _DECIMAL.fullmatch(raw) or not math.isfinite(float(raw)):
        raise SettingsError(f"{name} must be a number of seconds >= 0 (e.g. 10 or 2.5), got {raw!r}")
    return float(raw)


def _port(env: Mapping[str, str], name: str, default: int) -> int:
    value = _optional_port(env, name)
    return default if value is None else value


def _optional_port(env: Mapping[str, str], name: str) -> int | None:
    raw = _get(env, name)
    if raw is None:
        return None
    if not _WHOLE_NUMBER.fullmatch(raw) or not 1 <= int(raw) <= 65_535:
        raise SettingsError(f"{name} must be a TCP port number between 1 and 65535, got {raw!r}")
    return int(raw)


def _boolean(env: Mapping[str, str], name: str, default: bool) -> bool:
    raw = _get(env, name)
    if raw is None:
        return default
    if raw.lower() in _TRUE:
        return True
    if raw.lower() in _FALSE:
        return False
    raise SettingsError(f"{name} must be true or false (also 1/0, yes/no, on/off), got {raw!r}")


def _redis_url(env: Mapping[str, str]) -> str | None:
    raw = _get(env, "REDIS_URL")
    if raw is None:
        return None
    try:
        parts = urlsplit(raw)
        valid = parts.scheme in _REDIS_SCHEMES and (parts.scheme == "unix" or bool(parts.hostname))
        _ = parts.port  # raises ValueError on a port that is not a number
    except ValueError:
        valid = False
    if not valid:
        # The URL may hold a password: show only its scheme.
        scheme = raw.split("://", 1)[0] if "://" in raw else raw[:12]
        raise SettingsError(
            "REDIS_URL must look like redis://host:6379/0 (or rediss://, unix://), "
            f"got a value starting with {scheme!r}"
        )
    return raw


def _data_dir(env: Mapping[str, str], cwd: Path | None) -> Path:
    raw = _get(env, "DEMO_DATA_DIR")
    base = cwd if cwd is not None else Path.cwd()
    path = Path(raw).expanduser() if raw is not None else Path(".demo-data")
    if not path.is_absolute():
        path = base / path
    path = path.resolve()
    if path.exists() and not path.is_dir():
        raise SettingsError(f"DEMO_DATA_DIR must be a directory, but {path} is a file")
    return path


def ensure_data_dir(path: Path) -> Path:
    """Creates the data folder (mode 0700) when something needs it; SettingsError when it cannot."""
    try:
        path.mkdir(mode=0o700, parents=True, exist_ok=True)
    except OSError as exc:
        raise SettingsError(f"cannot create DEMO_DATA_DIR {path}: {exc.strerror or exc}") from exc
    return path
