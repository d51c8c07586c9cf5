"""SMS send budgets: how many codes may be sent per rolling window, per user, per number, per calling service
and over all.

A defence against SMS pumping (toll fraud through one-time codes). Each SMS carrying a code takes one unit
from the user's budget, the number's, the calling service's and the global one, in the same atomic step that
opens the challenge (or takes the resend), so that a unit is spent if and only if an SMS is handed to the
gateway (docs/decisions/0011, 0014). The number's budget binds across every user who shares it; the caller's
and the global ceilings bound pumping spread across many users. A subject names a number or a caller only by
a keyed hash, so that neither a store key nor an error ever carries it.
"""

from __future__ import annotations

import enum
import hashlib
from dataclasses import dataclass
from datetime import datetime, timedelta

PHONE_TAG = b"sesame/send-budget/phone/v1\x00"  # a domain tag: this hash means nothing elsewhere
_CALLER_TAG = b"sesame/send-budget/caller/v1\x00"
DEFAULT_HOLD_GRACE = timedelta(seconds=10)  # SESAME_SEND_HOLD_GRACE_SECONDS (decision 0046)
ANONYMOUS = "anonymous"  # the caller's subject without mTLS (dev): every unidentified caller shares it


class BudgetKind(enum.Enum):
    """Whose budget: the user's, the destination number's, the calling service's, or everyone's."""

    USER = "user"
    PHONE = "phone"
    CALLER = "caller"
    GLOBAL = "global"


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
        """The number's budget, named by the first 128 bits of SHA-1 over a domain tag and the number.

        SHA-1 because Start's script names this budget itself from the number it reads (Redis scripts
        have `redis.sha1hex`, no SHA-256: docs/decisions/0025). The name is a pseudonym, not a secret:
        any hash of an enumerable number can be reversed by trying every number, which the name does not
        pretend to prevent; it only keeps the number itself out of key names.
        """
        name = hashlib.sha1(PHONE_TAG + e164.encode(), usedforsecurity=False).hexdigest()[:32]
        return cls(BudgetKind.PHONE, name)

    @classmethod
    def caller(cls, caller: str) -> BudgetSubject:
        """The calling service's ceiling (its verified mTLS identity, or ANONYMOUS), named by a hash too:
        an identity may hold characters a Redis hash tag cannot."""
        name = caller or ANONYMOUS
        return cls(BudgetKind.CALLER, hashlib.sha256(_CALLER_TAG + name.encode()).hexdigest()[:32])

    @classmethod
    def overall(cls) -> BudgetSubject:
        """The global ceiling: every SMS carrying a code, whoever asked."""
        return cls(BudgetKind.GLOBAL, "all")


@dataclass(frozen=True, slots=True)
class SendBudget:
    """Codes per user and per number per rolling `window`; per calling service and over all per rolling
    `ceiling_window` (validated at boot)."""

    per_user: int = 10
    per_phone: int = 10
    window: timedelta = timedelta(hours=1)
    per_caller: int = 3000  # 50 SMS/s from one calling service
    overall: int = 6000  # 100 SMS/s from the whole deployment: about what one SMS gateway contract allows
    ceiling_window: timedelta = timedelta(minutes=1)
    # How long a unit of the number's, caller's or global budget counts while held for an SMS not handed over
    # yet: a hold whose Start crashed stops counting after it (decision 0046).
    hold_grace: timedelta = DEFAULT_HOLD_GRACE


@dataclass(frozen=True, slots=True)
class Charge:
    """One unit to take from a subject's budget: at most `limit` units count per rolling `window`."""

    subject: BudgetSubject
    limit: int
    window: timedelta


def charges(budget: SendBudget, user_id: str, phone: str, caller: str) -> tuple[Charge, ...]:
    """What one SMS to `phone` for `user_id`, asked by `caller`, costs; the first refused is reported."""
    return (
        Charge(BudgetSubject.user(user_id), budget.per_user, budget.window),
        Charge(BudgetSubject.phone(phone), budget.per_phone, budget.window),
        Charge(BudgetSubject.caller(caller), budget.per_caller, budget.ceiling_window),
        Charge(BudgetSubject.overall(), budget.overall, budget.ceiling_window),
    )


@dataclass(frozen=True, slots=True)
class Hold:
    """The units held for one SMS in the number's, caller's and global budgets (decision 0046): named by
    the SMS (its challenge id, and a resend's token), taken `at`, counting within `grace` until spent; the
    hold's record is kept at least `until` (the challenge's expiry: no SMS is sent after it)."""

    name: str
    at: datetime
    until: datetime
    grace: timedelta


class Spending(enum.Enum):
    """What spending a hold's units answered (the dispatcher sends only when SPENT)."""

    SPENT = "spent"  # spent now, or already by an earlier try of the same SMS
    UNHELD = "unheld"  # no hold (yet: the take may still be in flight; or never: refused, crashed)
    EXHAUSTED = "exhausted"  # the hold lapsed and the budgets filled meanwhile: not sent
    WITHDRAWN = "withdrawn"  # given back by its Start or Resend (refused): not sent


def held_charges(charges: tuple[Charge, ...]) -> tuple[tuple[Charge, ...], tuple[Charge, ...]]:
    """The user's own charges (taken in the step, in the user's place) and the others (held in `{sb}`)."""
    own = tuple(c for c in charges if c.subject.kind is BudgetKind.USER)
    return own, tuple(c for c in charges if c.subject.kind is not BudgetKind.USER)
