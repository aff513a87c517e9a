"""The stored format of a user's sessions: one Redis string per user, read here and in the Lua scripts.

Format 2 (the version is the value's first byte; integers are unsigned big-endian, times Unix ms)::

    value   = "2" u16:len subject record*
    record  = u16:len body                       (len counts the body's bytes)
    body    = u48:idle_expiry session_id(22) u56:generation u48:created u48:rotated
              u48:absolute_expiry u8:len label claims

``claims`` runs to the end of the body and is empty for ``{}``. Fixed-width fields let a script read
a field with one ``string.byte`` and write one with one ``string.char``: the refresh is the hot path,
and text numbers cost more to parse and print in Lua than the rest of the script. The idle expiry
leads each record so a script can skip records without decoding them.

Why a string and not a hash per session: two keys per session cost about 200 bytes of key, expiry
and index overhead before any data, and a browser's User-Agent pushed a hash out of Redis's compact
encoding. One string per user has one key and one expiry (its latest session's), needs no index
(a session is alive while it is in its user's string), ends every session of a user with one
``DEL``, and has no encoding threshold to fall off. Format 1 (a hash per session and a sorted set
per user, written by 0.1) is still read, and converted on a session's next rotation.

This module is the Python side (the session list, tests and benchmarks); :mod:`.lua` is the other.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

FORMAT = b"2"
SESSION_ID_CHARS = 22
MAX_LABEL_BYTES = 255
MAX_SUBJECT_BYTES = 0xFFFF
_FIXED = struct.Struct(">6s22s7s6s6s6sB")  # the body up to the label


@dataclass(frozen=True, slots=True)
class SessionRecord:
    """One session as format 2 stores it."""

    session_id: str
    generation: int
    created_at_ms: int
    rotated_at_ms: int
    idle_expires_at_ms: int
    absolute_expires_at_ms: int
    label: str = ""
    claims_json: str = "{}"


@dataclass(frozen=True, slots=True)
class UserRecord:
    """Everything format 2 stores for one user."""

    subject: str
    sessions: tuple[SessionRecord, ...]

    def find(self, session_id: str) -> SessionRecord | None:
        """The session with that id, if stored."""
        return next((s for s in self.sessions if s.session_id == session_id), None)


class FormatError(ValueError):
    """A stored value that is not a session record this release can read."""


def encode(user: UserRecord) -> bytes:
    """The stored value of ``user`` (the scripts write the same bytes)."""
    subject = user.subject.encode()
    return b"".join([FORMAT, len(subject).to_bytes(2, "big"), subject, *map(_encode_session, user.sessions)])


def _encode_session(s: SessionRecord) -> bytes:
    label = s.label.encode()[:MAX_LABEL_BYTES]
    body = _FIXED.pack(
        s.idle_expires_at_ms.to_bytes(6, "big"),
        s.session_id.encode(),
        s.generation.to_bytes(7, "big"),
        s.created_at_ms.to_bytes(6, "big"),
        s.rotated_at_ms.to_bytes(6, "big"),
        s.absolute_expires_at_ms.to_bytes(6, "big"),
        len(label),
    )
    body += label + (b"" if s.claims_json == "{}" else s.claims_json.encode())
    return len(body).to_bytes(2, "big") + body


def decode(value: bytes) -> UserRecord:
    """Reads a stored value; raises :class:`FormatError` for anything else."""
    if value[:1] != FORMAT:
        raise FormatError(f"not a format-2 session record (starts with {value[:1]!r})")
    try:
        subject, at = _chunk(value, 1)
        sessions = []
        while at < len(value):
            body, at = _chunk(value, at)
            sessions.append(_decode_session(body))
        return UserRecord(subject.decode(), tuple(sessions))
    except (ValueError, struct.error) as exc:
        raise FormatError(f"malformed format-2 session record: {exc}") from exc


def _chunk(value: bytes, at: int) -> tuple[bytes, int]:
    """The bytes at ``at`` after their 16-bit length, and where the next item starts."""
    if at + 2 > len(value):
        raise ValueError("a length runs past the end of the value")
    end = at + 2 + int.from_bytes(value[at : at + 2], "big")
    if end > len(value):
        raise ValueError("a length runs past the end of the value")
    return value[at + 2 : end], end


def _decode_session(body: bytes) -> SessionRecord:
    exp, session_id, gen, created, rotated, absolute, label_bytes = _FIXED.unpack_from(body)
    label_end = _FIXED.size + label_bytes
    if label_end > len(body):
        raise ValueError("a label runs past the end of its record")
    claims = body[label_end:].decode()
    return SessionRecord(
        session_id=session_id.decode(),
        generation=int.from_bytes(gen, "big"),
        created_at_ms=int.from_bytes(created, "big"),
        rotated_at_ms=int.from_bytes(rotated, "big"),
        idle_expires_at_ms=int.from_bytes(exp, "big"),
        absolute_expires_at_ms=int.from_bytes(absolute, "big"),
        label=body[_FIXED.size : label_end].decode(errors="replace"),
        claims_json=claims or "{}",
    )
