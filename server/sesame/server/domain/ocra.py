"""OCRA, the OATH challenge-response algorithm (RFC 6287), over a key store that computes the HMAC.

Only the HMAC needs the key, so it is the one step done by the key store (inside the HSM); building the
DataInput and the dynamic truncation are pure functions here, checked against the RFC's Appendix C.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, TypeVar

from sesame.server.domain.model import MacAlgorithm

if TYPE_CHECKING:
    from sesame.server.domain.model import KeyRef
    from sesame.server.domain.ports import KeyStore

_T = TypeVar("_T")
# Truncation to 0 digits (the full HMAC) is allowed by the RFC but never used here: refused.
_CRYPTO = re.compile(r"^HOTP-(SHA1|SHA256|SHA512)-([4-9]|10)$")
_QUESTION = re.compile(r"^Q([ANH])(0[4-9]|[1-5][0-9]|6[0-4])$")
_PIN = re.compile(r"^P(SHA1|SHA256|SHA512)$")
_SESSION = re.compile(r"^S(\d{3})$")
_TIME = re.compile(r"^T(\d{1,2}[SMH])$")
_HASH_LENGTH = {MacAlgorithm.SHA1: 20, MacAlgorithm.SHA256: 32, MacAlgorithm.SHA512: 64}
_QUESTION_BYTES = 128


class InvalidSuite(ValueError):
    """An OCRA suite string that RFC 6287 does not allow, or inputs that do not fit the suite."""


@dataclass(frozen=True, slots=True)
class OcraSuite:
    """A parsed OCRA suite, e.g. `OCRA-1:HOTP-SHA256-8:C-QN08-PSHA1`."""

    text: str
    algorithm: MacAlgorithm
    digits: int
    counter: bool
    question_format: str  # "A" alphanumeric, "N" numeric, "H" hexadecimal
    question_length: int
    pin_algorithm: MacAlgorithm | None
    session_length: int | None
    time_step: str | None

    @classmethod
    def parse(cls, text: str) -> OcraSuite:
        """Parse and check a suite string; InvalidSuite if RFC 6287 does not allow it."""
        parts = text.split(":")
        if len(parts) != 3 or parts[0] != "OCRA-1":
            raise InvalidSuite(f"not an OCRA-1 suite: {text!r}")
        crypto = _CRYPTO.match(parts[1])
        if crypto is None:
            raise InvalidSuite(f"bad crypto function: {parts[1]!r}")
        inputs = parts[2].split("-")
        counter = inputs[0] == "C"
        if counter:
            inputs = inputs[1:]
        question = _QUESTION.match(inputs[0]) if inputs else None
        if question is None:
            raise InvalidSuite(f"a question Qxnn is required: {parts[2]!r}")
        pin = session = time = None
        for extra in inputs[1:]:
            if (m := _PIN.match(extra)) and pin is None:
                pin = MacAlgorithm(m.group(1))
            elif (m := _SESSION.match(extra)) and session is None:
                session = int(m.group(1))
            elif (m := _TIME.match(extra)) and time is None:
                time = m.group(1)
            else:
                raise InvalidSuite(f"bad data input: {extra!r}")
        return cls(
            text=text,
            algorithm=MacAlgorithm(crypto.group(1)),
            digits=int(crypto.group(2)),
            counter=counter,
            question_format=question.group(1),
            question_length=int(question.group(2)),
            pin_algorithm=pin,
            session_length=session,
            time_step=time,
        )

    def data_input(
        self,
        question: str,
        *,
        counter: int | None = None,
        pin_hash: bytes | None = None,
        session: bytes | None = None,
        timestamp: int | None = None,
    ) -> bytes:
        """The DataInput of RFC 6287 section 5.1: suite | 0x00 | C | Q | P | S | T."""
        parts = [self.text.encode("ascii"), b"\x00"]
        if self.counter:
            parts.append(_required(counter, "counter").to_bytes(8, "big"))
        parts.append(self._question_bytes(question))
        if self.pin_algorithm is not None:
            pin = _required(pin_hash, "pin_hash")
            if len(pin) != _HASH_LENGTH[self.pin_algorithm]:
                raise InvalidSuite("PIN hash length does not match the suite")
            parts.append(pin)
        if self.session_length is not None:
            info = _required(session, "session")
            if len(info) != self.session_length:
                raise InvalidSuite("session information length does not match the suite")
            parts.append(info)
        if self.time_step is not None:
            parts.append(_required(timestamp, "timestamp").to_bytes(8, "big"))
        return b"".join(parts)

    def _question_bytes(self, question: str) -> bytes:
        # Not capped at the suite's length: in mutual mode (RFC 6287 7.3) Q is the concatenation of
        # the client's and the server's challenges. It must still fit the 128 bytes of the field.
        if len(question) < 4:
            raise InvalidSuite("a question has at least 4 characters")
        match self.question_format:
            case "N":
                if not question.isdigit():
                    raise InvalidSuite("numeric question expected")
                hex_text = format(int(question), "X")
            case "A":
                hex_text = question.encode("ascii").hex()
            case _:
                hex_text = question
        # RFC 6287 reference code: the hex string is padded on the right with "0" to 256 digits.
        if len(hex_text) > 2 * _QUESTION_BYTES:
            raise InvalidSuite("the question does not fit in 128 bytes")
        try:
            return bytes.fromhex(hex_text.ljust(2 * _QUESTION_BYTES, "0"))
        except ValueError as exc:
            raise InvalidSuite("hexadecimal question expected") from exc


def truncate(mac: bytes, digits: int) -> str:
    """Dynamic truncation of RFC 4226 section 5.3, as `digits` decimal digits."""
    offset = mac[-1] & 0x0F
    binary = int.from_bytes(mac[offset : offset + 4], "big") & 0x7FFFFFFF
    return str(binary % 10**digits).zfill(digits)


async def compute(keys: KeyStore, key: KeyRef, suite: OcraSuite, data_input: bytes) -> str:
    """The OCRA response: HMAC in the key store, then truncation."""
    mac = await keys.mac(key, data_input, suite.algorithm)
    return truncate(mac, suite.digits)


def _required(value: _T | None, name: str) -> _T:
    if value is None:
        raise InvalidSuite(f"the suite requires {name}")
    return value
