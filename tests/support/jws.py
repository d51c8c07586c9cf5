"""An ES256 JWS verifier written for the tests with `cryptography` alone: no Sésame code on this path."""

from __future__ import annotations

import base64
import json
from typing import Any

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def verified_claims(jws: str, jwks: dict[str, Any]) -> dict[str, Any]:
    """The claims of `jws` once its ES256 signature checks under the JWK its header names.

    Raises cryptography's InvalidSignature, or KeyError when no key of the set has the kid.
    """
    header_b64, claims_b64, signature_b64 = jws.split(".")
    header = json.loads(_unb64(header_b64))
    assert header["alg"] == "ES256"
    matching = [key for key in jwks["keys"] if key["kid"] == header["kid"]]
    if not matching:
        raise KeyError(header["kid"])
    jwk = matching[0]
    assert (jwk["kty"], jwk["crv"]) == ("EC", "P-256")
    public = ec.EllipticCurvePublicNumbers(
        int.from_bytes(_unb64(jwk["x"]), "big"), int.from_bytes(_unb64(jwk["y"]), "big"), ec.SECP256R1()
    ).public_key()
    signature = _unb64(signature_b64)
    assert len(signature) == 64
    der = encode_dss_signature(int.from_bytes(signature[:32], "big"), int.from_bytes(signature[32:], "big"))
    public.verify(der, f"{header_b64}.{claims_b64}".encode(), ec.ECDSA(hashes.SHA256()))
    claims: dict[str, Any] = json.loads(_unb64(claims_b64))
    return claims


def with_claims(jws: str, claims: dict[str, Any]) -> str:
    """The same JWS (header and signature kept) with other claims: what a forger would send."""
    header_b64, _, signature_b64 = jws.split(".")
    body = json.dumps(claims, sort_keys=True, separators=(",", ":")).encode()
    return f"{header_b64}.{_b64(body)}.{signature_b64}"


def claims_of(jws: str) -> dict[str, Any]:
    """The claims of a JWS, unchecked."""
    claims: dict[str, Any] = json.loads(_unb64(jws.split(".")[1]))
    return claims


def header_of(jws: str) -> dict[str, Any]:
    """The protected header of a JWS, unchecked."""
    header: dict[str, Any] = json.loads(_unb64(jws.split(".", 1)[0]))
    return header
