"""Refresh tokens: format, MAC, user tags and fingerprints.

Malformed tokens are built by hand with a valid MAC wherever the format allows one, so each case is
refused for its shape and not merely because the MAC happens to be wrong.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re

import pytest

from starlette_refresh import InvalidGrant, InvalidToken, TokenAuth
from starlette_refresh.refresh_tokens import MAX_GENERATION, RefreshToken, RefreshTokenCodec
from starlette_refresh.testing import fingerprint
from tests.apps import SECRET

SECRET_BYTES = SECRET.encode()
TAG = "0123456789abcdef0123"
SID = "AbCdEfGhIjKlMnOpQrSt_-"
TOKEN_SHAPE = re.compile(r"srt1\.[0-9a-f]{20}\.[A-Za-z0-9_-]{22}\.(0|[1-9][0-9]*)\.[A-Za-z0-9_-]{43}")


def hand_mac(body: str, secret: bytes = SECRET_BYTES) -> str:
    """The MAC as the format defines it: HMAC-SHA256 under a key derived from the secret."""
    mac_key = hmac.new(secret, b"starlette-refresh/refresh-token/v1", hashlib.sha256).digest()
    digest = hmac.new(mac_key, body.encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def signed(body: str) -> str:
    """``body`` plus a valid MAC: a token the server could have minted, shape aside."""
    return f"{body}.{hand_mac(body)}"


@pytest.fixture
def codec() -> RefreshTokenCodec:
    return RefreshTokenCodec(SECRET_BYTES)


def refused(codec: RefreshTokenCodec, token: str) -> None:
    with pytest.raises(InvalidGrant) as caught:
        codec.parse(token)
    assert type(caught.value) is InvalidGrant
    assert caught.value.description == "refresh token is invalid"
    assert caught.value.status_code == 400
    assert caught.value.error == "invalid_grant"


def test_hand_built_mac_matches_the_codec(codec: RefreshTokenCodec) -> None:
    # Guards every hand-built case below: their MACs are the real ones.
    assert codec.mint(TAG, SID, 7) == signed(f"srt1.{TAG}.{SID}.7")


# --------------------------------------------------------------------------- mint and parse


def test_mint_has_the_documented_shape(codec: RefreshTokenCodec) -> None:
    token = codec.mint(TAG, SID, 3)

    assert TOKEN_SHAPE.fullmatch(token)
    assert token.startswith(f"srt1.{TAG}.{SID}.3.")
    assert len(token) <= 256


def test_mint_is_deterministic(codec: RefreshTokenCodec) -> None:
    first = codec.mint(TAG, SID, 3)

    assert codec.mint(TAG, SID, 3) == first
    assert RefreshTokenCodec(SECRET_BYTES).mint(TAG, SID, 3) == first  # another worker, same secret


@pytest.mark.parametrize(
    ("tag", "sid", "generation"),
    [
        (TAG, SID, 4),
        (TAG, "BbCdEfGhIjKlMnOpQrSt_-", 3),
        ("1123456789abcdef0123", SID, 3),
    ],
)
def test_mint_differs_for_any_other_input(
    codec: RefreshTokenCodec, tag: str, sid: str, generation: int
) -> None:
    reference = codec.mint(TAG, SID, 3)
    other = codec.mint(tag, sid, generation)

    assert other != reference
    assert other.rsplit(".", 1)[1] != reference.rsplit(".", 1)[1]


@pytest.mark.parametrize("generation", [0, 1, 9, 10, 41, 123_456_789, MAX_GENERATION])
def test_parse_round_trip(codec: RefreshTokenCodec, generation: int) -> None:
    token = codec.mint(TAG, SID, generation)

    assert codec.parse(token) == RefreshToken(user_tag=TAG, session_id=SID, generation=generation)


def test_parse_round_trip_with_real_tag_and_session_id(codec: RefreshTokenCodec) -> None:
    tag = codec.user_tag("alice@example.com")
    sid = RefreshTokenCodec.new_session_id()

    assert codec.parse(codec.mint(tag, sid, 0)) == RefreshToken(user_tag=tag, session_id=sid, generation=0)


def test_new_session_ids_are_22_url_safe_chars_and_unique() -> None:
    ids = {RefreshTokenCodec.new_session_id() for _ in range(200)}

    assert len(ids) == 200
    assert all(re.fullmatch(r"[A-Za-z0-9_-]{22}", sid) for sid in ids)


def test_token_of_another_secret_is_refused(codec: RefreshTokenCodec) -> None:
    other = RefreshTokenCodec(b"another-secret-0123456789-0123456789-0123")
    token = other.mint(TAG, SID, 3)

    assert other.parse(token).generation == 3
    refused(codec, token)


def test_access_token_secret_is_not_the_refresh_mac_key(codec: RefreshTokenCodec) -> None:
    # Domain separation: a MAC computed with the raw secret (the HS256 access-token key) is refused.
    body = f"srt1.{TAG}.{SID}.3"
    raw = base64.urlsafe_b64encode(hmac.new(SECRET_BYTES, body.encode(), hashlib.sha256).digest())
    token = f"{body}.{raw.rstrip(b'=').decode()}"

    refused(codec, token)


# --------------------------------------------------------------------------- malformations

VALID = signed(f"srt1.{TAG}.{SID}.7")

MALFORMED = {
    "empty": "",
    "300-chars": VALID + "A" * (300 - len(VALID)),
    "prefix-srt2": signed(f"srt2.{TAG}.{SID}.7"),
    "prefix-SRT1": signed(f"SRT1.{TAG}.{SID}.7"),
    "prefix-missing": signed(f"{TAG}.{SID}.7"),
    "4-parts": signed(f"srt1.{TAG}.7"),
    "4-parts-no-generation": f"srt1.{TAG}.{SID}.{hand_mac(f'srt1.{TAG}.{SID}')}",
    "6-parts": signed(f"srt1.{TAG}.{SID}.7.extra"),
    "6-parts-trailing-dot": VALID + ".",
    "tag-uppercase": signed(f"srt1.{TAG.upper().replace('0', 'A')}.{SID}.7"),
    "tag-19": signed(f"srt1.{TAG[:19]}.{SID}.7"),
    "tag-21": signed(f"srt1.{TAG}a.{SID}.7"),
    "tag-non-hex": signed(f"srt1.{'g' * 20}.{SID}.7"),
    "tag-subject-in-clear": signed(f"srt1.alice@example.com.{SID}.7"),
    "sid-plus": signed(f"srt1.{TAG}.{SID[:-1]}+.7"),
    "sid-slash": signed(f"srt1.{TAG}.{SID[:-1]}/.7"),
    "sid-padding": signed(f"srt1.{TAG}.{SID[:-1]}=.7"),
    "sid-21": signed(f"srt1.{TAG}.{SID[:-1]}.7"),
    "sid-23": signed(f"srt1.{TAG}.{SID}A.7"),
    "sid-empty": signed(f"srt1.{TAG}..7"),
    "generation-leading-zero": signed(f"srt1.{TAG}.{SID}.07"),
    "generation-double-zero": signed(f"srt1.{TAG}.{SID}.00"),
    "generation-negative": signed(f"srt1.{TAG}.{SID}.-1"),
    "generation-plus": signed(f"srt1.{TAG}.{SID}.+7"),
    "generation-17-digits": signed(f"srt1.{TAG}.{SID}.{'1' * 17}"),
    "generation-above-max": signed(f"srt1.{TAG}.{SID}.{MAX_GENERATION + 1}"),
    "generation-max-16-digits": signed(f"srt1.{TAG}.{SID}.{'9' * 16}"),
    "generation-underscore": signed(f"srt1.{TAG}.{SID}.1_0"),
    "generation-hex": signed(f"srt1.{TAG}.{SID}.0x7"),
    "generation-float": signed(f"srt1.{TAG}.{SID}.7.0"),
    "generation-arabic-indic": signed(f"srt1.{TAG}.{SID}.\u0667"),
    "generation-empty": signed(f"srt1.{TAG}.{SID}."),
    "mac-flipped-first-char": VALID[:-43] + ("B" if VALID[-43] == "A" else "A") + VALID[-42:],
    "mac-flipped-last-char": VALID[:-1] + ("B" if VALID[-1] == "A" else "A"),
    "mac-truncated": VALID[:-1],
    "mac-extended": VALID + "A",
    "mac-padded": VALID + "=",
    "mac-standard-base64": VALID[:-43]
    + base64.b64encode(base64.urlsafe_b64decode(VALID[-43:] + "=")).decode(),
    "mac-empty": f"srt1.{TAG}.{SID}.7.",
    "leading-space": " " + VALID,
    "trailing-space": VALID + " ",
    "trailing-newline": VALID + "\n",
    "trailing-crlf": VALID + "\r\n",
    "tab-inside": VALID.replace(".", ".\t", 1),
    "space-in-generation": signed(f"srt1.{TAG}.{SID}. 7"),
    "nul-at-end": VALID + "\x00",
    "nul-at-start": "\x00" + VALID,
    "nul-inside": VALID.replace(".", ".\x00", 1),
    "jwt": (
        "eyJhbGciOiJIUzI1NiIsInR5cCI6ImF0K2p3dCJ9."
        "eyJzdWIiOiI0MiIsInNpZCI6InMiLCJqdGkiOiJqIiwiaWF0IjoxLCJleHAiOjJ9."
        "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"
    ),
    "only-dots": "....",
    "bearer-prefix": "Bearer " + VALID,
    "url-encoded": VALID.replace(".", "%2E"),
}


def test_every_malformation_case_is_distinct_from_the_valid_token() -> None:
    assert VALID not in MALFORMED.values()
    assert len(MALFORMED["300-chars"]) == 300


@pytest.mark.parametrize("token", list(MALFORMED.values()), ids=list(MALFORMED))
def test_malformed_token_is_refused(codec: RefreshTokenCodec, token: str) -> None:
    refused(codec, token)


def test_the_valid_base_of_the_malformations_parses(codec: RefreshTokenCodec) -> None:
    assert codec.parse(VALID) == RefreshToken(user_tag=TAG, session_id=SID, generation=7)


def test_minted_generation_above_max_is_refused(codec: RefreshTokenCodec) -> None:
    refused(codec, codec.mint(TAG, SID, MAX_GENERATION + 1))
    refused(codec, codec.mint(TAG, SID, -1))


def test_access_token_is_not_a_refresh_token(codec: RefreshTokenCodec, auth: TokenAuth) -> None:
    refused(codec, auth.access.issue("42", SID).token)


# --------------------------------------------------------------------------- user tags


def test_user_tag_is_deterministic_20_hex(codec: RefreshTokenCodec) -> None:
    tag = codec.user_tag("alice@example.com")

    assert re.fullmatch(r"[0-9a-f]{20}", tag)
    assert codec.user_tag("alice@example.com") == tag
    assert RefreshTokenCodec(SECRET_BYTES).user_tag("alice@example.com") == tag


@pytest.mark.parametrize(
    ("first", "second"),
    [("42", "43"), ("alice", "Alice"), ("alice", "alice "), ("", "\x00"), ("a", "a\x00")],
)
def test_user_tag_differs_per_subject(codec: RefreshTokenCodec, first: str, second: str) -> None:
    assert codec.user_tag(first) != codec.user_tag(second)


def test_user_tag_differs_per_secret(codec: RefreshTokenCodec) -> None:
    other = RefreshTokenCodec(b"another-secret-0123456789-0123456789-0123")

    assert other.user_tag("42") != codec.user_tag("42")


def test_user_tag_is_keyed_not_a_plain_hash(codec: RefreshTokenCodec) -> None:
    subject = "alice@example.com"
    plain = {
        hashlib.sha256(subject.encode()).hexdigest()[:20],
        hashlib.sha256(b"user\x00" + subject.encode()).hexdigest()[:20],
        hashlib.md5(subject.encode()).hexdigest()[:20],  # noqa: S324 - the point is it is not this
    }

    assert codec.user_tag(subject) not in plain


@pytest.mark.parametrize("subject", ["alice@example.com", "0123456789", "abcdefabcdef", "user-000042"])
def test_user_tag_does_not_contain_the_subject(codec: RefreshTokenCodec, subject: str) -> None:
    tag = codec.user_tag(subject)

    assert subject.lower() not in tag
    assert subject.encode().hex() not in tag


# --------------------------------------------------------------------------- fingerprints


def test_fingerprint_is_12_hex_and_stable(codec: RefreshTokenCodec) -> None:
    token = codec.mint(TAG, SID, 3)
    value = fingerprint(token)

    assert re.fullmatch(r"[0-9a-f]{12}", value)
    assert fingerprint(token) == value
    assert fingerprint(token.encode()) == value


def test_fingerprint_reveals_no_part_of_the_token(codec: RefreshTokenCodec) -> None:
    token = codec.mint(TAG, SID, 3)
    value = fingerprint(token)

    assert value not in token
    assert all(value != token[i : i + 12] for i in range(len(token) - 11))
    assert value != codec.user_tag("42")[:12]
    assert value not in TAG


def test_fingerprint_differs_between_tokens(codec: RefreshTokenCodec) -> None:
    prints = {fingerprint(codec.mint(TAG, SID, generation)) for generation in range(50)}

    assert len(prints) == 50


def test_fingerprint_accepts_any_text() -> None:
    assert re.fullmatch(r"[0-9a-f]{12}", fingerprint("\udcff not utf-8"))
    assert fingerprint("") == hashlib.sha256(b"").hexdigest()[:12]


# --------------------------------------------------------------------------- never an access token


@pytest.mark.parametrize("generation", [0, 1, MAX_GENERATION])
def test_refresh_token_never_verifies_as_an_access_token(
    auth: TokenAuth, codec: RefreshTokenCodec, generation: int
) -> None:
    token = codec.mint(codec.user_tag("42"), SID, generation)

    assert token.count(".") == 4
    with pytest.raises(InvalidToken) as caught:
        auth.verify_access_token(token)
    assert caught.value.description == "malformed token"
