"""GSM 03.38: which texts go in 7-bit, which need UCS-2."""

from __future__ import annotations

import pytest

from sesame.server.domain import sms_text
from sesame.server.domain.gsm7 import fits_gsm7
from sesame.server.domain.operation import CreditTransfer, Login, Money, Payee


@pytest.mark.parametrize(
    "text",
    [
        "MaBanque: code 482913. Valable 5 min.",
        "é è à ù ì ò É Ç Ä Ö Ñ Ü ä ö ñ ü ß Æ æ Ø ø Å å ¿ ¡ £ ¥ § ¤",
        "Δ Φ Γ Λ Ω Π Ψ Σ Θ Ξ",
        "€ [ ] { } ~ ^ | \\",  # the extension table
        "",
    ],
)
def test_gsm_characters_fit(text: str):
    """Letters, accents, Greek capitals and the extension table are GSM 03.38."""
    assert fits_gsm7(text)


@pytest.mark.parametrize(
    "char", ["ç", "ê", "â", "î", "ô", "û", "ë", "ï", "œ", "…", "\u2019", "«", "—", "\x1b", "😀", "`"]
)
def test_characters_outside_the_alphabet_do_not_fit(char: str):
    """French ç ê â î ô û ë ï œ, typographic punctuation, the bare escape and emoji need UCS-2."""
    assert not fits_gsm7(f"Bonjour {char}")


def test_the_french_sms_of_an_ordinary_transfer_fits():
    """The rendered French SMS keeps to GSM accents: it goes in 7-bit, 153 characters a part."""
    transfer = CreditTransfer(Money("EUR", 125000), Payee("Jean DUPONT", "FR7630006000011234567890189"), "t")
    for operation in (Login(), transfer):
        assert fits_gsm7(sms_text.render(operation, sms_text.SmsContext("MaBanque", "482913", 5, "fr")))


def test_a_payee_name_with_a_cedilla_is_written_in_gsm7():
    """A payee named François is printed Francois: the SMS stays GSM-7 (docs/sms.md)."""
    transfer = CreditTransfer(Money("EUR", 100), Payee("François", "FR7630006000011234567890189"), "t")
    text = sms_text.render(transfer, sms_text.SmsContext("MaBanque", "482913", 5, "fr"))
    assert fits_gsm7(text)
    assert '"Francois"' in text
