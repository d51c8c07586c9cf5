"""How many SMS parts a text takes, and in which encoding: what the operator pays and the phone joins.

GSM-7 when every character is in the GSM 03.38 alphabet (`gsm7.py`): 160 septets in one SMS, 153 a part
once split (the concatenation header takes the rest), an extension-table character (`€ [ ] { } ~ ^ | \\`)
taking two septets that are never split across parts. Otherwise UCS-2: 70 UTF-16 units in one SMS, 67 a
part, a character outside the BMP taking two units never split. The same packing as the SMPP adapter's
(`sesame.clients.smpp_text`), so the count is the number of parts actually submitted.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Final

from sesame.server.domain.gsm7 import EXTENSION, fits_gsm7

_SINGLE: Final = {"gsm7": 160, "ucs2": 70}
_PART: Final = {"gsm7": 153, "ucs2": 67}
_EXTENSION_CHARS: Final = tuple(EXTENSION)  # each one character: a count of each is the extension's septets


class Encoding(enum.StrEnum):
    """The alphabet a text goes in (and the metric's label)."""

    GSM7 = "gsm7"
    UCS2 = "ucs2"


@dataclass(frozen=True, slots=True)
class Segments:
    """A text's encoding, its length in that encoding's units (septets, UTF-16 units) and its parts."""

    encoding: Encoding
    units: int
    parts: int


def measure(text: str) -> Segments:
    """The encoding and number of parts `text` is sent in. A text in one SMS (every code SMS) is counted
    without a width per character: each SMS is measured up to three times (decision 0049)."""
    gsm7 = fits_gsm7(text)
    if gsm7:
        # Ten counts in C, not a call per character: a French code SMS in half the time (decision 0072).
        encoding, units = Encoding.GSM7, len(text) + sum(map(text.count, _EXTENSION_CHARS))
    else:
        encoding, units = Encoding.UCS2, len(text.encode("utf-16-le")) // 2
    if units <= _SINGLE[encoding]:
        return Segments(encoding, units, 1)
    if units == len(text):
        # Every character one unit wide (no extension character, nothing outside the BMP): no character
        # can straddle two parts, so the parts are the units over a part's size, without a loop per
        # character (a French code SMS takes two parts and is measured up to three times, decision 0059).
        return Segments(encoding, units, -(-units // _PART[encoding]))
    if gsm7:
        widths = [2 if char in EXTENSION else 1 for char in text]
    else:
        widths = [len(char.encode("utf-16-le")) // 2 for char in text]
    return Segments(encoding, units, _packed(widths, _PART[encoding]))


def _packed(widths: list[int], limit: int) -> int:
    """Parts of at most `limit` units, a character never split between two."""
    parts, used = 1, 0
    for width in widths:
        if used + width > limit:
            parts, used = parts + 1, 0
        used += width
    return parts
