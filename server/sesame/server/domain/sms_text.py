"""The SMS text, rendered from the stored operation only (RTS Art. 5(2)), never from caller free text.

The words are the templates' (`sms_templates`, files an operator may replace): each code SMS names the
action as a verb in capitals, the amount and payee when there are some, the validity, and the warning that
the bank never asks for the code and that it never cancels anything (RTS Art. 5(1)(a) and 5(2), and the
banks' anti-scam wording). No links. "EUR" rather than the euro sign, and only the accents of GSM 03.38
(é è à ù), keep the bank's words in GSM-7.

The payee's name is the one piece of caller text an SMS prints, so it could be written to read as the
bank's own words ("ANNULATION du virement precedent. Code de blocage"). It is printed reduced to a name:
Latin letters (accented too; Greek and Cyrillic romanized first, `Иванов` as `Ivanov`), spaces and
`- ' &`, at most PRINTED_NAME letters, cut at a word; digits,
sentence punctuation and quotes become spaces, and so do the Latin letters no name is written with (clicks,
glottal stops, tone letters, small capitals), some of which read as punctuation or digits (decision 0080).
And it is set apart in double quotes, which the reduced name cannot contain. The operation and its digest
keep the name the caller sent (docs/api.md).

Every text must fit the segment budget (`SmsTemplates.max_parts`, docs/sms.md). So the name's letters are
written in GSM-7 (`transliteration`) when that keeps the whole text GSM-7, and when the text would still
take more parts than the budget, the name, and only the name, is cut to what fits and ends with `...`,
never below SHORTEST_NAME letters (but before the bank's answer that the name does not match gives way,
down to `"-"`): the code, the amount, the IBAN's shown part, that answer and the warning are never cut (the
boot refuses templates that could not fit, `sms_budget`).
"""

from __future__ import annotations

import unicodedata
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Final

from sesame.server.domain import currency
from sesame.server.domain.gsm7 import fits_gsm7
from sesame.server.domain.operation import (
    AddBeneficiary,
    ChangePhone,
    CreditTransfer,
    Login,
    Money,
    Operation,
    Payee,
    kind,
)
from sesame.server.domain.privacy import mask_iban, mask_phone
from sesame.server.domain.segments import measure
from sesame.server.domain.sms_templates import Kind, SmsTemplates, Template, default_templates
from sesame.server.domain.transliteration import gsm7_letter, name_letter, romanized

PRINTED_NAME = 40  # characters of the payee's name an SMS prints: a name, not room for a sentence
SHORTEST_NAME = 12  # characters a name cut to fit the budget keeps at least, before its `...`
ELLIPSIS = "..."  # three dots, in GSM-7 (the one-character ellipsis is not)
_NAME_PUNCTUATION = frozenset(" -'&")
# Every ASCII character but a letter and a name's marks, as a space: what `_reduced` keeps of an ASCII name.
_ASCII_NOT_IN_NAMES: Final = {
    point: " " for point in range(128) if not (chr(point).isalpha() or chr(point) in _NAME_PUNCTUATION)
}


@dataclass(frozen=True, slots=True)
class SmsContext:
    """What the text needs besides the operation."""

    bank_name: str
    code: str
    validity_minutes: int
    locale: str
    templates: SmsTemplates | None = None  # None: the package's defaults
    # For a transfer the risk rules flagged to a payee added lately: when it was added, and now (decision
    # 0032). The text then names the payee as new (`Kind.CREDIT_TRANSFER_NEW_PAYEE`).
    new_payee: NewPayee | None = None
    # The risk rules said WARN or HOLD (for any reason): the operation's alert wording (decision 0043).
    flagged: bool = False
    # The bank's Verification of Payee answer for the payee (`{payee_check}`, decision 0099), '' none.
    payee_verification: str = ""


@dataclass(frozen=True, slots=True)
class NewPayee:
    """When a transfer's payee was added, and when the SMS is written (for "today", "yesterday")."""

    added_at: datetime
    now: datetime


# How a locale says when a payee was added: today, yesterday, or another day (day/month), at a UTC time.
_ADDED: dict[str, tuple[str, str, str]] = {
    "fr": ("aujourd'hui à {time} UTC", "hier à {time} UTC", "le {day} à {time} UTC"),
    "en": ("today at {time} UTC", "yesterday at {time} UTC", "on {day} at {time} UTC"),
}


# How a locale says the bank's Verification of Payee answer, after the IBAN (`{payee_check}`): nothing when it
# made none, or could not (decision 0099).
_PAYEE_CHECKS: dict[str, dict[str, str]] = {
    "fr": {
        "match": ", nom vérifié",
        "close_match": ", nom seulement PROCHE",
        "no_match": ", nom ne correspond PAS",
    },
    "en": {
        "match": ", name verified",
        "close_match": ", name only CLOSE",
        "no_match": ", name does NOT match",
    },
}


def payee_check(answer: str, locale: str) -> str:
    """`{payee_check}`: `, nom vérifié`, `, nom ne correspond PAS`, ... or '' (not asked, not possible)."""
    return _PAYEE_CHECKS[locale].get(answer, "")


# The answers that warn the payer: printed rather than any letter of the payee's name (`rendered`).
WARNING_ANSWERS: Final = frozenset({"close_match", "no_match"})


def longest_payee_check(locale: str) -> str:
    """The answer whose `{payee_check}` is longest in `locale` (the segment budget's worst case)."""
    return max(_PAYEE_CHECKS[locale], key=lambda answer: len(_PAYEE_CHECKS[locale][answer]))


def added_when(new_payee: NewPayee, locale: str) -> str:
    """`aujourd'hui à 13:07 UTC`, `hier à 13:07 UTC`, `le 28/08 à 13:07 UTC` (days in UTC)."""
    added, now = new_payee.added_at.astimezone(UTC), new_payee.now.astimezone(UTC)
    today, yesterday, other = _ADDED[locale]
    days = (now.date() - added.date()).days
    phrase = today if days <= 0 else yesterday if days == 1 else other
    return phrase.format(time=added.strftime("%H:%M"), day=added.strftime("%d/%m"))


def render(operation: Operation, ctx: SmsContext) -> str:
    """The full SMS text for `operation`, within the templates' segment budget."""
    return rendered(operation, ctx).text


@dataclass(frozen=True, slots=True)
class Rendered:
    """A code SMS's text, with the template and the fields (the payee's name as fitted) that gave it."""

    text: str
    template: Template
    fields: dict[str, str]

    def with_code(self, code: str) -> str:
        """The same text with `code` in the code's place: for a code of as many GSM-7 characters (digits, or
        the journal's mask), the text `render` gives with that code, since its name was fitted to a text of
        the same length and alphabet (decision 0059: the dispatcher renders once, not twice)."""
        return self.template.fill(self.fields | {"code": code})


def rendered(operation: Operation, ctx: SmsContext) -> Rendered:
    """The full SMS text for `operation` (`render`), and what gave it."""
    templates = ctx.templates or default_templates()
    fields = {
        "bank": ctx.bank_name,
        "code": ctx.code,
        "minutes": str(ctx.validity_minutes),
        "warning": templates.warning(ctx.locale),
    }
    payee: str | None = None
    match operation:
        case Login():
            pass
        case CreditTransfer(amount=amount, payee=Payee(name=name, iban=iban)):
            fields |= {"amount": format_amount(amount, ctx.locale), "iban": mask_iban(iban)}
            payee = name
            if ctx.new_payee is not None:
                fields["when"] = added_when(ctx.new_payee, ctx.locale)
        case AddBeneficiary(payee=Payee(name=name, iban=iban)):
            fields["iban"] = mask_iban(iban)
            payee = name
        case ChangePhone(new_phone=new_phone):
            fields["phone"] = mask_phone(new_phone)
    template = templates.get(template_kind(operation, ctx), ctx.locale)
    if payee is None:
        return Rendered(template.fill(fields), template, fields)
    fields["payee_check"] = payee_check(ctx.payee_verification, ctx.locale)
    # A warning of the bank's (the name does not match, or only closely) outranks the letters of a name the
    # payee chose: the name is cut below SHORTEST_NAME, down to "-", before the warning gives way. It gave way
    # first, and the name was then printed whole in its place: a long name took the warning out (an outside
    # audit, AR1; decision 0099).
    warns = ctx.payee_verification in WARNING_ANSWERS
    fields["payee"], text = _fitted_name(templates, template, fields, payee, 0 if warns else SHORTEST_NAME)
    if fields["payee_check"] and measure(text).parts > templates.max_parts:
        # Over the budget even so (the boot refuses such templates, `sms_budget`): the answer gives way; a
        # warning's name stays as cut, never printed longer in the answer's room.
        fields["payee_check"] = ""
        if warns:
            text = template.fill(fields)
        else:
            fields["payee"], text = _fitted_name(templates, template, fields, payee)
    return Rendered(text, template, fields)


def template_kind(operation: Operation, ctx: SmsContext) -> Kind:
    """The template that words the code SMS of `operation`: the new-payee alert for a transfer the risk
    rules flagged to a payee added lately (decision 0032), the operation's alert for any other flagged code
    (decision 0043), else the operation's own."""
    if isinstance(operation, CreditTransfer) and ctx.new_payee is not None:
        return Kind.CREDIT_TRANSFER_NEW_PAYEE
    if ctx.flagged:
        return Kind.alert_of(kind(operation))
    return Kind.of(kind(operation))


def phone_changed_notice(
    bank_name: str, new_phone: str, locale: str, templates: SmsTemplates | None = None
) -> str:
    """The notice to the old number that the secure number changed: no code, the new number masked."""
    fields = {"bank": bank_name, "phone": mask_phone(new_phone)}
    return fitted(templates or default_templates(), Kind.PHONE_CHANGED, locale, fields, None)


def user_blocked_notice(
    bank_name: str, blocked_until: datetime, locale: str, templates: SmsTemplates | None = None
) -> str:
    """The payer's alert that a block started (RTS Art. 4(4)): its end, no code, no number."""
    # Rounded up to the minute: the user is never told a time at which the block still holds.
    end = blocked_until.astimezone(UTC)
    if end.second or end.microsecond:
        end = end.replace(second=0, microsecond=0) + timedelta(minutes=1)
    fields = {"bank": bank_name, **_when(end)}
    return fitted(templates or default_templates(), Kind.USER_BLOCKED, locale, fields, None)


def beneficiary_added_notice(
    bank_name: str, payee: Payee, at: datetime, locale: str, templates: SmsTemplates | None = None
) -> str:
    """The notice that a payee was added (its verified challenge's time, in UTC): no code."""
    fields = {"bank": bank_name, "iban": mask_iban(payee.iban), **_when(at.astimezone(UTC))}
    return fitted(templates or default_templates(), Kind.BENEFICIARY_ADDED, locale, fields, payee.name)


def fitted(
    templates: SmsTemplates, kind: Kind, locale: str, fields: dict[str, str], payee: str | None
) -> str:
    """The template filled in; the payee's name in GSM-7 if that keeps the text GSM-7, cut if it must be."""
    template = templates.get(kind, locale)
    if payee is None:
        return template.fill(fields)
    return _fitted_name(templates, template, fields, payee)[1]


def _fitted_name(
    templates: SmsTemplates,
    template: Template,
    fields: dict[str, str],
    payee: str,
    shortest: int = SHORTEST_NAME,
) -> tuple[str, str]:
    """The payee's name as `template` prints it with `fields` (quoted, in GSM-7 letters if that keeps the
    text GSM-7, cut to the segment budget if it must be, not below `shortest` letters: 0, down to "-"), and
    the text it gives."""
    name = _reduced(payee, gsm7_letter)
    text = template.fill(fields | {"payee": _quoted(name)})
    if not fits_gsm7(text):
        # The bank's own words are UCS-2: the name keeps its letters, those GSM-7 would write (decision 0080).
        name = _reduced(payee, name_letter)
        text = template.fill(fields | {"payee": _quoted(name)})
    quoted = _quoted(name)
    for cut, shown in enumerate(_shortened(name, shortest)):
        if cut:  # the whole name's text (the first) is filled above, not filled again (decision 0072)
            quoted = _quoted(shown)
            text = template.fill(fields | {"payee": quoted})
        if measure(text).parts <= templates.max_parts:
            break
    return quoted, text


def printed_name(name: str) -> str:
    """The payee's name as an SMS prints it, in double quotes: letters, spaces and `- ' &` only, bounded."""
    return _quoted(_reduced(name, name_letter))


def printed_names(name: str) -> tuple[str, ...]:
    """The payee's name as each kind of SMS prints it, quoted: in GSM-7 letters (`Ł` as `L`: most texts),
    and in the name's own letters (a text the bank's own words make UCS-2); an ASCII name (most are) prints
    one way in both, read once."""
    own = printed_name(name)
    return (own,) if name.isascii() else (_quoted(_reduced(name, gsm7_letter)), own)


def _reduced(name: str, letter: Callable[[str], str]) -> str:
    """Letters (each as `letter` writes it), spaces and `- ' &` (an apostrophe only one at a time and inside
    a word), at most PRINTED_NAME, cut at a word."""
    if name.isascii():
        # An ASCII name (most are) in one pass in C: its letters and marks are name characters that both
        # `letter`s write as themselves, every other character a space (decision 0072).
        kept = name.translate(_ASCII_NOT_IN_NAMES)
    else:
        kept = "".join(letter(c) if _is_name_character(c) else " " for c in romanized(name))
    words = kept.split()
    if "'" in kept:
        # One apostrophe, inside a word: `Jean'' pour ''Jean` would print as `"Jean" pour "Jean"`, two
        # apostrophes passing for the closing and opening quotes of a name (an outside audit's, 0149).
        words = [word for word in ("'".join(filter(None, word.split("'"))) for word in words) if word]
    printed = ""
    for word in words:
        longer = f"{printed} {word}" if printed else word
        if len(longer) > PRINTED_NAME:
            printed = printed or word[:PRINTED_NAME]  # one word longer than the bound: cut inside it
            break
        printed = longer
    return printed


def _shortened(name: str, shortest: int = SHORTEST_NAME) -> Iterator[str]:
    """The name, then ever shorter cuts of it ending in `...`, down to `shortest` characters (at 0, no letter
    left: "", printed `"-"`)."""
    yield name
    for keep in range(len(name) - 1, shortest - 1, -1):
        cut = name[:keep].rstrip(" -'&")
        yield cut + ELLIPSIS if cut else ""


def _quoted(name: str) -> str:
    return f'"{name or "-"}"'


def _is_name_character(c: str) -> bool:
    """A Latin letter (accented too: é, ß, Ø...) or one of the few marks a name holds. Not a letter outside
    the BMP (Latin Extended-G): UCS-2 writes it in two units, which a gateway that cuts the parts itself
    (Kannel) may put in two parts, and few phones have it (an outside audit)."""
    return c in _NAME_PUNCTUATION or (
        c <= "\uffff" and c.isalpha() and unicodedata.name(c, "").startswith("LATIN ")
    )


def _when(at: datetime) -> dict[str, str]:
    """The date and time fields of a notice: `25/11/2026` and `12:16`, in UTC."""
    return {"date": at.strftime("%d/%m/%Y"), "time": at.strftime("%H:%M")}


def format_amount(money: Money, locale: str) -> str:
    """`1 250,00 EUR` in French, `EUR 1,250.00` in English."""
    exponent = currency.minor_unit_exponent(money.currency)
    units, minor = divmod(money.amount_minor, 10**exponent)
    grouped = f"{units:,}"
    if locale == "fr":
        number = grouped.replace(",", " ") + (f",{minor:0{exponent}d}" if exponent else "")
        return f"{number} {money.currency}"
    number = grouped + (f".{minor:0{exponent}d}" if exponent else "")
    return f"{money.currency} {number}"
