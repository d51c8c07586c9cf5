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
