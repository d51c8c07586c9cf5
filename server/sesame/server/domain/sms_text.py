"""The SMS text, rendered from the stored operation only (RTS Art. 5(2)), never from caller free text.

Each message names the action as a verb in capitals, the amount and payee when there are some, the
validity, and the warning that the bank never asks for the code and that it never cancels anything
(RTS Art. 5(1)(a) and 5(2), and the banks' anti-scam wording). No links. "EUR" rather than the euro sign,
and only the accents of GSM 03.38 (é è à ù), keep the text in GSM-7.

The payee's name is the one piece of caller text an SMS prints, so it could be written to read as the
bank's own words ("ANNULATION du virement precedent. Code de blocage"). It is printed reduced to a name:
Latin letters (accented too), spaces and `- ' &`, at most PRINTED_NAME letters, cut at a word; digits,
sentence punctuation and quotes become spaces. And it is set apart in double quotes, which the reduced name
cannot contain. The operation and its digest keep the name the caller sent (docs/api.md).
"""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sesame.server.domain import currency
from sesame.server.domain.operation import (
    AddBeneficiary,
    ChangePhone,
    CreditTransfer,
    Login,
    Money,
    Operation,
)
from sesame.server.domain.privacy import mask_iban, mask_phone

PRINTED_NAME = 40  # characters of the payee's name an SMS prints: a name, not room for a sentence
_NAME_PUNCTUATION = frozenset(" -'&")

_WARNING = {
    "fr": (
        "Ce code ne sert jamais à annuler ou bloquer une opération. "
        "Votre banque ne vous le demandera jamais, ni par téléphone ni par SMS. "
        "Pas vous ? Ne saisissez rien, appelez le numéro au dos de votre carte."
    ),
    "en": (
        "This code never cancels or blocks a payment. "
        "Your bank will never ask you for it, by phone or by text. "
        "Not you? Do not enter it; call the number on the back of your card."
    ),
}


@dataclass(frozen=True, slots=True)
class SmsContext:
    """What the text needs besides the operation."""

    bank_name: str
    code: str
    validity_minutes: int
    locale: str


def render(operation: Operation, ctx: SmsContext) -> str:
    """The full SMS text for `operation`."""
    action = _action_fr(operation) if ctx.locale == "fr" else _action_en(operation)
    if ctx.locale == "fr":
        head = f"{ctx.bank_name}: code {ctx.code} pour {action}. Valable {ctx.validity_minutes} min."
    else:
        head = f"{ctx.bank_name}: code {ctx.code} to {action}. Valid {ctx.validity_minutes} min."
    return f"{head} {_WARNING[ctx.locale]}"


def printed_name(name: str) -> str:
    """The payee's name as an SMS prints it, in double quotes: letters, spaces and `- ' &` only, bounded."""
    kept = "".join(c if _is_name_character(c) else " " for c in unicodedata.normalize("NFC", name))
    words = kept.split()
    printed = ""
    for word in words:
        longer = f"{printed} {word}" if printed else word
        if len(longer) > PRINTED_NAME:
            printed = printed or word[:PRINTED_NAME]  # one word longer than the bound: cut inside it
            break
        printed = longer
    return f'"{printed or "-"}"'


def _is_name_character(c: str) -> bool:
    """A Latin letter (accented too: é, ß, Ø...) or one of the few marks a name holds."""
    return c in _NAME_PUNCTUATION or (c.isalpha() and unicodedata.name(c, "").startswith("LATIN "))


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


def _action_fr(operation: Operation) -> str:
    match operation:
        case Login():
            return "vous CONNECTER à votre banque en ligne"
        case CreditTransfer(amount=amount, payee=payee):
            name = printed_name(payee.name)
            return f"ENVOYER {format_amount(amount, 'fr')} à {name} (IBAN {mask_iban(payee.iban)})"
        case AddBeneficiary(payee=payee):
            return (
                f"AJOUTER le bénéficiaire {printed_name(payee.name)} (IBAN {mask_iban(payee.iban)}). "
                "Vous pourrez ensuite lui envoyer de l'argent"
            )
        case ChangePhone(new_phone=new_phone):
            return f"CHANGER votre numéro sécurisé pour le {mask_phone(new_phone)}"


def _action_en(operation: Operation) -> str:
    match operation:
        case Login():
            return "LOG IN to your online bank"
        case CreditTransfer(amount=amount, payee=payee):
            name = printed_name(payee.name)
            return f"SEND {format_amount(amount, 'en')} to {name} (IBAN {mask_iban(payee.iban)})"
        case AddBeneficiary(payee=payee):
            return (
                f"ADD the payee {printed_name(payee.name)} (IBAN {mask_iban(payee.iban)}). "
                "You will then be able to send them money"
            )
        case ChangePhone(new_phone=new_phone):
            return f"CHANGE your secure number to {mask_phone(new_phone)}"


_PHONE_CHANGED = {
    "fr": (
        "{bank}: votre numéro sécurisé a été changé pour le {phone}. "
        "Pas vous ? Appelez vite le numéro au dos de votre carte. "
        "Votre banque ne vous demandera jamais de code."
    ),
    "en": (
        "{bank}: your secure number was changed to {phone}. "
        "Not you? Call the number on the back of your card now. "
        "Your bank will never ask you for a code."
    ),
}


def phone_changed_notice(bank_name: str, new_phone: str, locale: str) -> str:
    """The notice to the old number that the secure number changed: no code, the new number masked."""
    return _PHONE_CHANGED[locale].format(bank=bank_name, phone=mask_phone(new_phone))


_USER_BLOCKED = {
    "fr": (
        "{bank}: après plusieurs codes erronés, l'authentification par SMS est bloquée "
        "jusqu'à {time} UTC le {date}. "
        "Pas vous ? Appelez le numéro au dos de votre carte. "
        "Votre banque ne vous demandera jamais de code."
    ),
    "en": (
        "{bank}: after several wrong codes, authentication by text is blocked until {time} UTC on {date}. "
        "Not you? Call the number on the back of your card. "
        "Your bank will never ask you for a code."
    ),
}


def user_blocked_notice(bank_name: str, blocked_until: datetime, locale: str) -> str:
    """The payer's alert that a block started (RTS Art. 4(4)): its end, no code, no number."""
    # Rounded up to the minute: the user is never told a time at which the block still holds.
    end = blocked_until.astimezone(UTC)
    if end.second or end.microsecond:
        end = end.replace(second=0, microsecond=0) + timedelta(minutes=1)
    return _USER_BLOCKED[locale].format(
        bank=bank_name, time=end.strftime("%H:%M"), date=end.strftime("%d/%m/%Y")
    )
