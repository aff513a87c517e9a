"""Session lifecycle: login, refresh (rotation), logout, listing and revocation.

This layer turns store verdicts into tokens and errors and writes the security log. It knows
nothing about HTTP.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from .access_tokens import AccessTokenCodec, check_app_claims
from .clock import Clock
from .errors import InvalidGrant
from .refresh_tokens import RefreshToken, RefreshTokenCodec, fingerprint
from .revocations import RevocationList, entry_for
from .settings import Settings
from .store import SessionStore

logger = logging.getLogger("starlette_refresh.sessions")

MAX_USER_AGENT_CHARS = 256


@dataclass(frozen=True, slots=True)
class IssuedSession:
    """The answer to a login or refresh: a new access token and the session's refresh token."""

    access_token: str
    expires_in: int
    refresh_token: str
    refresh_expires_in: int
    session_id: str
    subject: str


@dataclass(frozen=True, slots=True)
class SessionInfo:
    """One session as shown to its user."""

    id: str
    created_at: str
    last_used_at: str
    user_agent: str
    current: bool

    def as_json(self) -> dict[str, Any]:
        """The contract's JSON shape."""
        return {
            "id": self.id,
            "created_at": self.created_at,
            "last_used_at": self.last_used_at,
            "user_agent": self.user_agent,
            "current": self.current,
        }


class SessionService:
    """Owns the rules; the store owns atomicity."""

    def __init__(
        self,
        settings: Settings,
        store: SessionStore,
        access: AccessTokenCodec,
        refresh: RefreshTokenCodec,
        clock: Clock,
        revocations: RevocationList,
    ) -> None:
        self.revocations = revocations
        self.settings = settings
        self.store = store
        self.access = access
        self.refresh_codec = refresh
        self.clock = clock

    async def login(
        self,
        subject: str,
        claims: Mapping[str, Any] | None = None,
        user_agent: str = "",
    ) -> IssuedSession:
        """Creates a session (a new token family) and returns its first tokens."""
        if not isinstance(subject, str) or not subject:
            raise ValueError("subject must be a non-empty string")
        claims_json = check_app_claims(claims, self.settings.max_claims_bytes)
        now_ms = self._now_ms()
        tag = self.refresh_codec.user_tag(subject)
        session_id = self.refresh_codec.new_session_id()
        absolute = now_ms + self.settings.absolute_ttl * 1000
        idle = min(now_ms + self.settings.refresh_ttl * 1000, absolute)
        evicted = await self.store.create(
            tag,
            session_id,
            subject,
            claims_json,
            user_agent[:MAX_USER_AGENT_CHARS],
            now_ms,
            idle,
            absolute,
            self.settings.max_sessions_per_user,
        )
        if evicted:
            logger.info(
                "session limit reached: evicted %d oldest session(s) of user %s: %s",
                len(evicted),
                tag,
                ", ".join(evicted),
            )
            await self._announce(tag, evicted)
        issued = self._issue(subject, json.loads(claims_json), tag, session_id, 0, idle, now_ms)
        logger.info(
            "login: new session %s for user %s (refresh %s)",
            session_id,
            tag,
            fingerprint(issued.refresh_token),
        )
        return issued

    async def refresh(self, raw_token: str) -> IssuedSession:
        """Rotates ``raw_token``; raises :class:`InvalidGrant` or ``StoreUnavailable``."""
        token = self._parse(raw_token, "refresh")
        if self.revocations.is_revoked(token.session_id):
            # Revoked, yet presented: end it in the store again, in case Redis lost the
            # revocation (restored from an older snapshot) and would otherwise resurrect it.
            await self.store.revoke(token.user_tag, token.session_id, None, self._now_ms())
            logger.warning(
                "refresh refused: session %s is revoked (refresh %s); ended it in the store again",
                token.session_id,
                fingerprint(raw_token),
            )
            raise InvalidGrant("refresh token is invalid or revoked")
        now_ms = self._now_ms()
        verdict = await self.store.rotate(
            token.user_tag,
            token.session_id,
            token.generation,
            now_ms,
            int(self.settings.refresh_grace * 1000),
            self.settings.refresh_ttl * 1000,
        )
        where = f"session {token.session_id} gen {token.generation} (refresh {fingerprint(raw_token)})"
        if verdict.outcome in ("rotated", "grace"):
            if verdict.outcome == "grace":
                logger.info(
                    "refresh within grace: %s answered with current gen %d", where, verdict.generation
                )
            elif verdict.stored_generation < token.generation:
                logger.warning(
                    "refresh ahead of store: %s while the store had gen %d (lost writes?); rotated",
                    where,
                    verdict.stored_generation,
                )
            else:
                logger.info("refresh rotated: %s -> gen %d", where, verdict.generation)
            claims = json.loads(verdict.claims_json)
            return self._issue(
                verdict.subject,
                claims,
                token.user_tag,
                token.session_id,
                verdict.generation,
                verdict.idle_expires_at_ms,
                now_ms,
            )
        if verdict.outcome == "reused":
            logger.warning(
                "SECURITY refresh token reuse detected: %s, current gen was %d; session revoked",
                where,
                verdict.generation,
            )
            await self._announce(token.user_tag, [token.session_id])
            raise InvalidGrant("refresh token was already used; the session has been revoked")
        logger.info("refresh refused (%s): %s", verdict.outcome, where)
        if verdict.outcome == "expired":
            raise InvalidGrant("session expired")
        raise InvalidGrant("refresh token is invalid or revoked")

    async def logout(self, raw_token: str | None, session_hint: tuple[str, str] | None = None) -> None:
        """Ends the session named by a refresh token, or by ``(subject, session id)`` from an access token.

        Idempotent: an unknown or already ended session is not an error.
        """
        if raw_token:
            try:
                token = self.refresh_codec.parse(raw_token)
            except InvalidGrant:
                logger.info(
                    "logout with an invalid refresh token (%s); nothing to end", fingerprint(raw_token)
                )
                return
            ended = await self.store.revoke(token.user_tag, token.session_id, None, self._now_ms())
            # Announced even when already gone: an earlier attempt may have ended it and then
            # failed to announce it.
            await self._announce(token.user_tag, [token.session_id])
            logger.info("logout: session %s %s", token.session_id, "ended" if ended else "was already gone")
            return
        if session_hint is not None:
            subject, session_id = session_hint
            tag = self.refresh_codec.user_tag(subject)
            ended = await self.store.revoke(tag, session_id, subject, self._now_ms())
            await self._announce(tag, [session_id])
            logger.info("logout: session %s %s", session_id, "ended" if ended else "was already gone")

    async def logout_all(self, subject: str) -> int:
        """Ends every session of ``subject``; returns how many were alive."""
        tag = self.refresh_codec.user_tag(subject)
        ended = await self.store.revoke_all(tag, self._now_ms())
        await self._announce(tag, ended)
        logger.info("logout-all: ended %d session(s) of user %s", len(ended), tag)
        return len(ended)

    async def revoke(self, subject: str, session_id: str) -> bool:
        """Ends one of ``subject``'s sessions; False when it is not theirs or not alive."""
        tag = self.refresh_codec.user_tag(subject)
        ended = await self.store.revoke(tag, session_id, subject, self._now_ms())
        if ended:
            await self._announce(tag, [session_id])
        logger.info("revoke: session %s %s", session_id, "ended" if ended else "not found for this user")
        return ended

    async def list_sessions(self, subject: str, current_session_id: str) -> list[SessionInfo]:
        """The subject's live sessions, oldest first."""
        tag = self.refresh_codec.user_tag(subject)
        stored = await self.store.list_sessions(tag, subject, self._now_ms())
        return [
            SessionInfo(
                id=s.session_id,
                created_at=_iso(s.created_at_ms),
                last_used_at=_iso(s.last_used_at_ms),
                user_agent=s.user_agent,
                current=s.session_id == current_session_id,
            )
            for s in stored
        ]

    def parse_refresh_token(self, raw_token: str) -> RefreshToken:
        """Shape and MAC check only (no store access)."""
        return self._parse(raw_token, "parse")

    def _parse(self, raw_token: str, operation: str) -> RefreshToken:
        try:
            return self.refresh_codec.parse(raw_token)
        except InvalidGrant:
            logger.info(
                "%s refused: malformed or forged refresh token (%s)", operation, fingerprint(raw_token)
            )
            raise

    def _issue(
        self,
        subject: str,
        claims: Mapping[str, Any],
        tag: str,
        session_id: str,
        generation: int,
        idle_expires_at_ms: int,
        now_ms: int,
    ) -> IssuedSession:
        access = self.access.issue(subject, session_id, claims)
        return IssuedSession(
            access_token=access.token,
            expires_in=access.expires_in,
            refresh_token=self.refresh_codec.mint(tag, session_id, generation),
            refresh_expires_in=max(0, (idle_expires_at_ms - now_ms) // 1000),
            session_id=session_id,
            subject=subject,
        )

    async def _announce(self, user_tag: str, session_ids: Sequence[str]) -> None:
        """Makes the sessions' access tokens fail here at once, and on every other process via Redis."""
        if not session_ids:
            return
        entries = [entry_for(user_tag, sid) for sid in session_ids]
        until = self.clock() + self.settings.access_ttl + self.settings.leeway
        self.revocations.add(entries, until)
        await self.store.publish_revocations(entries, int(until * 1000), self._now_ms())
        logger.info("revocation announced: %s", ", ".join(session_ids))

    def _now_ms(self) -> int:
        return int(self.clock() * 1000)


def _iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, tz=UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
