"""The first factor: what the calling service says it verified of the end user before the SMS code.

Sésame verifies one element, possession of the secure phone, by the SMS code. Strong customer authentication
needs two elements of different categories (RTS Art. 4(1): knowledge, possession, inherence); the other one is
verified by the bank's own systems (a password at login, a device binding in the app). The caller states it
with StartChallenge and VerifyChallenge; Sésame checks its shape and its age, journals it with the start and
with the attempt, and names it in the proof's `amr` (RFC 8176) beside the SMS factor (decision 0035). It
authenticates nothing by itself: it is the caller's assertion, recorded with the caller's identity.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Final

from sesame.server.domain.errors import FieldViolation, InvalidRequest


class FactorCategory(enum.StrEnum):
    """The RTS's categories of elements (Art. 6, 7, 8)."""

    KNOWLEDGE = "knowledge"
    POSSESSION = "possession"
    INHERENCE = "inherence"


@dataclass(frozen=True, slots=True)
class Method:
    """A first-factor method a caller may name: its category and its RFC 8176 `amr` value."""

    category: FactorCategory
    amr: str


# The closed list of methods (docs/api.md): a caller's own word would name nothing a verifier could read.
METHODS: Final[Mapping[str, Method]] = {
    "password": Method(FactorCategory.KNOWLEDGE, "pwd"),
    "pin": Method(FactorCategory.KNOWLEDGE, "pin"),
    "security-question": Method(FactorCategory.KNOWLEDGE, "kba"),
    "device-binding": Method(FactorCategory.POSSESSION, "swk"),  # an app's key, held in software
    "hardware-key": Method(FactorCategory.POSSESSION, "hwk"),  # a key in a secure element, FIDO, TEE
    "smartcard": Method(FactorCategory.POSSESSION, "sc"),
    "fingerprint": Method(FactorCategory.INHERENCE, "fpt"),
    "face": Method(FactorCategory.INHERENCE, "face"),
}
SMS_AMR: Final = ("otp", "sms")  # RFC 8176: a one-time password, sent by SMS to a registered number
SMS_CATEGORY: Final = FactorCategory.POSSESSION  # the SMS code proves possession of the secure phone
FUTURE_SKEW: Final = timedelta(seconds=5)  # the caller's clock may run a little ahead of ours
DEFAULT_MAX_AGE: Final = timedelta(hours=1)
MAX_REFERENCE = 256


@dataclass(frozen=True, slots=True)
class FirstFactor:
    """The first factor as the caller asserts it: category, method, when it was verified, and a reference."""

    category: FactorCategory
    method: str  # a key of METHODS, of `category`
    verified_at: datetime
    reference: str = ""  # the caller's id of what was verified (a device binding id...), "" when none

    @property
    def amr(self) -> str:
        """The method's RFC 8176 value."""
        return METHODS[self.method].amr


def check_age(factor: FirstFactor | None, now: datetime, max_age: timedelta) -> None:
    """Refuse a first factor verified in the future or longer than `max_age` ago. InvalidRequest."""
    if factor is None:
        return
    if factor.verified_at > now + FUTURE_SKEW:
        reason = "is in the future"
    elif now - factor.verified_at > max_age:
        reason = f"is older than {int(max_age.total_seconds())} s"
    else:
        return
    raise InvalidRequest([FieldViolation("first_factor.verified_at", reason)])


def amr(*stated: FirstFactor | None) -> list[str]:
    """The proof's `amr`: the SMS factor's values, those of each first factor stated (at Start, at Verify:
    decision 0042), and `mfa` when one is of another category than the SMS code (RTS Art. 4(1)); sorted,
    each once."""
    values = set(SMS_AMR)
    for factor in stated:
        if factor is not None:
            values.add(factor.amr)
            if factor.category is not SMS_CATEGORY:
                values.add("mfa")
    return sorted(values)


def proof_claim(start: FirstFactor | None, verify: FirstFactor | None) -> dict[str, Any] | None:
    """The proof's `first_factor` claim (decision 0042): the factor stated with Verify, or with Start when
    Verify stated none (`category`, `method`, `verified_at`, `ref`, as `claim`); `stated_at`, the calls that
    stated that very factor (`start`, `verify`); `start`, the factor stated with Start when it is another.
    Factors are compared as claimed (to the second): the proof signed again from the journal is the same."""
    named = verify if verify is not None else start
    if named is None:
        return None
    body: dict[str, Any] = dict(claim(named))
    body["stated_at"] = [
        call
        for call, factor in (("start", start), ("verify", verify))
        if factor and claim(factor) == claim(named)
    ]
    if start is not None and claim(start) != claim(named):
        body["start"] = claim(start)
    return body


def claim(factor: FirstFactor) -> dict[str, str | int]:
    """The proof's `first_factor` claim: category, method, when (Unix seconds) and the reference if any."""
    body: dict[str, str | int] = {
        "category": factor.category.value,
        "method": factor.method,
        "verified_at": int(factor.verified_at.timestamp()),
    }
    if factor.reference:
        body["ref"] = factor.reference
    return body


JOURNAL_FIELDS: Final = ("factor_category", "factor_method", "factor_at", "factor_ref")


def journal_fields(factor: FirstFactor | None, iso: str) -> dict[str, str]:
    """The journal fields of a first factor (`iso`: its time as the journal writes times); none without."""
    if factor is None:
        return {}
    values = (factor.category.value, factor.method, iso, factor.reference)
    return dict(zip(JOURNAL_FIELDS, values, strict=True))


def from_journal(entry: Mapping[str, str]) -> FirstFactor | None:
    """The first factor a journal entry holds, or None."""
    if not entry.get("factor_method"):
        return None
    return FirstFactor(
        FactorCategory(entry["factor_category"]),
        entry["factor_method"],
        datetime.fromisoformat(entry["factor_at"]),
        entry.get("factor_ref", ""),
    )
