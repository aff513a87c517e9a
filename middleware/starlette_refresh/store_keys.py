"""Where the store keeps what, laid out for Redis Cluster from the start.

Every key of one user carries the user's tag in braces, a Cluster hash tag, so one script call only
ever touches keys of one slot. The revocation record has its own tag.
"""

from __future__ import annotations


class KeyLayout:
    """The names of the store's keys and channel under one ``key_prefix``."""

    __slots__ = ("_prefix",)

    def __init__(self, key_prefix: str) -> None:
        self._prefix = key_prefix

    def user(self, user_tag: str) -> str:
        """The string that holds every session of one user (format 2, :mod:`.session_records`)."""
        return f"{self._prefix}{{{user_tag}}}"

    def session(self, user_tag: str, session_id: str) -> str:
        """The hash of one session in format 1 (release 0.1), still read and converted."""
        return f"{self._prefix}{{{user_tag}}}:s:{session_id}"

    def index(self, user_tag: str) -> str:
        """Format 1's sorted set of a user's live sessions, scored by idle expiry (ms)."""
        return f"{self._prefix}{{{user_tag}}}:u"

    def for_session(self, user_tag: str, session_id: str) -> list[str]:
        """The keys every per-session script takes, in the order the scripts expect: the user's
        string, then the session's format-1 hash and index."""
        return [self.user(user_tag), self.session(user_tag, session_id), self.index(user_tag)]

    @property
    def revocations(self) -> str:
        """The sorted set of recently revoked sessions (``<user tag>.<session id>``), scored by expiry."""
        return f"{self._prefix}{{revocations}}"

    @property
    def format_marker(self) -> str:
        """A channel nobody publishes on: processes that write format 2 subscribe to it beside
        :attr:`channel`, so the subscribers of one and not the other are processes of 0.1
        (:mod:`.format_watch`)."""
        return f"{self._prefix}format:2"

    @property
    def channel(self) -> str:
        """The pub/sub channel that tells every app process about a revocation at once."""
        return f"{self._prefix}revocations"
