"""The key self-test: one MAC and one signature with the current keys, each checked (boot and health).

A token that answers `C_GenerateRandom` may still hold no OTP key, or a damaged one (a label on an object
that cannot MAC, a private key whose public half is another key's): every StartChallenge would then fail,
and every proof too. One MAC of a fixed input, computed twice and compared, proves the OTP key; one
signature of a fixed input, checked with `cryptography` under the public key the token publishes for it,
proves the proof key. Health runs them every `SELF_TEST_EVERY` rounds (`KeyProof`), not on every one: on
every one-second round of every worker they cost the hot path measurable CPU (docs/decisions/0039).
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass

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
# Health rounds between two self-tests that passed (10 s at the default 1 s interval). A key damaged while
# serving turns health NOT_SERVING within this many rounds (one destroyed, at the next: the store checks the
# current keys are there every round, decision 0118); a failure is retried every round.
SELF_TEST_EVERY = 10


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


@dataclass(slots=True)
class KeyProof:
    """The self-test as health runs it: again every `every` rounds, at once for new current keys.

    A pass is trusted for `every` rounds; a failure is not kept: the next round runs the self-test again,
    so a repaired token reads SERVING on the round after it is fixed, like the other probes.
    """

    every: int = SELF_TEST_EVERY
    _rounds: int = 0
    _proved: tuple[str, str] | None = None  # the (OTP, proof) key labels of the last pass
    _proved_at: int = 0

    async def check(self, keys: KeyStore) -> None:
        """Return when the current keys passed the self-test within `every` rounds; else run it now."""
        self._rounds += 1
        current = ((await keys.current_otp_key()).label, (await keys.current_proof_key()).label)
        if current == self._proved and self._rounds - self._proved_at < self.every:
            return
        self._proved = None
        await prove_current_keys(keys)
        self._proved, self._proved_at = current, self._rounds
