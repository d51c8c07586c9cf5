"""The segment budget: every template, rendered with the longest values it can be given, fits the budget.

The longest values: the configured bank name, the longest code and validity, the largest amount allowed
(`validation.MAX_AMOUNT_MINOR`) in the currency and locale that write it longest, a payee name of the
longest length allowed (`validation.MAX_PAYEE_NAME`, printed at most `sms_text.PRINTED_NAME`), the longest
E.164 number, a date and time. A text that fits only by cutting the payee's name is within the budget
(the rule of `sms_text.fitted`); one that does not fit even with the name at its shortest is a template
the boot refuses, naming the file, the encoding and the parts it would take.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Final

from sesame.server.domain import currency, sms_text
from sesame.server.domain.operation import (
    AddBeneficiary,
    ChangePhone,
    CreditTransfer,
    Login,
    Money,
    Operation,
    Payee,
)
from sesame.server.domain.segments import Segments, measure
from sesame.server.domain.sms_templates import LOCALES, Kind, SmsTemplates
from sesame.server.domain.validation import MAX_AMOUNT_MINOR, MAX_PAYEE_NAME

LONGEST_PHONE: Final = "+999999999999999"  # E.164: a + and at most 15 digits
AN_IBAN: Final = "FR7630006000011234567890189"  # every IBAN is shown as its 4 first and 4 last characters
LONGEST_NAME: Final = "W" * MAX_PAYEE_NAME  # one word: printed at its bound, cut inside
A_DAY: Final = datetime(2026, 12, 31, 23, 59, tzinfo=UTC)  # dates and times are written at fixed widths


@dataclass(frozen=True, slots=True)
class WorstCase:
    """The settings that make every text longer: the bank's name, the code's digits, the validity."""

    bank_name: str
    digits: int = 8
    validity_minutes: int = 10


@dataclass(frozen=True, slots=True)
class Rendered:
    """One template rendered with the longest values, and what it takes to send."""

    kind: Kind
    locale: str
    text: str
    segments: Segments
    # The template names `{payee_check}` and the longest answer gave way to fit: a warning of the bank's that
    # a long amount would take out of the SMS (an outside audit, AR1).
    answer_lost: bool = False


def longest_amount(locale: str) -> Money:
    """The allowed amount whose text is longest in `locale` (first such currency in alphabetical order)."""
    amounts = [Money(code, MAX_AMOUNT_MINOR) for code in sorted(currency.known_codes())]
    return max(amounts, key=lambda money: len(sms_text.format_amount(money, locale)))


def worst_operation(kind: Kind, locale: str) -> Operation:
    """The operation of a code SMS of this kind with the longest values."""
    payee = Payee(LONGEST_NAME, AN_IBAN)
    match kind:
        case Kind.LOGIN | Kind.LOGIN_ALERT:
            return Login()
        case Kind.CREDIT_TRANSFER | Kind.CREDIT_TRANSFER_NEW_PAYEE | Kind.CREDIT_TRANSFER_ALERT:
            return CreditTransfer(longest_amount(locale), payee, "t")
        case Kind.ADD_BENEFICIARY | Kind.ADD_BENEFICIARY_ALERT:
            return AddBeneficiary(payee)
        case Kind.CHANGE_PHONE | Kind.CHANGE_PHONE_ALERT:
            return ChangePhone(LONGEST_PHONE)
        case _:
            raise ValueError(f"a {kind} SMS carries no code")


def render_worst(templates: SmsTemplates, worst: WorstCase, kind: Kind, locale: str) -> Rendered:
    """The template of this kind and locale, rendered as sent with the longest values."""
    match kind:
        case Kind.PHONE_CHANGED:
            text = sms_text.phone_changed_notice(worst.bank_name, LONGEST_PHONE, locale, templates)
        case Kind.BENEFICIARY_ADDED:
            payee = Payee(LONGEST_NAME, AN_IBAN)
            text = sms_text.beneficiary_added_notice(worst.bank_name, payee, A_DAY, locale, templates)
        case Kind.USER_BLOCKED:
            text = sms_text.user_blocked_notice(worst.bank_name, A_DAY, locale, templates)
        case _:
            ctx = sms_text.SmsContext(
                worst.bank_name,
                "9" * worst.digits,
                worst.validity_minutes,
                locale,
                templates,
                longest_when(locale) if kind is Kind.CREDIT_TRANSFER_NEW_PAYEE else None,
                flagged=kind.value.endswith("_alert"),
                payee_verification=sms_text.longest_payee_check(locale),
            )
            done = sms_text.rendered(worst_operation(kind, locale), ctx)
            lost = "{payee_check}" in done.template.text and not done.fields.get("payee_check")
            return Rendered(kind, locale, done.text, measure(done.text), answer_lost=lost)
    return Rendered(kind, locale, text, measure(text))


def longest_when(locale: str) -> sms_text.NewPayee:
    """A payee added when `locale` says it longest: today, yesterday or another day (the French "aujourd'hui
    à 13:07 UTC" is longer than "le 29/12 à 13:07 UTC", which the boot took for the longest: an outside
    audit, AS5, found a warning answer lost with a bank name the boot accepted)."""
    added = (sms_text.NewPayee(A_DAY - timedelta(days=days), A_DAY) for days in (0, 1, 2))
    return max(added, key=lambda payee: len(sms_text.added_when(payee, locale)))


def every_worst(templates: SmsTemplates, worst: WorstCase) -> list[Rendered]:
    """Every template of every locale, rendered with the longest values."""
    return [render_worst(templates, worst, kind, locale) for locale in LOCALES for kind in Kind]


def over_budget(templates: SmsTemplates, worst: WorstCase) -> list[str]:
    """Why templates do not fit the budget, one line per template (empty when all fit)."""
    problems = []
    for r in every_worst(templates, worst):
        source = templates.get(r.kind, r.locale).source
        if r.segments.parts > templates.max_parts:
            problems.append(
                f"{source} takes {r.segments.parts} {r.segments.encoding} parts ({r.segments.units} units) "
                f"with the longest values, over the budget of {templates.max_parts}"
            )
        elif r.answer_lost:
            problems.append(
                f"{source} cannot print the bank's payee answer ({{payee_check}}) with the longest values "
                f'within the budget of {templates.max_parts} parts, even with the payee\'s name cut to "-"'
            )
    return problems


def longest_bank_name(templates: SmsTemplates, worst: WorstCase, limit: int = 64) -> int:
    """The most characters a bank name may have for every template to fit (0: not even an empty one)."""
    longest = -1
    for length in range(limit + 1):
        if over_budget(templates, WorstCase("W" * length, worst.digits, worst.validity_minutes)):
            break
        longest = length
    return max(longest, 0)
