"""Signing keys for access tokens.

Each key is bound to exactly one algorithm (RFC 8725 section 3.1): a token whose header names
another algorithm is rejected before any signature check, which rules out key confusion such as an
HS256 token "signed" with an RSA public key. ``none`` is never accepted.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from jwt.algorithms import ECAlgorithm, OKPAlgorithm, RSAAlgorithm

from .errors import ConfigurationError

HMAC_ALGORITHMS = frozenset({"HS256", "HS384", "HS512"})
RSA_ALGORITHMS = frozenset({"RS256", "RS384", "RS512", "PS256", "PS384", "PS512"})
EC_ALGORITHMS = {"ES256": "secp256r1", "ES384": "secp384r1", "ES512": "secp521r1"}
SUPPORTED_ALGORITHMS = HMAC_ALGORITHMS | RSA_ALGORITHMS | frozenset(EC_ALGORITHMS) | {"EdDSA"}
MIN_HMAC_SECRET_BYTES = 32
MIN_RSA_BITS = 2048

#: The public members of each JWK key type (RFC 7518 section 6, RFC 8037 section 2). A JWK is built
#: from these alone, so nothing private (``d``, ``p``, ``q``, ...) can reach it, whatever the exporter
#: writes; ``key_ops``, which PyJWT adds to RSA keys, is left out too, since RFC 7517 section 4.3
#: advises against it beside ``use``.
PUBLIC_JWK_MEMBERS = {"RSA": ("n", "e"), "EC": ("crv", "x", "y"), "OKP": ("crv", "x")}


@dataclass(frozen=True, slots=True)
class SigningKey:
    """One key bound to one algorithm. ``private`` is ``None`` for verify-only keys."""

    kid: str | None
    algorithm: str
    public: Any
    private: Any

    @classmethod
    def hmac(cls, secret: str | bytes, *, algorithm: str = "HS256", kid: str | None = None) -> SigningKey:
        """A shared secret, used exactly as given (so any JWT library can verify the tokens)."""
        if algorithm not in HMAC_ALGORITHMS:
            raise ConfigurationError(
                f"{algorithm} is not an HMAC algorithm; use one of {sorted(HMAC_ALGORITHMS)}"
            )
        raw = secret.encode() if isinstance(secret, str) else secret
        if not isinstance(raw, bytes) or len(raw) < MIN_HMAC_SECRET_BYTES:
            raise ConfigurationError(
                f"the secret key must be at least {MIN_HMAC_SECRET_BYTES} bytes; generate one with "
                "`python -c 'import secrets; print(secrets.token_urlsafe(48))'` and keep it in your "
                "secret store, the same for every worker"
            )
        return cls(kid=kid, algorithm=algorithm, public=raw, private=raw)

    @classmethod
    def from_pem(
        cls,
        private_pem: str | bytes,
        *,
        kid: str,
        algorithm: str | None = None,
        password: bytes | None = None,
    ) -> SigningKey:
        """A private key (RSA, EC or Ed25519) in PEM; the algorithm is inferred when not given."""
        data = private_pem.encode() if isinstance(private_pem, str) else private_pem
        try:
            private = serialization.load_pem_private_key(data, password=password)
        except (ValueError, TypeError) as exc:
            raise ConfigurationError(f"key {kid!r}: cannot load the private key PEM: {exc}") from exc
        chosen = algorithm or _infer_algorithm(private, kid)
        _check_binding(private.public_key(), chosen, kid)
        return cls(kid=kid, algorithm=chosen, public=private.public_key(), private=private)

    @classmethod
    def verify_only(cls, public_pem: str | bytes, *, kid: str, algorithm: str) -> SigningKey:
        """A public key that verifies tokens signed elsewhere (for example during key rotation)."""
        data = public_pem.encode() if isinstance(public_pem, str) else public_pem
        try:
            public = serialization.load_pem_public_key(data)
        except (ValueError, TypeError) as exc:
            raise ConfigurationError(f"key {kid!r}: cannot load the public key PEM: {exc}") from exc
        _check_binding(public, algorithm, kid)
        return cls(kid=kid, algorithm=algorithm, public=public, private=None)

    def public_jwk(self) -> dict[str, str] | None:
        """The public key as a JWK (RFC 7517) with ``kid``, ``alg`` and ``use: "sig"``, for a JWK Set;
        ``None`` for an HMAC key, whose one secret signs as well as verifies and is never published.

        The encoding is PyJWT's; only the key type's public members are kept from it.
        """
        if self.algorithm in HMAC_ALGORITHMS:
            return None
        if self.algorithm in RSA_ALGORITHMS:
            exported = RSAAlgorithm.to_jwk(self.public, as_dict=True)
        elif self.algorithm in EC_ALGORITHMS:
            exported = ECAlgorithm.to_jwk(self.public, as_dict=True)
        else:
            exported = OKPAlgorithm.to_jwk(self.public, as_dict=True)
        kty = exported["kty"]
        jwk = {"kty": kty, **{name: exported[name] for name in PUBLIC_JWK_MEMBERS[kty]}}
        if self.kid is not None:
            jwk["kid"] = self.kid
        jwk.update(alg=self.algorithm, use="sig")
        return jwk


class KeyRing:
    """The keys that verify access tokens, and the one that signs new ones.

    The signing key is the first key that has private material, unless ``signing_kid`` names one.
    """

    def __init__(self, keys: Iterable[SigningKey], *, signing_kid: str | None = None) -> None:
        self.keys: tuple[SigningKey, ...] = tuple(keys)
        if not self.keys:
            raise ConfigurationError("a key ring needs at least one key")
        by_kid: dict[str | None, SigningKey] = {}
        for key in self.keys:
            if key.algorithm not in SUPPORTED_ALGORITHMS:
                raise ConfigurationError(f"algorithm {key.algorithm!r} is not supported")
            if key.kid in by_kid:
                raise ConfigurationError(f"two keys share the kid {key.kid!r}")
            if key.kid is None and len(self.keys) > 1:
                raise ConfigurationError("every key in a ring of several keys needs a kid")
            by_kid[key.kid] = key
        self._by_kid = by_kid
        signers = [k for k in self.keys if k.private is not None]
        if signing_kid is not None:
            if signing_kid not in by_kid or by_kid[signing_kid].private is None:
                raise ConfigurationError(f"signing_kid {signing_kid!r} names no key with a private part")
            self.signing_key = by_kid[signing_kid]
        elif signers:
            self.signing_key = signers[0]
        else:
            raise ConfigurationError("the key ring has no key that can sign (all are verify-only)")
        self.algorithms = frozenset(k.algorithm for k in self.keys)

    def find(self, kid: object) -> SigningKey | None:
        """The key for a token header's ``kid``; a ring of one key also takes tokens without one."""
        if kid is None:
            return self.keys[0] if len(self.keys) == 1 else None
        if not isinstance(kid, str):
            return None
        return self._by_kid.get(kid)


def as_key_ring(keys: KeyRing | Sequence[SigningKey]) -> KeyRing:
    """Accepts a ready ring or a plain list of keys."""
    return keys if isinstance(keys, KeyRing) else KeyRing(keys)


def _infer_algorithm(private: Any, kid: str) -> str:
    if isinstance(private, rsa.RSAPrivateKey):
        return "RS256"
    if isinstance(private, ec.EllipticCurvePrivateKey):
        for algorithm, curve in EC_ALGORITHMS.items():
            if private.curve.name == curve:
                return algorithm
    if isinstance(private, ed25519.Ed25519PrivateKey):
        return "EdDSA"
    raise ConfigurationError(f"key {kid!r}: unsupported key type {type(private).__name__}")


def _check_binding(public: Any, algorithm: str, kid: str) -> None:
    if algorithm in RSA_ALGORITHMS:
        ok = isinstance(public, rsa.RSAPublicKey)
        if ok and public.key_size < MIN_RSA_BITS:
            raise ConfigurationError(f"key {kid!r}: RSA keys need at least {MIN_RSA_BITS} bits")
    elif algorithm in EC_ALGORITHMS:
        ok = isinstance(public, ec.EllipticCurvePublicKey) and public.curve.name == EC_ALGORITHMS[algorithm]
    elif algorithm == "EdDSA":
        ok = isinstance(public, ed25519.Ed25519PublicKey)
    else:
        raise ConfigurationError(
            f"key {kid!r}: algorithm {algorithm!r} is not an asymmetric algorithm we support "
            f"({sorted(SUPPORTED_ALGORITHMS - HMAC_ALGORITHMS)})"
        )
    if not ok:
        raise ConfigurationError(f"key {kid!r}: a {type(public).__name__} cannot be used with {algorithm}")
