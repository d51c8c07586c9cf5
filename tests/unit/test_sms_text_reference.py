"""The payee's name fitted with less work (decision 0072) as the per-character rule and the fill per cut it
replaced: an ASCII name reduced in one pass, the whole name's text filled once, for any name, bank name,
locale and code SMS wording."""

from __future__ import annotations

import re
from collections.abc import Callable

from hypothesis import given, settings
from hypothesis import strategies as st

from sesame.server.domain import sms_text
from sesame.server.domain.gsm7 import fits_gsm7
from sesame.server.domain.segments import measure
from sesame.server.domain.sms_templates import Kind, Template, default_templates
from sesame.server.domain.transliteration import gsm7_letter, name_letter, romanized

ASCII = st.text(st.characters(max_codepoint=127), max_size=90)
NAMES = st.one_of(
    ASCII,
    st.lists(st.sampled_from(list("abcXYZ éÉßØ-'&.0,\"жΩ😀Łq\u01c3\u1d00\t")), max_size=90).map("".join),
)
BANKS = st.sampled_from(["MaBanque", "Banque Populaire du Grand Ouest et des Îles", "Банк"])
LETTERS: list[Callable[[str], str]] = [gsm7_letter, name_letter, str]


def reduced_reference(name: str, letter: Callable[[str], str]) -> str:
    """Each character looked at (Greek and Cyrillic romanized): a Latin letter as `letter` writes it, a name's
    mark kept, else a space; an apostrophe once, inside a word."""
    kept = "".join(letter(c) if sms_text._is_name_character(c) else " " for c in romanized(name))
    printed = ""
    for word in kept.split():
        word = re.sub("'+", "'", word).strip("'")  # noqa: PLW2901 (the word as printed)
        if not word:
            continue
        longer = f"{printed} {word}" if printed else word
        if len(longer) > sms_text.PRINTED_NAME:
            printed = printed or word[: sms_text.PRINTED_NAME]
            break
        printed = longer
    return printed


def fitted_reference(template: Template, fields: dict[str, str], payee: str) -> tuple[str, str]:
    """The fitting as it was: the GSM-7 test's fill, then a fill per cut, the whole name's included."""
    templates = default_templates()
    name = reduced_reference(payee, gsm7_letter)
    if not fits_gsm7(template.fill(fields | {"payee": sms_text._quoted(name)})):
        name = reduced_reference(payee, name_letter)  # UCS-2: the letters GSM-7 writes (decision 0080)
    quoted = text = ""
    for shown in sms_text._shortened(name):
        quoted = sms_text._quoted(shown)
        text = template.fill(fields | {"payee": quoted})
        if measure(text).parts <= templates.max_parts:
            break
    return quoted, text


@settings(max_examples=400, deadline=None)
@given(ASCII, st.sampled_from(LETTERS))
def test_an_ascii_name_is_reduced_as_character_by_character(name: str, letter: Callable[[str], str]) -> None:
    assert sms_text._reduced(name, letter) == reduced_reference(name, letter)


@settings(max_examples=300, deadline=None)
@given(
    NAMES, BANKS, st.sampled_from(["fr", "en"]), st.sampled_from([Kind.CREDIT_TRANSFER, Kind.ADD_BENEFICIARY])
)
def test_the_name_is_fitted_as_with_a_fill_per_cut(name: str, bank: str, locale: str, kind: Kind) -> None:
    """Long names are cut (the budget), UCS-2 banks keep the name's letters: the same name and text."""
    templates = default_templates()
    fields = {
        "bank": bank,
        "code": "12345678",
        "minutes": "5",
        "warning": templates.warning(locale),
        "amount": "1 250,00 EUR",
        "iban": "FR76 **** 0189",
        "payee_check": ", nom vérifié",
    }
    template = templates.get(kind, locale)
    assert sms_text._fitted_name(templates, template, fields, name) == fitted_reference(
        template, fields, name
    )
