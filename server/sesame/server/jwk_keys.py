"""The P-256 public key of a JWK, for checking proofs and journal seals with `cryptography`."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

from sesame.server.domain import proof
from sesame.server.domain.model import PublicKey

_COORDINATE_CHARS = 43  # a 32-byte P-256 coordinate in unpadded base64url
_SIGNATURE_BYTES = 64  # ES256: r || s


def public_key(jwk: Mapping[str, Any]) -> ec.EllipticCurvePublicKey:
    """The P-256 point of an EC JWK. ValueError for anything else (other curve, missing or bad x, y)."""
    if (jwk.get("kty"), jwk.get("crv")) != ("EC", "P-256"):
        raise ValueError("not an EC P-256 key")
    coordinates = (jwk.get("x"), jwk.get("y"))
    if not all(isinstance(value, str) and len(value) == _COORDINATE_CHARS for value in coordinates):
        raise ValueError("x and y are not 32-byte base64url coordinates")
    x, y = (int.from_bytes(proof.b64url_decode(str(value)), "big") for value in coordinates)
    return ec.EllipticCurvePublicNumbers(x, y, ec.SECP256R1()).public_key()


def key_named(jwks: Mapping[str, Any], kid: str) -> Mapping[str, Any] | None:
    """The JWK of `jwks` whose kid is `kid`, None when none is (or `jwks` has no list of keys), or when the
    set names it for two different keys (`named_twice`)."""
    found = _named(jwks, kid)
    return found[0] if len({_point(k) for k in found}) == 1 else None


def named_twice(jwks: Mapping[str, Any], kid: str) -> bool:
    """Whether `jwks` names `kid` for two different keys: sets joined from two deployments (a token lost and
    its keys made again under the same labels). The first one found verified, or not, by the order of the
    files given (an outside audit): such a key is no key, said as such."""
    return len({_point(k) for k in _named(jwks, kid)}) > 1


def _named(jwks: Mapping[str, Any], kid: str) -> list[Mapping[str, Any]]:
    keys = jwks.get("keys") if isinstance(jwks, Mapping) else None
    if not isinstance(keys, list):
        return []
    return [k for k in keys if isinstance(k, Mapping) and k.get("kid") == kid]


def _point(jwk: Mapping[str, Any]) -> tuple[str, str, str, str]:
    return tuple(str(jwk.get(name)) for name in ("kty", "crv", "x", "y"))  # type: ignore[return-value]


def es256_verifies(jwk: Mapping[str, Any], signature: bytes, data: bytes) -> bool:
    """Whether `signature` (raw r || s, as the journal key signs blocks and statements) is ES256 of `data`
    under `jwk`; False for a malformed key or signature."""
    if len(signature) != _SIGNATURE_BYTES:
        return False
    der = encode_dss_signature(int.from_bytes(signature[:32], "big"), int.from_bytes(signature[32:], "big"))
    try:
        public_key(jwk).verify(der, data, ec.ECDSA(hashes.SHA256()))
    except (InvalidSignature, ValueError):
        return False
    return True


def proof_verifies(parsed: proof.ParsedProof, key: PublicKey) -> bool:
    """Whether `parsed`'s signature is ES256 of its signing input under `key`, in the low-S form Sésame
    signs (a high-S copy verifies too: someone altered it)."""
    return proof.is_low_s(parsed.signature) and es256_verifies(
        proof.jwk(key), parsed.signature, parsed.signing_input
    )
