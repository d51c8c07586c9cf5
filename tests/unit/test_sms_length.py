"""The SMS lengths docs/operations.md states (and Kannel's max-messages), measured with the real renderer."""

from __future__ import annotations

import math
import re
from pathlib import Path

from sesame.server.domain import sms_text
from sesame.server.domain.gsm7 import fits_gsm7
from sesame.server.domain.operation import (
    AddBeneficiary,
    ChangePhone,
    CreditTransfer,
    Login,
    Money,
    Operation,
    Payee,
)

OPERATIONS_MD = Path(__file__).parents[2] / "docs" / "operations.md"
IBAN = "FR7630006000011234567890189"
# 70 characters: the longest payee name (SEPA), in GSM-7, in UCS-2 within the BMP, and outside it.
NAMES = {"gsm7": "A" * 70, "ucs2": "ç" * 70, "astral": "\U0001f600" * 70}
_EXTENSION = frozenset("\f^{}\\[~]|€")


def parts(text: str) -> int:
    """How many SMS parts carry `text`: 160/153 septets in GSM-7, 70/67 UTF-16 units in UCS-2."""
    if fits_gsm7(text):
        septets = sum(2 if char in _EXTENSION else 1 for char in text)
        return 1 if septets <= 160 else math.ceil(septets / 153)
    units = len(text.encode("utf-16-le")) // 2
    return 1 if units <= 70 else math.ceil(units / 67)


def longest(name: str) -> list[str]:
    """Every code SMS with `name` as payee, the largest amount, 8 digits and 10 minutes, in both locales."""
    payee = Payee(name, IBAN)
    operations: list[Operation] = [
        Login(),
        CreditTransfer(Money("EUR", 10**15 - 1), payee, "tx"),
        AddBeneficiary(payee),
        ChangePhone("+33612345678"),
    ]
    return [
        sms_text.render(operation, sms_text.SmsContext("MaBanque", "12345678", 10, locale))
        for operation in operations
        for locale in ("fr", "en")
    ]


def test_the_longest_text_fits_in_three_gsm7_parts() -> None:
    """With a GSM-7 payee name, every text stays GSM-7, at most 378 characters in 3 parts.

    The name is printed 40 letters at most (sms_text.PRINTED_NAME), whatever its length as sent.
    """
    texts = longest(NAMES["gsm7"])
    assert all(fits_gsm7(text) for text in texts)
    assert max(len(text) for text in texts) == 378
    assert max(parts(text) for text in texts) == 3


def test_a_name_outside_gsm7_takes_up_to_six_ucs2_parts() -> None:
    """A payee name with a Latin letter outside GSM-7 (ç) makes the text UCS-2: 6 parts at most."""
    texts = longest(NAMES["ucs2"])
    assert not all(fits_gsm7(text) for text in texts)
    assert max(parts(text) for text in texts) == 6


def test_characters_beyond_latin_letters_are_not_printed() -> None:
    """Emoji (outside the BMP) are dropped from the printed name: the text stays GSM-7, 3 parts at most."""
    texts = longest(NAMES["astral"])
    assert all(fits_gsm7(text) for text in texts)
    assert max(parts(text) for text in texts) == 3


def test_the_documented_kannel_setting_sends_the_longest_text_whole() -> None:
    """docs/operations.md's max-messages is at least the most parts a text can take."""
    documented = re.search(r"^max-messages = (\d+)$", OPERATIONS_MD.read_text(encoding="utf-8"), re.MULTILINE)
    assert documented is not None
    worst = max(parts(text) for name in NAMES.values() for text in longest(name))
    assert int(documented.group(1)) >= worst
