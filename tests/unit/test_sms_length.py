"""The segment budget: every template, locale and worst case fits the budget, and nothing but the name is cut.

Enumerated: every kind of SMS in both locales, every currency at the largest amount allowed, payee names of
the longest length in GSM-7 letters, in letters GSM-7 lacks (ç, œ), of emoji only and mixed, 6 and 8
digits, the longest validity, the longest number.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sesame.server.domain import currency, sms_text, validation
from sesame.server.domain.operation import AddBeneficiary, ChangePhone, CreditTransfer, Login, Money, Payee
from sesame.server.domain.privacy import mask_iban
from sesame.server.domain.segments import Encoding, measure
from sesame.server.domain.sms_budget import AN_IBAN, LONGEST_PHONE, WorstCase, every_worst, over_budget
from sesame.server.domain.sms_templates import DEFAULT_MAX_PARTS, LOCALES, Kind, default_templates
from sesame.server.domain.validation import MAX_AMOUNT_MINOR, MAX_PAYEE_NAME

OPERATIONS_MD = Path(__file__).parents[2] / "docs" / "operations.md"
NAMES = {
    "gsm7": "W" * MAX_PAYEE_NAME,
    "cedillas": "ç" * MAX_PAYEE_NAME,
    "ligatures": "œ" * MAX_PAYEE_NAME,
    "emoji": "\U0001f600" * MAX_PAYEE_NAME,
    "words": ("François Œuvre-Łukasz & Fils " * 3)[:MAX_PAYEE_NAME],
}
WHEN = datetime(2026, 12, 31, 23, 59, 30, tzinfo=UTC)


def code_texts(locale: str, name: str, digits: int) -> list[tuple[str, str]]:
    """Every code SMS with `name`, each currency at the largest amount: (what must be intact, text)."""
    ctx = sms_text.SmsContext("MaBanque", "9" * digits, 10, locale)
    payee = Payee(name, AN_IBAN)
    operations = (Login(), AddBeneficiary(payee), ChangePhone(LONGEST_PHONE))
    texts = [("", sms_text.render(operation, ctx)) for operation in operations]
    for code in sorted(currency.known_codes()):
        money = Money(code, MAX_AMOUNT_MINOR)
        text = sms_text.render(CreditTransfer(money, payee, "t"), ctx)
        texts.append((sms_text.format_amount(money, locale), text))
    return texts


def notice_texts(locale: str, name: str) -> list[str]:
    """Every notice with the longest values."""
    return [
        sms_text.phone_changed_notice("MaBanque", LONGEST_PHONE, locale),
        sms_text.beneficiary_added_notice("MaBanque", Payee(name, AN_IBAN), WHEN, locale),
        sms_text.user_blocked_notice("MaBanque", WHEN, locale),
    ]


@pytest.mark.parametrize("locale", LOCALES)
@pytest.mark.parametrize("name", NAMES.values(), ids=NAMES.keys())
@pytest.mark.parametrize("digits", [6, 8])
def test_every_code_sms_fits_the_budget_in_gsm7_with_its_code_amount_iban_and_warning(
    locale: str, name: str, digits: int
) -> None:
    """Whatever the name, currency and code length: GSM-7, 2 parts at most, every fixed part intact."""
    warning = default_templates().warning(locale)
    for amount, text in code_texts(locale, name, digits):
        assert measure(text).encoding is Encoding.GSM7
        assert measure(text).parts <= DEFAULT_MAX_PARTS
        assert f"code {'9' * digits} " in text
        assert text.endswith(warning)
        assert amount in text
        assert "IBAN" not in text or mask_iban(AN_IBAN) in text


@pytest.mark.parametrize("locale", LOCALES)
@pytest.mark.parametrize("name", NAMES.values(), ids=NAMES.keys())
def test_every_notice_fits_the_budget_in_gsm7(locale: str, name: str) -> None:
    """The notices, with the longest number, name and a date, are GSM-7 in 2 parts at most."""
    for text in notice_texts(locale, name):
        assert measure(text).encoding is Encoding.GSM7
        assert measure(text).parts <= DEFAULT_MAX_PARTS


def test_the_boot_check_renders_every_kind_and_locale_within_the_budget() -> None:
    """The check the boot runs covers each kind in each locale, and passes for the defaults."""
    rendered = every_worst(default_templates(), WorstCase("MaBanque"))
    assert {(r.kind, r.locale) for r in rendered} == {(kind, locale) for kind in Kind for locale in LOCALES}
    assert over_budget(default_templates(), WorstCase("MaBanque")) == []


def test_a_name_is_cut_with_an_ellipsis_only_when_the_text_would_not_fit() -> None:
    """The longest name with the largest amount is cut, ending in `...`; with a small amount it is whole."""
    payee = Payee("W" * MAX_PAYEE_NAME, AN_IBAN)
    ctx = sms_text.SmsContext("MaBanque", "99999999", 10, "fr")
    largest = sms_text.render(CreditTransfer(Money("EUR", MAX_AMOUNT_MINOR), payee, "t"), ctx)
    small = sms_text.render(CreditTransfer(Money("EUR", 100), payee, "t"), ctx)
    assert re.search(r'"W{12,39}\.\.\."', largest)
    assert f'"{"W" * sms_text.PRINTED_NAME}"' in small


def test_the_documented_kannel_setting_sends_the_longest_text_whole() -> None:
    """docs/operations.md's max-messages is at least the budget: Kannel never cuts a text."""
    documented = re.search(r"^max-messages = (\d+)$", OPERATIONS_MD.read_text(encoding="utf-8"), re.MULTILINE)
    assert documented is not None
    assert int(documented.group(1)) >= DEFAULT_MAX_PARTS


def _valid_name(value: str) -> bool:
    try:
        validation.payee_name(value)
    except ValueError:
        return False
    return True


@settings(max_examples=300, deadline=None)
@given(
    name=st.text(min_size=1, max_size=MAX_PAYEE_NAME).filter(_valid_name),
    code=st.sampled_from(sorted(currency.known_codes())),
    amount=st.integers(min_value=1, max_value=MAX_AMOUNT_MINOR),
    locale=st.sampled_from(LOCALES),
)
def test_any_valid_payee_name_and_amount_fit_the_budget_in_gsm7(
    name: str, code: str, amount: int, locale: str
) -> None:
    """Any valid name, currency and amount: GSM-7, within the budget, the amount and warning whole."""
    money = Money(code, amount)
    text = sms_text.render(
        CreditTransfer(money, Payee(validation.payee_name(name), AN_IBAN), "t"),
        sms_text.SmsContext("MaBanque", "12345678", 10, locale),
    )
    assert measure(text).encoding is Encoding.GSM7
    assert measure(text).parts <= DEFAULT_MAX_PARTS
    assert sms_text.format_amount(money, locale) in text
    assert text.endswith(default_templates().warning(locale))


@pytest.mark.parametrize("locale", LOCALES)
@pytest.mark.parametrize("name", NAMES.values(), ids=NAMES.keys())
@pytest.mark.parametrize("digits", [6, 8])
@pytest.mark.parametrize("days", [0, 1, 2])
def test_a_new_payee_alert_fits_the_budget_in_gsm7_with_its_code_amount_iban_and_when(
    locale: str, name: str, digits: int, days: int
) -> None:
    """A flagged transfer to a new payee (decision 0032), each currency at the largest amount, added today,
    yesterday or before: GSM-7, 2 parts at most, the code, amount, IBAN and when it was added intact."""
    new_payee = sms_text.NewPayee(WHEN - timedelta(days=days), WHEN)
    ctx = sms_text.SmsContext("MaBanque", "9" * digits, 10, locale, new_payee=new_payee)
    when = sms_text.added_when(new_payee, locale)
    for code in sorted(currency.known_codes()):
        money = Money(code, MAX_AMOUNT_MINOR)
        text = sms_text.render(CreditTransfer(money, Payee(name, AN_IBAN), "t"), ctx)
        assert measure(text).encoding is Encoding.GSM7
        assert measure(text).parts <= DEFAULT_MAX_PARTS
        assert f"code {'9' * digits} " in text
        assert sms_text.format_amount(money, locale) in text
        assert mask_iban(AN_IBAN) in text
        assert f"added {when}." in text if locale == "en" else f"ajouté {when}." in text


@pytest.mark.parametrize(
    ("days", "fr", "en"),
    [
        (0, "aujourd'hui à 23:04 UTC", "today at 23:04 UTC"),
        (1, "hier à 23:04 UTC", "yesterday at 23:04 UTC"),
        (2, "le 29/12 à 23:04 UTC", "on 29/12 at 23:04 UTC"),
    ],
)
def test_when_a_payee_was_added_is_said_as_a_customer_reads_it(days: int, fr: str, en: str) -> None:
    """Today, yesterday, or the day (UTC days and time)."""
    new_payee = sms_text.NewPayee(datetime(2026, 12, 31 - days, 23, 4, tzinfo=UTC), WHEN)
    assert (sms_text.added_when(new_payee, "fr"), sms_text.added_when(new_payee, "en")) == (fr, en)
