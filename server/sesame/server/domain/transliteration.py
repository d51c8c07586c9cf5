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

A name in Greek or Cyrillic letters is first romanized (`romanized`) as the machine-readable zone of a
passport writes it (ICAO Doc 9303, part 3): `Иванов` as `Ivanov`, `Παπαδοπούλου` as `Papadopoulou`. Those
letters are no Latin letters, so without it such a name printed nothing at all (`"-"`), and the customer
had no name to check the payee by (decision 0168).
"""

# ruff: noqa: RUF001, RUF002, RUF003 (the tables' Greek and Cyrillic letters look like Latin ones: the point)
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


# ICAO Doc 9303 part 3's romanization of the Cyrillic letters of Russian, Ukrainian, Belarusian, Bulgarian,
# Serbian and Macedonian, in small letters (a capital is written from its small letter, `_cased`).
_CYRILLIC: Final = {
    "а": "a", "б": "b", "в": "v", "г": "g", "ґ": "g", "д": "d", "ѓ": "gj", "ђ": "d", "е": "e", "ё": "e",
    "є": "ie", "ж": "zh", "з": "z", "ѕ": "dz", "и": "i", "і": "i", "ї": "i", "й": "i", "ј": "j", "к": "k",
    "л": "l", "љ": "lj", "м": "m", "н": "n", "њ": "nj", "о": "o", "п": "p", "р": "r", "с": "s", "т": "t",
    "ћ": "c", "ќ": "kj", "у": "u", "ў": "u", "ф": "f", "х": "kh", "ц": "ts", "ч": "ch", "џ": "dz",
    "ш": "sh", "щ": "shch", "ъ": "ie", "ы": "y", "ь": "", "э": "e", "ю": "iu", "я": "ia",
}  # fmt: skip
# The same for the Greek letters (accents and diaereses taken off first), and the pairs written together.
_GREEK: Final = {
    "α": "a", "β": "v", "γ": "g", "δ": "d", "ε": "e", "ζ": "z", "η": "i", "θ": "th", "ι": "i", "κ": "k",
    "λ": "l", "μ": "m", "ν": "n", "ξ": "x", "ο": "o", "π": "p", "ρ": "r", "σ": "s", "ς": "s", "τ": "t",
    "υ": "y", "φ": "f", "χ": "ch", "ψ": "ps", "ω": "o",
}  # fmt: skip
_GREEK_PAIRS: Final = {"ου": "ou", "αυ": "av", "ευ": "ev", "γγ": "ng"}
_ROMAN: Final = _CYRILLIC | _GREEK
_DIAERESIS = "\u0308"  # on the second letter, it parts a pair: `αϋ` is two vowels, not `αυ`


def romanized(name: str) -> str:
    """`name` with each Greek and Cyrillic letter written in Latin letters (ICAO Doc 9303), the rest as it
    is: `Жанна` as `Zhanna`, `ЖАННА` as `ZHANNA`, `Ευάγγελος` as `Evangelos`; in NFC, the form a name is
    read in (a mark left after a romanized letter joins it: `е́`, a stressed `е`, as `é`)."""
    name = unicodedata.normalize("NFC", name)
    if not any(_bare(c).lower() in _ROMAN for c in name):
        return name
    written = []
    at = 0
    while at < len(name):
        pair = (_bare(name[at]) + _bare(name[at + 1])).lower() if at + 1 < len(name) else ""
        if pair in _GREEK_PAIRS and _DIAERESIS not in unicodedata.normalize("NFD", name[at + 1]):
            written.append(_cased(_GREEK_PAIRS[pair], name, at))
            at += 2
            continue
        letter = _ROMAN.get(_bare(name[at]).lower())
        written.append(name[at] if letter is None else _cased(letter, name, at))
        at += 1
    return unicodedata.normalize("NFC", "".join(written))


def _bare(c: str) -> str:
    """A Greek letter without its accent or diaeresis (`ά` as `α`), any other character as it is: the
    Cyrillic table names its letters with marks (`ё`, `ї`, `ў`) each."""
    return unicodedata.normalize("NFD", c)[0] if "\u0370" <= c <= "\u03ff" or "\u1f00" <= c <= "\u1fff" else c


def _cased(latin: str, name: str, at: int) -> str:
    """The romanization of the letter (or pair) at name[at], in the case the name writes it: small, or a
    capital, `Zh` before a small letter and `ZH` otherwise (a word in capitals, or the letter alone)."""
    if not name[at].isupper():
        return latin
    return latin.capitalize() if name[at + 1 : at + 2].islower() else latin.upper()


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
