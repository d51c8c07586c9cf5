"""What may be shown of personal data in logs, the journal and API answers."""

from __future__ import annotations

import re

import phonenumbers

_DIGIT_RUN = re.compile(r"\d{4,}")
# From the first `.u`, whatever follows: an id altered by its caller (upper-cased, a suffix, twice) kept it.
_USER_TAG = re.compile(r"\.u.*", re.IGNORECASE | re.DOTALL)
# The ITU calling codes: prefix-free, so the one a number starts with is found by its first 1 or 2 digits,
# and any other is 3 digits (as _mask.lua, whose table of the 1- and 2-digit codes is checked against it).
_CALLING_CODES = frozenset(str(code) for code in phonenumbers.COUNTRY_CODE_TO_REGION_CODE)


def mask_phone(e164: str) -> str:
    """Keep the whole country code and the last two digits: `+33*******78`, `+352*******56`, `+1********23`.
    Shorter than 6, or no digit left to hide between them: all hidden."""
    kept = next((size for size in (1, 2) if e164[1 : 1 + size] in _CALLING_CODES), 3) + 1
    if len(e164) < max(6, kept + 3):
        return "*" * len(e164)
    return e164[:kept] + "*" * (len(e164) - kept - 2) + e164[-2:]


def mask_iban(iban: str) -> str:
    """Keep the country, check digits and the last four characters: `FR76...1234`."""
    if len(iban) < 10:
        return "*" * len(iban)
    return f"{iban[:4]}...{iban[-4:]}"


def redact(text: str) -> str:
    """An SMS text as logs may show it: every run of 4 or more digits (the code) is hidden."""
    return _DIGIT_RUN.sub("******", text)


def mask_challenge(challenge_id: str) -> str:
    """A challenge id as logs show it: without its user tag (from the first `.u` on, in either case).

    The tag is the start of an unkeyed SHA-256 of the user id (decision 0019): from a log line, a search over
    the ids a bank gives (customer or phone numbers) found the whole id `mask_user` hides, in milliseconds
    (an outside audit). The nonce before it names the challenge alone; a caller's full id starts with it
    (decision 0158).
    """
    return _USER_TAG.sub("", challenge_id, count=1)


def mask_user(user_id: str) -> str:
    """A user id as logs show it: most of it hidden, enough kept to tell neighbours apart.

    A bank's user id may be a customer number or a phone number: at least half is always hidden, the ends
    kept (`1234567890` -> `12******90`, `alice` -> `a***e`), so a log line never holds a whole id.
    """
    if len(user_id) < 4:
        return "*" * len(user_id)
    kept = 1 if len(user_id) < 8 else 2
    return user_id[:kept] + "*" * (len(user_id) - 2 * kept) + user_id[-kept:]
