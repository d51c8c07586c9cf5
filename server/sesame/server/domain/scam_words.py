"""Payee names that speak in the bank's voice (decision 0098).

The payee's name is the one text of a code SMS that the bank does not write. A scammer posing as the bank's
adviser names the account he has the customer pay "ANNULATION FRAUDE" or "REMBOURSEMENT SECURISE", so that
the SMS reads as a cancellation or a refund and the customer types the code. `alarming_name` says whether the
name, as the SMS prints it, holds such a word: the risk signal `payee_name_alert`, which the default rules
answer with WARN and its strongest wording. It is a signal, not a filter: a list of words always misses
some spelling, and a real payee may hold one (a security company): the code is still sent.
"""

from __future__ import annotations

import functools
import itertools
import re
import unicodedata

from sesame.server.domain.sms_text import printed_names

# Beginnings of words, accents and case folded: what a scam's payee name says the transfer does (cancel,
# refund, secure, protect, regularise, block, verify, test) or who asks for it (the adviser, the
# fraud or security service, customer service), in French and English. Two words written as one
# (`serviceclient`) match the pair of neighbours too (`SERVICE CLIENT`), as `_alarming_pair` reads them.
_STEMS = (
    "annul",
    "rembours",
    "restitu",
    "protect",
    "proteg",
    "fraud",
    "arnaq",
    "escroq",
    "opposition",
    "conseill",
    "bloqu",
    "debloq",
    "verif",
    "cancel",
    "refund",
    "revers",
    "secur",
    "scam",
    "unlock",
    # An outside audit's, from the fake adviser's script: "régularisation", "service client". Not
    # "sauvegarde" (child-protection associations and an insurer are named so) nor "votre" (`A VOTRE SERVICE`
    # companies): a second audit found them ordinary payees.
    "regularis",
    "serviceclient",
    "customerservice",
)
# Whole words only: shorter, or the start of too many ordinary names.
_WORDS = frozenset(
    {"code", "codes", "otp", "sms", "test", "banque", "bank", "safe", "urgent", "urgence", "erreur", "error"}
)
# What a stem may follow inside a word (`ANTIFRAUDE`, `CONTREFRAUDE`, `DESANNULATION`, `ANTISCAM`: outside
# audits, AR2 and AS6): after `anti` and `contre` any stem, after `des`, `de` and `cyber` those of five
# letters or more only (`DESCAMPS`, a common name, is `des` then `camps`, not `scam`).
_PREFIXES = ("anti", "contre")
_SHORT_PREFIXES = ("des", "de", "cyber")
_LONG_STEMS = tuple(stem for stem in _STEMS if len(stem) >= 5)
# The fake adviser's "safe" account (`COMPTE TAMPON`, `COMPTES REFUGE`, `COMPTE DE REFUGE`, `COMPTETAMPON`:
# the same audits): an account's word, then (a `de` between allowed) a stem neither of which alone alarms
# (`LE REFUGE` shelters people).
_ACCOUNTS = frozenset({"compte", "comptes", "account", "accounts"})
_SAFE_STEMS = ("tampon", "refuge")
# What a word alarming by its beginning starts with: a stem, or an account's word joined to a safe stem.
_STARTS = (*_STEMS, *(account + stem for account in _ACCOUNTS for stem in _SAFE_STEMS))
_LETTERS = re.compile(r"[a-z]+")
_MARKED = re.compile(r"[a-z]+(?:['-][a-z]+)+")


def alarming_name(name: str) -> bool:
    """Whether the payee's name, as an SMS prints it (in GSM-7 letters or in its own), holds a word of the
    bank's voice. Letters spaced out (`A N N U L A T I O N`, what dots or digits between them print as) are
    read as one word. In GSM-7 letters `ANNUŁATION` prints `ANNULATION`: read in its own letters only, the
    `Ł` split the word and the name passed (an outside audit found 243 such Latin letters). A letter that
    prints as itself but reads as another (`Ø` in `REMBØURSEMENT`) is read as the letter it looks like, and a
    name with digits also with each digit as the letter it stands for (`REMB0URSEMENT`, which prints
    `REMB URSEMENT`)."""
    readings = (name, name.translate(_DIGITS_AS_LETTERS)) if any(c in _DIGITS for c in name) else (name,)
    return any(_alarming_printed(printed) for reading in readings for printed in printed_names(reading))


# Digits written for the letters they look like: `0` for `o`, `1` for `i`, `3` for `e`...
_DIGITS = "0134578"
_DIGITS_AS_LETTERS = str.maketrans(_DIGITS, "oieastb")


def _alarming_printed(printed: str) -> bool:
    printed = printed.lower()
    if not printed.isascii():  # accents folded: `sécurisé` reads `securise`, `ø` reads `o`
        printed = "".join(
            _looks_like(c) for c in unicodedata.normalize("NFKD", printed) if not unicodedata.combining(c)
        )
    words = _LETTERS.findall(printed)
    # A word the name's marks or spaces cut in two (`REMB'OURSEMENT`, `ANNU-LA-TION`, `AN NULATION`) reads
    # as one on the phone: each run of marked parts joined, and each pair of neighbours (an outside audit's).
    joined = (
        [re.sub("['-]", "", word) for word in _MARKED.findall(printed)]
        if "'" in printed or "-" in printed
        else []
    )
    return (
        any(_alarming(word) for word in itertools.chain(_spelled_out(words), joined))
        or any(_alarming_pair(first, second) for first, second in itertools.pairwise(words))
        or _safe_account(words)
    )


def _alarming(word: str) -> bool:
    if word in _WORDS or word.startswith(_STARTS):
        return True
    after = [word[len(prefix) :] for prefix in _PREFIXES if word.startswith(prefix)]
    shortly = [word[len(prefix) :] for prefix in _SHORT_PREFIXES if word.startswith(prefix)]
    return any(rest.startswith(_STEMS) for rest in after) or any(
        rest.startswith(_LONG_STEMS) for rest in shortly
    )


def _safe_account(words: list[str]) -> bool:
    """An account's word, then a "safe" stem next to it or after a `de`."""
    for at, word in enumerate(words):
        if word in _ACCOUNTS:
            following = words[at + 1 : at + 3]
            if following[:1] == ["de"]:
                following = following[1:]
            if following and following[0].startswith(_SAFE_STEMS):
                return True
    return False


def _alarming_pair(first: str, second: str) -> bool:
    """Whether two neighbouring words read as one of the bank's voice (`AN NULATION`, `SE CURITE`), the stem
    reaching at least two letters into the second word: `SCA MARTIN` (a company's form, then its name) does
    not read `scam`."""
    joined = first + second
    if not _alarming(joined):  # most pairs: one startswith over the stems, in C
        return False
    if len(second) >= 2 and joined in _WORDS:
        return True
    return any(joined.startswith(stem) and len(stem) >= len(first) + 2 for stem in _STEMS)


def _spelled_out(words: list[str]) -> list[str]:
    """The words, each run of two or more one-letter words also joined into one."""
    out, run = list(words), ""
    for word in [*words, ""]:
        if len(word) == 1:
            run += word
            continue
        if len(run) > 1:
            out.append(run)
        run = ""
    return out


@functools.cache
def _looks_like(c: str) -> str:
    """The ASCII letters a lower-case letter reads as: `ø` (a stroke, which NFKD leaves whole) `o`, `æ` `ae`,
    `ß` `ss`; any other character itself."""
    if c.isascii():
        return c
    if c == "ß":
        return "ss"
    found = _LOOKS_LIKE.fullmatch(unicodedata.name(c, ""))
    return found[1].lower() if found else c


_LOOKS_LIKE = re.compile(r"LATIN SMALL (?:LETTER|LIGATURE) (?:DOTLESS )?([A-Z]{1,2})(?: WITH .*)?")
