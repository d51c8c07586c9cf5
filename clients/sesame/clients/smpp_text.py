"""A text as SMPP short messages: GSM 03.38 (data_coding 0) or UCS-2 (8), split with a concatenation UDH.

GSM-7 whenever the whole text fits the alphabet (`domain/gsm7.py`), one octet per septet as SMPP carries
it (the SMSC packs); UCS-2 otherwise. Past one segment (160 septets, 70 UCS-2 characters) each part
starts with the 6-octet UDH of 3GPP TS 23.040 §9.2.3.24.1 (8-bit reference), which leaves 153 septets or
67 characters a part. A part never ends inside an escape sequence or a surrogate pair.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from sesame.server.domain.gsm7 import fits_gsm7

GSM7: Final = 0x00
UCS2: Final = 0x08
UDHI: Final = 0x40  # esm_class bit: the short message starts with a user data header

# TS 23.038 §6.2.1 in code order; position 0x1B is the escape to the extension table.
_TABLE: Final = (
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞ\x1bÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
_BASIC: Final = {char: bytes((code,)) for code, char in enumerate(_TABLE) if char != "\x1b"}
_ESCAPED: Final = (("\f", 0x0A), ("^", 0x14), ("{", 0x28), ("}", 0x29), ("\\", 0x2F), ("[", 0x3C))
_ESCAPED_MORE: Final = (("~", 0x3D), ("]", 0x3E), ("|", 0x40), ("€", 0x65))
_EXTENSION: Final = {char: bytes((0x1B, code)) for char, code in _ESCAPED + _ESCAPED_MORE}

_SINGLE: Final = 140  # octets of user data in one SMS (160 septets once packed)
_GSM7_SINGLE: Final = 160
_GSM7_PART: Final = 153
_UCS2_PART: Final = 134  # 67 characters


@dataclass(frozen=True, slots=True)
class Encoded:
    """The short messages of one text, in order, and how the SMSC must read them."""

    data_coding: int
    esm_class: int
    parts: tuple[bytes, ...]


def gsm7_octets(text: str) -> bytes:
    """The text in the GSM 03.38 default alphabet, one octet per septet. KeyError off the alphabet."""
    return b"".join(_BASIC.get(char) or _EXTENSION[char] for char in text)


def encode(text: str, reference: int) -> Encoded:
    """The parts of `text`; `reference` (0-255) ties the parts of one message together on the phone."""
    if fits_gsm7(text):
        chunks = [_BASIC.get(char) or _EXTENSION[char] for char in text]
        single, part, coding = _GSM7_SINGLE, _GSM7_PART, GSM7
    else:
        chunks = [char.encode("utf-16-be") for char in text]
        single, part, coding = _SINGLE, _UCS2_PART, UCS2
    if sum(map(len, chunks)) <= single:
        return Encoded(coding, 0, (b"".join(chunks),))
    bodies = _pack(chunks, part)
    if len(bodies) > 255:
        raise ValueError("text too long for one concatenated SMS")
    headers = (bytes((5, 0, 3, reference & 0xFF, len(bodies), seq)) for seq in range(1, len(bodies) + 1))
    return Encoded(coding, UDHI, tuple(head + body for head, body in zip(headers, bodies, strict=True)))


def _pack(chunks: list[bytes], limit: int) -> list[bytes]:
    """Whole characters into parts of at most `limit` octets."""
    parts: list[bytes] = []
    current = b""
    for chunk in chunks:
        if len(current) + len(chunk) > limit:
            parts.append(current)
            current = b""
        current += chunk
    return [*parts, current]


def decode(data_coding: int, short_message: bytes) -> str:
    """The text of one part without its UDH (the tests' SMSC and the receipts read it this way)."""
    if data_coding == UCS2:
        return short_message.decode("utf-16-be")
    reverse = {code: char for char, code in _BASIC.items()} | {code: c for c, code in _EXTENSION.items()}
    out: list[str] = []
    at = 0
    while at < len(short_message):
        width = 2 if short_message[at] == 0x1B else 1
        out.append(reverse.get(short_message[at : at + width], "?"))
        at += width
    return "".join(out)
