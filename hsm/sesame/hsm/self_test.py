"""The key self-test: one MAC and one signature with the current keys, each checked (boot and health).

A token that answers `C_GenerateRandom` may still hold no OTP key, or a damaged one (a label on an object
that cannot MAC, a private key whose public half is another key's): every StartChallenge would then fail,
and every proof too. One MAC of a fixed input, computed twice and compared, proves the OTP key; one
signature of a fixed input, checked with `cryptography` under the public key the token publishes for it,
proves the proof key. Both cost a few milliseconds, so health runs them on every round.
"""

from __future__ import annotations

import hmac

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

from sesame.server.domain.errors import HsmUnavailable
from sesame.server.domain.model import MacAlgorithm, PublicKey
from sesame.server.domain.ports import KeyStore

# Not an OCRA question (those start with the suite name), so no code is ever computed over it.
SELF_TEST_INPUT = b"sesame key self-test"
_HMAC_SHA256_BYTES = 32


async def prove_current_keys(keys: KeyStore) -> None:
    """Return when the current OTP key MACs and the current proof key signs, both verifiably.

    KeyNotFound when a current key is missing; HsmUnavailable when one is unusable or the token fails.
    """
    otp = await keys.current_otp_key()
    first = await keys.mac(otp, SELF_TEST_INPUT, MacAlgorithm.SHA256)
    second = await keys.mac(otp, SELF_TEST_INPUT, MacAlgorithm.SHA256)
    if len(first) != _HMAC_SHA256_BYTES or not hmac.compare_digest(first, second):
        raise HsmUnavailable(f"{otp.label} does not give one HMAC-SHA256 per input")
    signer = await keys.current_proof_key()
    signature = await keys.sign(signer, SELF_TEST_INPUT)
    public = next((key for key in await keys.public_keys() if key.kid == signer.label), None)
    if public is None:
        raise HsmUnavailable(f"{signer.label} has no public key in the token")
    if not verifies(public, SELF_TEST_INPUT, signature):
        raise HsmUnavailable(f"{signer.label} signs what its public key does not verify")


def verifies(public: PublicKey, data: bytes, signature: bytes) -> bool:
    """Whether `signature` (raw r || s) is an ES256 signature of `data` under `public`."""
    der = encode_dss_signature(int.from_bytes(signature[:32], "big"), int.from_bytes(signature[32:], "big"))
    try:
        point = ec.EllipticCurvePublicNumbers(
            int.from_bytes(public.x, "big"), int.from_bytes(public.y, "big"), ec.SECP256R1()
        )
        point.public_key().verify(der, data, ec.ECDSA(hashes.SHA256()))
    except (InvalidSignature, ValueError):
        return False
    return True
