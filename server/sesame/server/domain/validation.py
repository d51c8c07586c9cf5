"""Checks of caller input. Each check returns the normalised value or raises ValueError with a reason.

The gRPC layer calls them field by field and reports every failing field at once (google.rpc.BadRequest).
"""

from __future__ import annotations

import functools
import re
import unicodedata

import phonenumbers
from schwifty import IBAN
from schwifty.exceptions import SchwiftyException

from sesame.server.domain import currency

IDENTIFIER = re.compile(r"^[A-Za-z0-9._:@-]{1,128}\Z")  # \Z: `$` also matches before a final newline
_E164 = re.compile(r"^\+[1-9][0-9]{1,14}\Z")  # [0-9], not \d: \d matches any script's digits
MAX_PAYEE_NAME = 70  # SEPA credit transfer: 70 characters for the creditor name
MAX_TRANSACTION_ID = 64
MAX_CONTEXT_FIELD = 256
MAX_REQUEST_ID = 128
MAX_ACTOR = 128  # an operator's id or a service's name, as the bank writes it
MAX_REASON = 256
MAX_AMOUNT_MINOR = 10**15  # ten trillion euros: a bound against overflow, far above any real transfer
LOCALES = ("fr", "en")
# What no name holds and only an address does: a scheme, "www.", an e-mail address. A name the payee chose
# (a fraudster's beneficiary) holding one is refused. A bare host name ("ma-banque.support") is not: the
# SMS prints a name without its dots (`sms_text.printed_name`), so no host reaches the phone, and dotted
# names are ordinary ("ETS.DUPONT", whose `.dupont` is a delegated top-level domain).
_LINK = re.compile(r"://|\bwww\.|@", re.IGNORECASE)
_MOBILE_TYPES = (phonenumbers.PhoneNumberType.MOBILE, phonenumbers.PhoneNumberType.FIXED_LINE_OR_MOBILE)


def identifier(value: str) -> str:
    """A user, client or similar id: 1 to 128 characters of [A-Za-z0-9._:@-]."""
    if not IDENTIFIER.match(value):
        raise ValueError("must be 1 to 128 characters of letters, digits and . _ : @ -")
    return value


def mobile_phone(value: str) -> str:
    """An E.164 mobile number, returned in E.164 form.

    E.164 as sent: `+` and ASCII digits only. libphonenumber reads a number as a person dials it, so it
    would take `+33612345OOO` (keypad letters) as +33612345666, drop an extension after `x` or `#`, and
    take in spaces, `(0)`, full-width digits: another number than the one written, to which codes would go.
    """
    if not _E164.match(value):
        raise ValueError("must be an E.164 number such as +33612345678")
    try:
        number = phonenumbers.parse(value, None)
    except phonenumbers.NumberParseException as exc:
        raise ValueError("must be an E.164 number such as +33612345678") from exc
    if not phonenumbers.is_valid_number(number):
        raise ValueError("is not a valid phone number")
    if phonenumbers.number_type(number) not in _MOBILE_TYPES:
        raise ValueError("must be a mobile number")
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


@functools.lru_cache(maxsize=1024)
def iban(value: str) -> str:
    """An IBAN with a valid checksum, in compact upper-case form. Remembered per worker (a payee's IBAN comes
    back in the Start and the Verify of each of its transfers; schwifty takes ~10 µs a check: decision 0049);
    a refused one is not remembered (ValueError is raised again)."""
    if not value.strip():
        raise ValueError("is required")
    if len(value) > 42:
        raise ValueError("is too long for an IBAN")
    grouped = value.replace(" ", "")
    if not (grouped.isascii() and grouped.isalnum()):
        # ASCII letters and digits, grouped by spaces: Python's upper case would read a dotless i as `I`, a
        # long s as `S`, the ligature st as `ST`, binding another string than the one sent; a tab or a line
        # break was dropped as a space is, which api.md says is refused (outside audits).
        raise ValueError("must be ASCII letters and digits, grouped by spaces")
    try:
        return str(IBAN(value).compact)
    except SchwiftyException as exc:
        raise ValueError(f"is not a valid IBAN ({type(exc).__name__})") from exc


def currency_code(value: str) -> str:
    """An active ISO 4217 alphabetic code."""
    if not currency.is_known(value):
        raise ValueError("must be an ISO 4217 currency code such as EUR")
    return value


def amount_minor(value: int) -> int:
    """A strictly positive amount in minor units."""
    if value <= 0:
        raise ValueError("must be strictly positive")
    if value > MAX_AMOUNT_MINOR:
        raise ValueError("is too large")
    return value


def payee_name(value: str) -> str:
    """A printable name of 1 to 70 characters, NFC-normalised with inner spaces collapsed.

    Checked as sent, before the spaces collapse: a line break, tab or other control character is refused,
    not read as a space (an outside audit: `Jean\nDUPONT` bound and printed as `Jean DUPONT`, and a name of
    119 characters passed as its collapsed 70). Spaces of any width (Zs: a no-break space) do collapse."""
    nfc = unicodedata.normalize("NFC", value)
    if len(nfc) > MAX_PAYEE_NAME:
        raise ValueError(f"must be at most {MAX_PAYEE_NAME} characters")
    if any(not char.isprintable() and unicodedata.category(char) != "Zs" for char in nfc):
        raise ValueError("must not contain control characters")
    normalised = " ".join(nfc.split())
    if not normalised:
        raise ValueError("is required")
    if _LINK.search(normalised):
        raise ValueError("must not contain a web or e-mail address (it is printed in the SMS)")
    return normalised


def bounded_text(value: str, limit: int) -> str:
    """Printable text of at most `limit` characters (may be empty)."""
    if len(value) > limit:
        raise ValueError(f"must be at most {limit} characters")
    if not value.isprintable():
        raise ValueError("must not contain control characters")
    return value


def required_text(value: str, limit: int) -> str:
    """Printable text of 1 to `limit` characters, not only spaces."""
    if not value.strip():
        raise ValueError("is required")
    return bounded_text(value, limit)


def locale(value: str) -> str:
    """A supported SMS language; empty means French."""
    chosen = value or "fr"
    if chosen not in LOCALES:
        raise ValueError(f"must be one of {', '.join(LOCALES)}")
    return chosen


def code(value: str, digits: int) -> str:
    """A code as typed: exactly `digits` ASCII digits."""
    if len(value) != digits or not value.isascii() or not value.isdigit():
        raise ValueError(f"must be exactly {digits} digits")
    return value
