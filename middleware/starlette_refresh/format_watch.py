"""Which stored format this process writes: 2, or 1 while processes of release 0.1 still serve.

During a rolling deploy from 0.1, old and new processes serve the same users at once. 0.1 reads
only format 1, so a session this release had moved into format 2 would be refused there: its user
logged out. Every process subscribes to the revocation channel; this release also subscribes, in the
same ``SUBSCRIBE`` on the same connection, to a marker channel (``{prefix}format:2``). ``PUBSUB NUMSUB``
counts each channel's subscribers (on every node of a Cluster), so the difference is the number of
0.1 processes connected. A process counts them at startup; while any is connected it writes format
1 (it reads both) and counts again every ``CHECK_INTERVAL_SECONDS``; once none has been seen for two
counts in a row, it writes format 2 for good, and sessions move over on their next rotation.

A rollback to 0.1 after the deploy has finished is the case this does not cover: sessions already in
format 2 are refused by 0.1 (their users log in again). Roll back while processes of this release
still run beside 0.1 ones, or accept that.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Protocol

from redis import exceptions as redis_errors

from .errors import StoreUnavailable

logger = logging.getLogger("starlette_refresh.store")

CHECK_INTERVAL_SECONDS = 10.0
#: Readings without an 0.1 process before format 2 is written again: one reading could fall while an
#: 0.1 process's subscription is reconnecting.
CLEAR_READINGS = 2


class FormatStore(Protocol):
    write_format: int

    async def older_processes(self) -> int: ...


class FormatWatch:
    """Sets ``store.write_format`` from what ``store.older_processes()`` reports, now and every
    ``interval`` seconds."""

    def __init__(self, store: FormatStore, interval: float | None = None) -> None:
        self._store = store
        self.interval = CHECK_INTERVAL_SECONDS if interval is None else interval
        self._clear = 0

    async def check(self, *, first: bool = False) -> None:
        """Reads the count once. The first reading (at startup) decides on its own."""
        try:
            older = await self._store.older_processes()
        except redis_errors.ResponseError as exc:  # PUBSUB refused by an ACL
            logger.warning(
                "cannot count processes of starlette-refresh 0.1 (PUBSUB NUMSUB: %s); writing sessions in "
                "format 2, which 0.1 cannot read: allow PUBSUB for a rolling upgrade from 0.1",
                exc,
            )
            self._store.write_format = 2
            return
        if older:
            self._clear = 0
            self._set(
                1,
                f"{older} process(es) of starlette-refresh 0.1 share this store: writing sessions in "
                "format 1, which they read, until they are gone",
            )
            return
        self._clear += 1
        if first or self._clear >= CLEAR_READINGS:
            self._set(
                2, "no process of starlette-refresh 0.1 shares this store: writing sessions in format 2"
            )

    @property
    def writes_format1(self) -> bool:
        """True while the store writes format 1 (processes of 0.1 were counted)."""
        return self._store.write_format == 1

    async def keep_watching(self) -> None:
        """Checks every ``interval`` seconds until format 2 is written (or until cancelled); a store
        outage keeps the format."""
        while self.writes_format1:
            await asyncio.sleep(self.interval)
            with contextlib.suppress(StoreUnavailable):
                await self.check()

    def _set(self, write_format: int, why: str) -> None:
        if self._store.write_format == write_format:
            return
        self._store.write_format = write_format
        if write_format == 1:
            logger.warning(why)
        else:
            logger.info(why)
