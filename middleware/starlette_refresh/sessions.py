"""Session lifecycle: login, refresh (rotation), logout, listing and revocation.

This layer turns store verdicts into tokens and errors and writes the security log. It knows
nothing about HTTP.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from .access_tokens import AccessTokenCodec, check_app_claims
from .clock import Clock
from .devices import device_label
from .errors import InvalidGrant, StoreUnavailable
from .observe import NullObserver, Observer, RefreshOutcome, RevocationKind, log_fields
from .refresh_tokens import RefreshToken, RefreshTokenCodec, fingerprint
from .revocations import RevocationList, entry_for
from .session_records import MAX_SUBJECT_BYTES
from .settings import Settings
from .shared_clock import CLOCK_AGREEMENT_SECONDS
from .store import Rotation, SessionStore

logger = logging.getLogger("starlette_refresh.sessions")


@dataclass(frozen=True, slots=True)
class _Answer:
    """How the service answers one store verdict on a refresh: the outcome it reports, the log line
    (``%(where)s``, ``%(generation)d`` and ``%(stored)d`` are filled in), whether the session ends
    (reuse), and the refusal's description, or None when new tokens are issued."""

    outcome: RefreshOutcome
    level: int
    message: str
    refusal: str | None = None
    ends_session: bool = False


_INVALID_OR_REVOKED = "refresh token is invalid or revoked"
_REVOKED = _Answer("revoked", logging.INFO, "refresh refused (revoked): %(where)s", _INVALID_OR_REVOKED)
_AHEAD = _Answer(
    "rotated",
    logging.WARNING,
    "refresh ahead of store: %(where)s while the store had gen %(stored)d (lost writes?); rotated",
)
# A missing record reads as revoked: Redis deletes a session's record both when it is revoked and
# when its idle lifetime runs out.
_ANSWERS: dict[str, _Answer] = {
    "rotated": _Answer("rotated", logging.INFO, "refresh rotated: %(where)s -> gen %(generation)d"),
    "grace": _Answer(
        "grace", logging.INFO, "refresh within grace: %(where)s answered with current gen %(generation)d"
    ),
    "reused": _Answer(
        "reused",
        logging.WARNING,
        "SECURITY refresh token reuse detected: %(where)s, current gen was %(generation)d; session revoked",
        "refresh token was already used; the session has been revoked",
        ends_session=True,
    ),
    "expired": _Answer("expired", logging.INFO, "refresh refused (expired): %(where)s", "session expired"),
    "revoked": _REVOKED,
    "missing": _Answer("revoked", logging.INFO, "refresh refused (missing): %(where)s", _INVALID_OR_REVOKED),
}


def _answer_to(verdict: Rotation, token: RefreshToken) -> _Answer:
    """The answer to a store verdict; a rotation from a token ahead of the store is logged apart."""
    if verdict.outcome == "rotated" and verdict.stored_generation < token.generation:
        return _AHEAD
    return _ANSWERS.get(verdict.outcome, _REVOKED)


@dataclass(frozen=True, slots=True)
class IssuedSession:
    """The answer to a login or refresh: a new access token and the session's refresh token."""

    access_token: str
    expires_in: int
    refresh_token: str
    refresh_expires_in: int
    session_id: str
    subject: str
    #: The access token's claims, as signed (so its minter need not verify it to know them).
    access_claims: Mapping[str, Any] = field(default_factory=dict)


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
    """Owns the rules; the store owns atomicity. Reports each decision to ``observer``."""

    def __init__(
        self,
        settings: Settings,
        store: SessionStore,
        access: AccessTokenCodec,
        refresh: RefreshTokenCodec,
        clock: Clock,
        revocations: RevocationList,
        *,
        observer: Observer | None = None,
    ) -> None:
        self.revocations = revocations
        self.observer: Observer = observer if observer is not None else NullObserver()
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
        if len(subject.encode()) > MAX_SUBJECT_BYTES:
            raise ValueError(
                f"subject must be at most {MAX_SUBJECT_BYTES} bytes as UTF-8 (a stored length is 16 bits)"
            )
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
            device_label(user_agent),
            now_ms,
            idle,
            absolute,
            self.settings.max_sessions_per_user,
        )
        self.observer.login()
        if evicted:
            logger.info(
                "session limit reached: evicted %d oldest session(s) of user %s: %s",
                len(evicted),
                tag,
                ", ".join(evicted),
                extra=log_fields("session_evicted", user=tag, sessions=evicted),
            )
            await self._end_sessions("evicted", tag, evicted)
        issued = self._issue(subject, json.loads(claims_json), tag, session_id, 0, idle, now_ms)
        refresh_fingerprint = fingerprint(issued.refresh_token)
        logger.info(
            "login: new session %s for user %s (refresh %s)",
            session_id,
            tag,
            refresh_fingerprint,
            extra=log_fields(
                "login", user=tag, session=session_id, generation=0, fingerprint=refresh_fingerprint
            ),
        )
        return issued

    async def refresh(self, raw_token: str) -> IssuedSession:
        """Rotates ``raw_token``; raises :class:`InvalidGrant` or ``StoreUnavailable``.

        Reports exactly one outcome per call to the observer.
        """
        try:
            token = self._parse(raw_token, "refresh")
        except InvalidGrant:
            self.observer.refresh("invalid")
            raise
        if self.revocations.is_revoked(token.session_id):
            await self._refuse_revoked(token, fingerprint(raw_token))
        now_ms = self._now_ms()
        try:
            verdict = await self.store.rotate(
                token.user_tag,
                token.session_id,
                token.generation,
                now_ms,
                int(self.settings.refresh_grace * 1000),
                self.settings.refresh_ttl * 1000,
            )
        except StoreUnavailable:  # counted as this refresh's outcome; the 503 itself is the endpoint's
            self.observer.refresh("unavailable")
            raise
        answer = _answer_to(verdict, token)
        # Counted before anything else can fail: a reuse stays a reuse even if announcing it does not.
        self.observer.refresh(answer.outcome)
        if logger.isEnabledFor(answer.level):  # build the line only for a logger that keeps it
            presented = fingerprint(raw_token)
            where = f"session {token.session_id} gen {token.generation} (refresh {presented})"
            details = {"where": where, "generation": verdict.generation, "stored": verdict.stored_generation}
            logger.log(
                answer.level, answer.message, details, extra=self._refresh_fields(answer, token, presented)
            )
        if answer.ends_session:
            await self._end_sessions("reuse", token.user_tag, [token.session_id])
        if answer.refusal is not None:
            raise InvalidGrant(answer.refusal)
        return self._issue(
            verdict.subject,
            json.loads(verdict.claims_json),
            token.user_tag,
            token.session_id,
            verdict.generation,
            verdict.idle_expires_at_ms,
            now_ms,
        )

    async def _refuse_revoked(self, token: RefreshToken, presented: str) -> None:
        """Refuses a token of a session this process knows is revoked. Ends it in the store again,
        in case Redis lost the revocation (restored from an older snapshot) and would resurrect it."""
        try:
            await self.store.revoke(token.user_tag, token.session_id, None, self._now_ms())
        except StoreUnavailable:
            self.observer.refresh("unavailable")
            raise
        self.observer.refresh("revoked")
        logger.warning(
            "refresh refused: session %s is revoked (refresh %s); ended it in the store again",
            token.session_id,
            presented,
            extra=self._refresh_fields(_REVOKED, token, presented),
        )
        raise InvalidGrant(_REVOKED.refusal or "")

    async def logout(self, raw_token: str | None, session_hint: tuple[str, str] | None = None) -> None:
        """Ends the session named by a refresh token, or by ``(subject, session id)`` from an access token.

        Idempotent: an unknown or already ended session is not an error.
        """
        presented = fingerprint(raw_token) if raw_token else None
        if raw_token:
            try:
                token = self.refresh_codec.parse(raw_token)
            except InvalidGrant:
                logger.info(
                    "logout with an invalid refresh token (%s); nothing to end",
                    presented,
                    extra=log_fields("logout", outcome="invalid", fingerprint=presented),
                )
                return
            tag, session_id, owner = token.user_tag, token.session_id, None
        elif session_hint is not None:
            owner, session_id = session_hint
            tag = self.refresh_codec.user_tag(owner)
        else:
            return
        ended = await self.store.revoke(tag, session_id, owner, self._now_ms())
        # Announced even when already gone: an earlier attempt may have ended it and then failed to
        # announce it.
        await self._end_sessions("logout", tag, [session_id] if ended else [], announce=[session_id])
        logger.info(
            "logout: session %s %s",
            session_id,
            "ended" if ended else "was already gone",
            extra=log_fields(
                "logout",
                outcome="ended" if ended else "already_gone",
                user=tag,
                session=session_id,
                fingerprint=presented,
            ),
        )

    async def logout_all(self, subject: str, *, keep: str | None = None) -> int:
        """Ends every session of ``subject``, or every one but the session ``keep``; returns how many
        were alive.

        Without ``keep`` the store ends them all in one atomic step, so none that existed survives.
        With ``keep`` they are ended one by one, and a session created meanwhile is not ended.
        """
        tag = self.refresh_codec.user_tag(subject)
        if keep is None:
            ended = await self.store.revoke_all(tag, self._now_ms())
            await self._end_sessions("logout_all", tag, ended)
        else:
            ended = await self._end_all_but(tag, subject, keep)
        logger.info(
            "logout-all: ended %d session(s) of user %s",
            len(ended),
            tag,
            extra=log_fields("logout_all", outcome="ended", user=tag, sessions=ended),
        )
        return len(ended)

    async def _end_all_but(self, tag: str, subject: str, keep: str) -> list[str]:
        """Ends every listed session of the user but ``keep``; returns the ids of those that ended.

        No store script ends all but one session, so this lists them and ends each through the
        per-session revoke (one round trip each, at most ``max_sessions_per_user``). A session created
        after the listing, say a login racing a password change, is not ended: it is as if it had
        started just after. An app that must end every session uses ``keep=None``, the atomic path.
        """
        now_ms = self._now_ms()
        listed = await self.store.list_sessions(tag, subject, now_ms)
        ended: list[str] = []
        try:
            for session in listed:
                if session.session_id != keep and await self.store.revoke(
                    tag, session.session_id, subject, now_ms
                ):
                    ended.append(session.session_id)
        finally:
            # Even when a later revoke fails: the sessions already ended must lose their access
            # tokens now, since a retry no longer lists them and so would never announce them.
            await self._end_sessions("logout_all", tag, ended)
        return ended

    async def revoke(self, subject: str, session_id: str) -> bool:
        """Ends one of ``subject``'s sessions; False when it is not theirs or not alive."""
        tag = self.refresh_codec.user_tag(subject)
        ended = await self.store.revoke(tag, session_id, subject, self._now_ms())
        await self._end_sessions("session_revoke", tag, [session_id] if ended else [])
        logger.info(
            "revoke: session %s %s",
            session_id,
            "ended" if ended else "not found for this user",
            extra=log_fields(
                "session_revoke", outcome="ended" if ended else "not_found", user=tag, session=session_id
            ),
        )
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
                user_agent=s.device,
                current=s.session_id == current_session_id,
            )
            for s in stored
        ]

    def _parse(self, raw_token: str, operation: str) -> RefreshToken:
        try:
            return self.refresh_codec.parse(raw_token)
        except InvalidGrant:
            presented = fingerprint(raw_token)
            logger.info(
                "%s refused: malformed or forged refresh token (%s)",
                operation,
                presented,
                extra=log_fields(operation, outcome="invalid", fingerprint=presented),
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
        # Counted from the moment read before the store decided: a logout the store runs after this
        # rotation announces a revocation from a later moment, which so outlasts this token.
        access = self.access.issue(subject, session_id, claims, issued_at=now_ms / 1000)
        return IssuedSession(
            access_token=access.token,
            expires_in=access.expires_in,
            refresh_token=self.refresh_codec.mint(tag, session_id, generation),
            refresh_expires_in=max(0, (idle_expires_at_ms - now_ms) // 1000),
            session_id=session_id,
            subject=subject,
            access_claims=access.claims,
        )

    async def _end_sessions(
        self,
        kind: RevocationKind,
        user_tag: str,
        ended: Sequence[str],
        *,
        announce: Sequence[str] | None = None,
    ) -> None:
        """The one path of every session that ends before its time: counts the ``ended`` ones (once
        the store has ended them, before announcing: a failed announcement answers 503 and the client's
        retry finds the session gone, so counting later would miss it), then makes the access tokens
        of ``announce`` (default: ``ended``) fail here at once and on every other process via Redis."""
        if ended:
            self.observer.revocation(kind, len(ended))
        session_ids = ended if announce is None else announce
        if not session_ids:
            return
        entries = [entry_for(user_tag, sid) for sid in session_ids]
        until = self.clock() + self.settings.access_ttl + self.settings.leeway + CLOCK_AGREEMENT_SECONDS
        self.revocations.add(entries, until)
        await self.store.publish_revocations(entries, int(until * 1000), self._now_ms())
        logger.info(
            "revocation announced: %s",
            ", ".join(session_ids),
            extra=log_fields("revocation_announced", user=user_tag, sessions=session_ids),
        )

    def _refresh_fields(self, answer: _Answer, token: RefreshToken, presented: str) -> dict[str, object]:
        return log_fields(
            "refresh",
            outcome=answer.outcome,
            user=token.user_tag,
            session=token.session_id,
            generation=token.generation,
            fingerprint=presented,
        )

    def _now_ms(self) -> int:
        return int(self.clock() * 1000)


def _iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, tz=UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
