"""Revocation that reaches access tokens on every app instance within a second.

Each process keeps the recently revoked sessions in memory (:class:`RevocationList`), so checking an
access token costs a dict lookup and no Redis round trip. :class:`RevocationFeed` keeps that list
current: it subscribes to the revocations channel and, on every (re)connect, reloads the durable
record from Redis. An entry lives as long as the access tokens it could stop (``access_ttl`` plus
the leeway); after that every token of the session has expired on its own.

When the feed is down (Redis unreachable or partitioned from this process), the process keeps the
entries it has and keeps accepting other valid tokens: a store outage must not log anyone out, and no
revocation can be made through a Redis that nobody reaches. Revocations made elsewhere during a
partition apply here as soon as the feed reconnects. ``status()`` says which state the feed is in.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from .clock import Clock
from .errors import StoreUnavailable
from .outages import outage_of
from .store import SessionStore

logger = logging.getLogger("starlette_refresh.revocations")


def entry_for(user_tag: str, session_id: str) -> str:
    """The record of one revoked session: ``<user tag>.<session id>`` (neither contains a dot)."""
    return f"{user_tag}.{session_id}"


class RevocationList:
    """Revoked sessions known to this process, each until a time on the injected clock."""

    def __init__(self, clock: Clock) -> None:
        self._clock = clock
        self._until: dict[str, float] = {}  # session id -> until (s)
        self._entries: dict[str, str] = {}  # session id -> entry (keeps the user tag for repairs)
        self._watchers: dict[str, set[Callable[[], None]]] = {}  # session id -> told when revoked

    def __len__(self) -> int:
        return len(self._until)

    def is_revoked(self, session_id: str) -> bool:
        """True while ``session_id`` is revoked; the per-request check, O(1)."""
        until = self._until.get(session_id)
        return until is not None and until > self._clock()

    def watch(self, session_id: str, on_revoked: Callable[[], None]) -> Callable[[], None]:
        """Calls ``on_revoked()`` once ``session_id`` is revoked (at once if it already is); returns
        the function that stops watching. Open WebSockets use it to end with their session."""
        if self.is_revoked(session_id):
            on_revoked()
            return _nothing
        watchers = self._watchers.setdefault(session_id, set())
        watchers.add(on_revoked)

        def unwatch() -> None:
            watchers.discard(on_revoked)
            if not watchers and self._watchers.get(session_id) is watchers:
                del self._watchers[session_id]

        return unwatch

    def add(self, entries: Iterable[str], until: float) -> None:
        """Records revoked sessions (``entry_for`` strings) until ``until`` seconds."""
        for entry in entries:
            session_id = entry.rpartition(".")[2]
            if until > self._until.get(session_id, 0.0):
                self._until[session_id] = until
                self._entries[session_id] = entry
            if session_id in self._watchers and self.is_revoked(session_id):
                for on_revoked in self._watchers.pop(session_id):
                    on_revoked()

    def known(self) -> frozenset[str]:
        """The entries in force now."""
        now = self._clock()
        return frozenset(self._entries[sid] for sid, until in self._until.items() if until > now)

    def merge(self, durable: Mapping[str, int], known_before: frozenset[str]) -> dict[str, float]:
        """Adopts the durable record (entry -> until ms); returns what it lacks of the entries in
        force when it was read (``known_before``). An entry added since, by a logout that landed
        while the record was being read, is not missing from it."""
        missing = {
            self._entries[sid]: until
            for sid, until in self._until.items()
            if until > self._clock()
            and self._entries[sid] in known_before
            and self._entries[sid] not in durable
        }
        for entry, until_ms in durable.items():
            self.add([entry], until_ms / 1000)
        return missing

    def prune(self) -> None:
        """Forgets entries whose access tokens have all expired."""
        now = self._clock()
        for sid in [sid for sid, until in self._until.items() if until <= now]:
            del self._until[sid]
            del self._entries[sid]


class RevocationFeed:
    """Keeps a :class:`RevocationList` in step with Redis: pub/sub, plus a reload on reconnect."""

    def __init__(
        self,
        store: SessionStore,
        revocations: RevocationList,
        clock: Clock,
        *,
        ping_interval: float = 5.0,
        retry_delay: float = 1.0,
    ) -> None:
        self.store = store
        self.revocations = revocations
        self.clock = clock
        self.ping_interval = ping_interval
        self.retry_delay = retry_delay
        self.live = False
        self._since: float | None = None
        self._task: asyncio.Task[None] | None = None
        self._stopping = False
        self._loaded: asyncio.Event | None = None  # set once the durable record has been read

    def status(self) -> dict[str, Any]:
        """``{"live": bool, "since": seconds or None, "entries": n}`` for health checks."""
        return {"live": self.live, "since": self._since, "entries": len(self.revocations)}

    async def start(self) -> None:
        """Starts following revocations in the background."""
        if self._task is None:
            self._stopping = False
            self._loaded = asyncio.Event()  # of this event loop: a test may start the feed in several
            self._task = asyncio.create_task(self._run(), name="starlette-refresh revocation feed")

    async def ready(self, within: float) -> None:
        """Returns once the durable record is loaded: until then a token revoked before this process
        started would pass. Raises :class:`StoreUnavailable` after ``within`` seconds without it."""
        if self._loaded is None:
            raise RuntimeError("RevocationFeed.ready() before start()")
        try:
            await asyncio.wait_for(self._loaded.wait(), within)
        except TimeoutError:
            raise StoreUnavailable(
                f"could not load the revoked sessions from the store within {within:g}s"
            ) from None

    async def stop(self) -> None:
        """Stops the background task."""
        self._stopping = True
        task, self._task = self._task, None
        # A cancellation can be swallowed inside a client's own wait_for (Python 3.11), so cancel
        # until the task is done rather than once; the loops also check _stopping.
        while task is not None and not task.done():
            task.cancel()
            await asyncio.wait({task}, timeout=0.5)
        if task is not None and not task.cancelled():
            with contextlib.suppress(Exception):
                task.result()
        self._set_live(False)

    async def _run(self) -> None:
        failures = 0
        while not self._ending():
            try:
                await self._follow()
            except Exception as exc:
                self._lost(exc)
                if self.live:
                    failures = 0
                self._set_live(False)
            # A failover or a dropped connection usually heals at once, and every revocation made
            # meanwhile waits for this reconnect: retry quickly first, then back off to retry_delay.
            await asyncio.sleep(min(self.retry_delay, 0.05 * 2**failures))
            failures += 1

    def _ending(self) -> bool:
        """True once stop() was called or this task was cancelled, even if a client's own wait_for
        swallowed the cancellation (Python 3.11): an event loop closing without a lifespan shutdown
        cancels each task once, and a feed that carried on would keep the loop from closing."""
        task = asyncio.current_task()
        return self._stopping or (task is not None and task.cancelling() > 0)

    def _lost(self, exc: Exception) -> None:
        """Says why the feed dropped. An outage (the store's own classification) is expected and
        said once per loss; anything else is a bug, said with its traceback. The feed reconnects
        either way: a process must not silently stop hearing revocations."""
        if not isinstance(exc, StoreUnavailable) and outage_of(exc, "subscribe", self.ping_interval) is None:
            logger.error("revocation feed failed unexpectedly; reconnecting", exc_info=exc)
        elif self.live:
            logger.warning(
                "revocation feed lost (%s): keeping %d known revocations; reconnecting",
                exc,
                len(self.revocations),
            )

    async def _follow(self) -> None:
        async with self.store.subscription() as pubsub:
            await self._catch_up()
            if self._loaded is not None:
                self._loaded.set()
            self._set_live(True)
            while not self._ending():
                message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=self.ping_interval)
                if message is None:
                    # Quiet channel: make sure the connection is still there (a paused or
                    # partitioned Redis never closes it).
                    await asyncio.wait_for(pubsub.ping(), timeout=self.ping_interval)
                elif message.get("type") == "message":
                    self._receive(message.get("data"))
                self.revocations.prune()

    async def _catch_up(self) -> None:
        """Loads the durable record; writes back what Redis lost (a restore from an old snapshot)."""
        now_ms = int(self.clock() * 1000)
        known_before = self.revocations.known()
        missing = self.revocations.merge(await self.store.load_revocations(now_ms), known_before)
        if not missing:
            return
        logger.warning(
            "the store lacks %d revocations this process knows (restored from an older snapshot?); "
            "writing them back and ending those sessions again",
            len(missing),
        )
        for entry, until in missing.items():
            user_tag, _, session_id = entry.partition(".")
            await self.store.revoke(user_tag, session_id, None, now_ms)
            await self.store.publish_revocations([entry], int(until * 1000), now_ms)

    def _receive(self, data: object) -> None:
        try:
            payload = json.loads(data)  # type: ignore[arg-type]
            entries, until_ms = payload["revoked"], payload["until"]
            if not isinstance(entries, list) or not isinstance(until_ms, int):
                raise TypeError("unexpected revocation message")
        except (ValueError, TypeError, KeyError) as exc:
            logger.warning("ignored a malformed revocation message: %s", exc)
            return
        self.revocations.add((e for e in entries if isinstance(e, str)), until_ms / 1000)
        logger.info("revocation received: %d session(s)", len(entries))

    def _set_live(self, live: bool) -> None:
        if live and not self.live:
            logger.info("revocation feed live (%d revocations in force)", len(self.revocations))
        if live != self.live:
            self._since = self.clock()
        self.live = live


def _nothing() -> None:
    """The unwatch of a session that was revoked before anyone watched it."""
