"""Payee names in the bank's voice (decision 0098): `scam_words.alarming_name`, read on the printed name."""

from __future__ import annotations

import pytest

from sesame.server.domain.scam_words import alarming_name


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
        "Conseil départemental",  # `conseill`, the adviser, not the council
        "Epicerie",
        "",
        "АННУЛЯЦИЯ",  # Cyrillic: the SMS prints none of it
    ],
)
def test_an_ordinary_name_is_not(name: str) -> None:
    assert not alarming_name(name)
