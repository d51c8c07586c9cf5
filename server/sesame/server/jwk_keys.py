"""The P-256 public key of a JWK, for checking proofs and journal seals with `cryptography`."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from cryptography.hazmat.primitives.asymmetric import ec

from sesame.server.domain import proof

_COORDINATE_CHARS = 43  # a 32-byte P-256 coordinate in unpadded base64url


def public_key(jwk: Mapping[str, Any]) -> ec.EllipticCurvePublicKey:
    """The P-256 point of an EC JWK. ValueError for anything else (other curve, missing or bad x, y)."""
    if (jwk.get("kty"), jwk.get("crv")) != ("EC", "P-256"):
        raise ValueError("not an EC P-256 key")
    coordinates = (jwk.get("x"), jwk.get("y"))
    if not all(isinstance(value, str) and len(value) == _COORDINATE_CHARS for value in coordinates):
        raise ValueError("x and y are not 32-byte base64url coordinates")
    x, y = (int.from_bytes(proof.b64url_decode(str(value)), "big") for value in coordinates)
    return ec.EllipticCurvePublicNumbers(x, y, ec.SECP256R1()).public_key()
