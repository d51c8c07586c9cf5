"""The dispatcher renders a code SMS once (decision 0059): the text it sends and the journal's record of it
are those that rendering twice gave (the text, then again with the code masked), for any operation, payee
name (cut to the budget or not, GSM-7 or not), bank name, locale, code and risk wording."""

from __future__ import annotations

import hashlib
from dataclasses import replace
from datetime import UTC, datetime, timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from sesame.server.domain import sent_text, sms_text
from sesame.server.domain.operation import (
    AddBeneficiary,
    ChangePhone,
    CreditTransfer,
    Login,
    Money,
    Operation,
    Payee,
)

IBAN = "FR7630006000011234567890189"
NAME_LETTERS = st.sampled_from(list("abcXYZ éèÉßØñ-'&.0123,\"жΩ😀ąŁ  "))
NAMES = st.lists(NAME_LETTERS, max_size=90).map("".join)
BANKS = st.sampled_from(["MaBanque", "Banque Populaire du Grand Ouest et des Îles", "Банк", "B"])
NOW = datetime(2026, 1, 5, 12, 0, tzinfo=UTC)  # the SMS's wording only: nothing reaches a clock


@st.composite
def operations(draw: st.DrawFn) -> Operation:
    payee = Payee(draw(NAMES), IBAN)
    choices: list[Operation] = [
        Login(),
        CreditTransfer(Money("EUR", draw(st.integers(0, 10**12))), payee, "tx"),
        AddBeneficiary(payee),
        ChangePhone("+33698765432"),
    ]
    return draw(st.sampled_from(choices))


@st.composite
def contexts(draw: st.DrawFn) -> sms_text.SmsContext:
    added = draw(st.none() | st.integers(0, 3).map(lambda days: NOW - timedelta(days=days)))
    return sms_text.SmsContext(
        bank_name=draw(BANKS),
        code=draw(st.text("0123456789", min_size=6, max_size=10)),
        validity_minutes=draw(st.integers(1, 30)),
        locale=draw(st.sampled_from(["fr", "en"])),
        new_payee=None if added is None else sms_text.NewPayee(added, NOW),
        flagged=draw(st.booleans()),
    )


def _twice(operation: Operation, context: sms_text.SmsContext) -> tuple[str, str]:
    """What the dispatcher did before: the text, and the masked text rendered again (its SHA-256)."""
    masked = sms_text.render(operation, replace(context, code=sent_text.MASK * len(context.code)))
    return sms_text.render(operation, context), hashlib.sha256(masked.encode()).hexdigest()


@settings(max_examples=400, deadline=None)
@given(operations(), contexts())
def test_one_rendering_gives_the_text_and_record_of_two(
    operation: Operation, context: sms_text.SmsContext
) -> None:
    text, masked_sha256 = _twice(operation, context)
    rendered = sms_text.rendered(operation, context)
    assert rendered.text == text
    once = sent_text.recorded(operation, context, rendered)
    assert once.text_sha256 == masked_sha256
    assert once == sent_text.recorded(operation, context)
