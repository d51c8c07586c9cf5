"""Whether a text fits the GSM 03.38 7-bit alphabet, or needs UCS-2 (70 characters a segment, not 160).

Gateways send GSM-7 by default and replace what it cannot hold with `?`: a payee called François (`ç` is
not in the alphabet, only `Ç` is) or a typographic apostrophe would reach the phone garbled. A text that
does not fit must be sent as UCS-2.
"""

from __future__ import annotations

from typing import Final

# 3GPP TS 23.038 §6.2.1: the default alphabet (0x1B, the escape to the extension table, is not a character).
_BASIC: Final = frozenset(
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
# §6.2.1.1: the extension table, each character sent as two septets (escape + code).
EXTENSION: Final = frozenset("\f^{}\\[~]|€")


_EITHER: Final = _BASIC | EXTENSION


def fits_gsm7(text: str) -> bool:
    """True when every character of `text` is in the GSM 7-bit default alphabet or its extension table
    (one set test in C: each SMS is measured up to three times, decision 0049)."""
    return _EITHER.issuperset(text)
