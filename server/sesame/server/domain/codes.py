"""Sésame's codes: OCRA `OCRA-1:HOTP-SHA256-<digits>:QH64` over the challenge nonce and the operation.

The question Q (32 bytes, 64 hex digits) is SHA-256 over a domain tag, the challenge's random nonce
(128 bits) and the SHA-256 digest of the operation's canonical encoding: the code is specific to this
challenge and to this amount and payee (RTS Art. 5(1)(b)), and any change gives another code. Codes are
never stored: they are recomputed in the HSM when the SMS is sent and when a code is checked.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
from typing import TYPE_CHECKING

from sesame.server.domain import ocra
from sesame.server.domain.model import KeyRef

if TYPE_CHECKING:
    from sesame.server.domain.ports import KeyStore

_QUESTION_TAG = b"sesame-ocra-question-v1"
_WITNESS_TAG = b"sesame-verification-witness-v1"


@functools.cache
def suite(digits: int) -> ocra.OcraSuite:
    """The suite of a `digits`-digit code, parsed once per length (a frozen value: decision 0049)."""
    return ocra.OcraSuite.parse(f"OCRA-1:HOTP-SHA256-{digits}:QH64")


def question(nonce: bytes, op_digest: bytes) -> str:
    """The 64-hex-digit OCRA question that binds the nonce and the operation digest."""
    return hashlib.sha256(_QUESTION_TAG + nonce + op_digest).hexdigest().upper()


async def derive(keys: KeyStore, *, key_version: int, digits: int, nonce: bytes, op_digest: bytes) -> str:
    """The code of a challenge for an operation digest."""
    code, _ = await witnessed(keys, key_version=key_version, digits=digits, nonce=nonce, op_digest=op_digest)
    return code


async def witnessed(
    keys: KeyStore, *, key_version: int, digits: int, nonce: bytes, op_digest: bytes
) -> tuple[str, str]:
    """The code of a challenge for an operation digest, and the key of its decision's witness, from one HMAC
    in the HSM.

    The witness key is a digest of the whole HMAC the code is cut from: only the HSM's key makes it, and it
    tells nothing of the code (the HMAC cannot be had from it). It is never stored: a VERIFIED decision
    journals the witness it makes of the decision (`witness`), so that a proof signed later from the journal
    (GetProof) is signed for a decision Sésame made, as it made it (an outside audit; decision 0167).
    """
    chosen = suite(digits)
    data = chosen.data_input(question(nonce, op_digest))
    mac = await keys.mac(KeyRef.otp(key_version), data, chosen.algorithm)
    return ocra.truncate(mac, chosen.digits), hashlib.sha256(_WITNESS_TAG + mac).hexdigest()


def witness(key: str, decision: bytes) -> str:
    """The witness of a decision (its canonical bytes: `proof.decided`) under a witness key: 128 bits, hex."""
    return hmac.new(bytes.fromhex(key), decision, hashlib.sha256).hexdigest()[:32]


def same_witness(expected: str, journaled: str) -> bool:
    """Constant-time comparison of a recomputed witness with a journaled one."""
    return hmac.compare_digest(expected.encode(), journaled.encode())


def same_code(expected: str, submitted: str) -> bool:
    """Constant-time comparison, so that timing tells nothing about how many digits were right."""
    return hmac.compare_digest(expected.encode(), submitted.encode())
