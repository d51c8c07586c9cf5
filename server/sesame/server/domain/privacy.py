"""What may be shown of personal data in logs, the journal and API answers."""

from __future__ import annotations

import re

_DIGIT_RUN = re.compile(r"\d{4,}")


def mask_phone(e164: str) -> str:
    """Keep the country code and the last two digits: `+33612345678` -> `+33*******78`."""
    if len(e164) < 6:
        return "*" * len(e164)
    return e164[:3] + "*" * (len(e164) - 5) + e164[-2:]


def mask_iban(iban: str) -> str:
    """Keep the country, check digits and the last four characters: `FR76...1234`."""
    if len(iban) < 10:
        return "*" * len(iban)
    return f"{iban[:4]}...{iban[-4:]}"


def redact(text: str) -> str:
    """An SMS text as logs may show it: every run of 4 or more digits (the code) is hidden."""
    return _DIGIT_RUN.sub("******", text)


def mask_user(user_id: str) -> str:
    """A user id as logs show it: most of it hidden, enough kept to tell neighbours apart.

    A bank's user id may be a customer number or a phone number: at least half is always hidden, the ends
    kept (`1234567890` -> `12******90`, `alice` -> `a***e`), so a log line never holds a whole id.
    """
    if len(user_id) < 4:
        return "*" * len(user_id)
    kept = 1 if len(user_id) < 8 else 2
    return user_id[:kept] + "*" * (len(user_id) - 2 * kept) + user_id[-kept:]
