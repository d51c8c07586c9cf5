"""SMS send budgets: how many codes one user, and one destination number, may be sent per rolling window.

A defence against SMS pumping (toll fraud through one-time codes): each SMS carrying a code takes one unit
from the user's budget and one from the number's, before any HSM call or SMS (docs/decisions/0011). The
number's budget binds across every user who shares it. A subject names a number only by a keyed hash, so
that neither a store key nor an error ever carries the number itself.
"""

from __future__ import annotations

import enum
import hashlib
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from sesame.server.domain.errors import SendBudgetExhausted

if TYPE_CHECKING:
    from sesame.server.domain.ports import StateStore

_PHONE_TAG = b"sesame/send-budget/phone/v1\x00"  # a domain tag: this hash means nothing elsewhere


class BudgetKind(enum.Enum):
    """Whose budget: the user's or the destination number's."""

    USER = "user"
    PHONE = "phone"


@dataclass(frozen=True, slots=True)
class BudgetSubject:
    """One budget's owner: a user id, or the hash of an E.164 number (never the number)."""

    kind: BudgetKind
    key: str

    @classmethod
    def user(cls, user_id: str) -> BudgetSubject:
        """The user's budget."""
        return cls(BudgetKind.USER, user_id)

    @classmethod
    def phone(cls, e164: str) -> BudgetSubject:
        """The number's budget, named by the first 128 bits of SHA-256 over a domain tag and the number."""
        return cls(BudgetKind.PHONE, hashlib.sha256(_PHONE_TAG + e164.encode()).hexdigest()[:32])


@dataclass(frozen=True, slots=True)
class SendBudget:
    """Codes per rolling `window`, for each user and for each destination number (validated at boot)."""

    per_user: int = 10
    per_phone: int = 10
    window: timedelta = timedelta(hours=1)


async def take_units(
    store: StateStore, budget: SendBudget, user_id: str, phone: str, at: datetime
) -> tuple[BudgetSubject, ...]:
    """Take one unit from the user's budget, then one from the number's; return the subjects charged.

    When the number's budget refuses, the user's unit is given back (best effort: a failure to give it back
    costs the user one unit for one window, never an SMS) and SendBudgetExhausted is raised.
    """
    user = BudgetSubject.user(user_id)
    number = BudgetSubject.phone(phone)
    await store.take_send_budget(user, at, budget.per_user, budget.window)
    try:
        await store.take_send_budget(number, at, budget.per_phone, budget.window)
    except SendBudgetExhausted:
        await store.return_send_budget(user, at)
        raise
    return user, number


async def give_back(store: StateStore, subjects: tuple[BudgetSubject, ...], at: datetime) -> None:
    """Return the units taken at `at` when no SMS went after all (a retried request, a refused resend)."""
    for subject in subjects:
        await store.return_send_budget(subject, at)
