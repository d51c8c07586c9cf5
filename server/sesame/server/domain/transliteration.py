"""A payee's name in the GSM 03.38 alphabet: each Latin letter the alphabet lacks written as its base letter.

One letter outside GSM-7 (the `ç` of François) sends the whole SMS in UCS-2, 67 characters a part instead
of 153: a two-part text becomes five. The name is the only text of an SMS the bank does not write, so it is
the one transliterated, and only when that keeps the whole text GSM-7 (`sms_text`). The rule, as
docs/sms.md lists it letter by letter:

1. a letter of the alphabet stays: é è ù ì ò à É Ç Ä Ö Ñ Ü ä ö ñ ü Å å Æ æ Ø ø ß;
2. a letter Unicode names "LATIN ... LETTER X WITH ..." becomes X, in its case: ç -> c, ê -> e, Ł -> L;
3. ligatures and letters of their own become the letters they stand for (`_OWN`): œ -> oe, þ -> th;
4. any other Latin letter (small capitals, turned letters, IPA) becomes a space, as the characters a
   printed name never keeps.

When the bank's own words are UCS-2, transliterating gains nothing: the name keeps its letters as they are
(`name_letter`), but only those rules 1 to 3 write, so that a UCS-2 text prints no letter rule 4 drops from
a GSM-7 one: some read as the punctuation and digits a printed name never holds (U+01C3 LATIN LETTER
RETROFLEX CLICK reads `!`, U+0294 LATIN LETTER GLOTTAL STOP `?`, U+01BC LATIN CAPITAL LETTER TONE FIVE `5`;
decision 0080).
"""

from __future__ import annotations

import re
import unicodedata
from typing import Final

from sesame.server.domain.gsm7 import fits_gsm7

_OWN: Final = {
    "œ": "oe",
    "Œ": "OE",
    "ĳ": "ij",
    "Ĳ": "IJ",
    "þ": "th",
    "Þ": "TH",
    "ð": "d",
    "Ð": "D",
    "ŋ": "n",
    "Ŋ": "N",
    "\u0131": "i",  # dotless i (written escaped: it reads as an i)
    "ĸ": "k",
    "ŉ": "'n",
    "Ǆ": "DZ",
    "ǅ": "Dz",
    "ǆ": "dz",
    "Ǉ": "LJ",
    "ǈ": "Lj",
    "ǉ": "lj",
    "Ǌ": "NJ",
    "ǋ": "Nj",
    "ǌ": "nj",
    "Ǳ": "DZ",
    "ǲ": "Dz",
    "ǳ": "dz",
    "ẞ": "SS",
    "Ə": "E",
    "ǝ": "e",
    "ə": "e",
    "Ɛ": "E",
    "ɛ": "e",
    "\u017f": "s",  # long s (it reads as an f)
}
_DECORATED = re.compile(r"LATIN (SMALL|CAPITAL) LETTER ([A-Z]) WITH .+")


def gsm7_letter(letter: str) -> str:
    """The GSM-7 spelling of one Latin letter (or of a name's space or mark, unchanged)."""
    if fits_gsm7(letter):
        return letter
    if letter in _OWN:
        return _OWN[letter]
    decorated = _DECORATED.fullmatch(unicodedata.name(letter, ""))
    if decorated is None:
        return " "
    case, base = decorated.groups()
    return base.lower() if case == "SMALL" else base


def name_letter(letter: str) -> str:
    """One Latin letter as itself if it has a GSM-7 spelling (`ç`, `Ł`, `œ`), else a space (clicks, glottal
    stops, tone letters, small capitals: rule 4)."""
    return letter if gsm7_letter(letter) != " " else " "


def latin_letters() -> list[str]:
    """Every Latin letter from U+00C0 to U+024F and U+1E00 to U+1EFF (what docs/sms.md tabulates)."""
    points = [*range(0xC0, 0x250), *range(0x1E00, 0x1F00)]
    return [chr(p) for p in points if unicodedata.name(chr(p), "").startswith("LATIN ") and chr(p).isalpha()]
