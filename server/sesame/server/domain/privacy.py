"""What may be shown of personal data in logs, the journal and API answers."""

from __future__ import annotations


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
