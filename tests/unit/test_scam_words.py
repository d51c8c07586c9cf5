"""Payee names in the bank's voice (decision 0098): `scam_words.alarming_name`, read on the printed name."""

from __future__ import annotations

import pytest

from sesame.server.domain import scam_words
from sesame.server.domain.scam_words import alarming_name
from sesame.server.domain.transliteration import gsm7_letter, latin_letters


@pytest.mark.parametrize(
    "name",
    [
        "ANNULATION FRAUDE",  # what the fake adviser says the transfer does
        "Remboursement sécurisé",
        "SERVICE SÉCURITÉ",  # accents folded
        "Conseiller",
        "Compte de protection",
        "opposition carte",
        "Cancel payment",
        "REFUND DEPT",
        "Safe account",
        "code",
        "MaBanque Banque",  # a whole word
        "A.N.N.U.L.A.T.I.O.N",  # dots print as spaces: the letters spaced out read as one word
        "R E M B O U R S E M E N T",
        "Jean-Annulation",  # a hyphen parts words
        # An outside audit's, each ALLOW before: the fake adviser's accounts and services.
        "REGULARISATION",
        "Régularisation compte",
        "SERVICE CLIENT",
        "ServiceClient",
        "Customer Service",
        # A third's (AR2): a stem inside a word after a prefix, and the fake adviser's "safe" accounts.
        "SERVICE ANTIFRAUDE",
        "CELLULE ANTIFRAUDE MaBanque",
        "ANTIFRAUD DEPARTMENT",
        "CONTREFRAUDE",
        "DESANNULATION",
        "COMPTE TAMPON",
        "Compte refuge",
        # A fourth's (AS6): plurals, joined forms, a `de` between, anti before a short stem, cyber.
        "COMPTE TAMPONS",
        "COMPTES TAMPON",
        "COMPTETAMPON",
        "COMPTE DE REFUGE",
        "ANTISCAM",
        "SERVICE CYBERSECURITE",
    ],
)
def test_a_name_in_the_banks_voice_is_alarming(name: str) -> None:
    assert alarming_name(name)


@pytest.mark.parametrize(
    "name",
    [
        "Jean DUPONT",
        "Marie MARTIN",
        "L J H",  # initials: a run of one-letter words that spells nothing
        "Jean Nulle",  # the words, not the letters across them
        "Codec SARL",  # `code` is a whole word
        "SERVICE DES EAUX",  # `service` alone, a utility
        "Clinique Saint-Service",
        "DEPOT DE GARANTIE",  # a landlord's deposit: real payees are named so
        # A second outside audit's: ordinary payees the first list called scams.
        "LA SAUVEGARDE",
        "ADSEA SAUVEGARDE DE L ENFANCE",
        "A VOTRE SERVICE SARL",
        "AT YOUR SERVICE LTD",
        "Conseil départemental",  # `conseill`, the adviser, not the council
        "Epicerie",
        "DESCAMPS",  # `des` and `camps`, not `scam`: a prefix only before a stem of five letters or more
        "DESCHAMPS Antoine",
        "LE REFUGE",  # a shelter: `refuge` only after `compte`
        "COMPTE DE MARTIN TAMPON",  # `tampon` a word too far
        "DECYBERT",
        "DEVERNOIS",
        "ANTIBES TRAITEUR",
        "",
    ],
)
def test_an_ordinary_name_is_not(name: str) -> None:
    assert not alarming_name(name)


@pytest.mark.parametrize(
    "name",
    [
        "ANNUŁATION DU VIREMENT FRAUĐULEUX",  # Ł and Đ: GSM-7 prints `ANNULATION ... FRAUDULEUX`
        "REMƁOURSEMENT",
        "ĐEBLOQUAGE",
        "ꝊPPOSITION BANCAIRE",
        "BAƝQUE",
        "VER\u0131FICATION",  # a dotless i
        "АННУЛЯЦИЯ",  # Cyrillic: the SMS prints `ANNULIATSIIA` (decision 0168)
        "\u0410NNUL\u0410TI\u041eN",  # Cyrillic A and O among Latin letters: prints `ANNULATION`
    ],
)
def test_a_name_that_reads_so_once_in_gsm7_letters_is_alarming(name: str) -> None:
    """Found by an outside audit: letters the SMS prints as plain ASCII (decision 0080) split the word when
    the name was read in its own letters only, and the signal stayed off."""
    assert alarming_name(name)


@pytest.mark.parametrize(
    "name",
    [
        "REMB\u00d8URSEMENT",  # Ø, a GSM-7 letter the SMS prints as is, and NFKD leaves whole
        "ANNULATI\u00f8N",
        "REMB0URSEMENT",  # a digit for the O: the SMS prints `REMB URSEMENT`
        "V3RIF1CATI0N",
        "C0DE",
        "BL0QUAGE CARTE",
    ],
)
def test_a_letter_or_digit_passing_for_another_is_read_as_it(name: str) -> None:
    """The SMS audit's look-alikes: each passed before (Ø is no accent to fold; a digit split the word)."""
    assert alarming_name(name)


@pytest.mark.parametrize(
    "name", ["S\u00f8ren \u00c6r\u00f8 M\u00fcller", "SCI 2000", "Studio 54", "Soci\u00e9t\u00e9 1848"]
)
def test_names_with_such_letters_or_digits_are_not_alarming_for_them(name: str) -> None:
    assert not alarming_name(name)


@pytest.mark.parametrize(
    ("letter", "reads"),
    [("\u00f8", "o"), ("\u00e6", "ae"), ("\u0153", "oe"), ("\u00df", "ss"), ("\u0131", "i"), ("a", "a")],
)
def test_a_letter_reads_as_the_letters_it_looks_like(letter: str, reads: str) -> None:
    assert scam_words._looks_like(letter) == reads


@pytest.mark.parametrize(
    "name",
    [
        "REMB'OURSEMENT DU VIREMENT",  # the SMS prints the apostrophe inside the word: it reads as one
        "ANNU-LATION",
        "S'ECURISATION",
        "FRAU-DE",
        "CAN-CEL",
        "ANNU-LA-TION",
        "AN NULATION",  # a space: the stem reaches well into the second word
        "SE CURITE",
        "REMB OURSEMENT",
    ],
)
def test_a_word_cut_by_a_mark_or_a_space_is_read_whole(name: str) -> None:
    """Found by an outside audit: `[a-z]+` cut `REMB'OURSEMENT` into `remb` and `oursement`, and the name
    passed with the usual text."""
    assert alarming_name(name)


@pytest.mark.parametrize("name", ["SCA MARTIN", "Annu Lakshmi", "Marie-Claire Dupont", "D'Artagnan"])
def test_neighbouring_words_that_only_touch_a_stem_are_not_alarming(name: str) -> None:
    """`SCA` (a company's form) then `M...` joins as `scam...`, but the stem reaches one letter into the
    name: a coincidence, not a word."""
    assert not alarming_name(name)


def test_every_latin_letter_printed_as_a_stems_letter_is_read_as_it() -> None:
    """Each Latin letter whose GSM-7 spelling is a letter of `annulation`, put in its place, still alarms."""
    word = "annulation"
    swapped = [
        word.replace(ascii_letter, letter, 1)
        for letter in latin_letters()
        if len(ascii_letter := gsm7_letter(letter).lower()) == 1 and ascii_letter in word
    ]
    assert len(swapped) > 100
    assert [name for name in swapped if not alarming_name(name)] == []
