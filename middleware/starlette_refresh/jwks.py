"""The JWK Set (RFC 7517) that ``GET {prefix}/jwks.json`` publishes: the key ring's public keys.

Other services verify access tokens with it and a stock JWT library, holding no secret: they fetch
the set, pick the key named by the token's ``kid`` and check the signature. Every asymmetric key of
the ring is in it, the signing key and the verify-only ones alike, since a token signed by a key being
rotated out is valid until it expires. HMAC keys never are: their secret signs as well as verifies.
"""

from __future__ import annotations

from .keys import KeyRing

#: ``max-age`` of the published set, in seconds. A verifier may serve a cached copy this long, so a
#: key added to the ring is seen everywhere this long after every process publishes it; the rotation
#: recipe (docs/guide.md, "Rotating signing keys") waits that long before the new key signs. Five
#: minutes keeps that wait short and still spares the endpoint a fetch per verified token.
JWKS_MAX_AGE = 300

#: The headers of the published set: cacheable by anyone (it holds only public keys), unlike every
#: other answer of the library.
JWKS_HEADERS = {"Cache-Control": f"public, max-age={JWKS_MAX_AGE}"}


def jwk_set(ring: KeyRing) -> dict[str, list[dict[str, str]]] | None:
    """``{"keys": [...]}``: the public JWK of each asymmetric key of ``ring``, in the ring's order;
    ``None`` when the ring has only HMAC keys, which leaves nothing to publish."""
    keys = [jwk for key in ring.keys if (jwk := key.public_jwk()) is not None]
    return {"keys": keys} if keys else None
