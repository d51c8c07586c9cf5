"""What the state contract suites share: the moments, operations and helpers their cases are built from."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sesame.clients.redis_store import RedisState
from sesame.server.domain.model import (
    Challenge,
    DeliveryState,
    LockoutPolicy,
    RequestContext,
    User,
    VerificationAttempt,
)
from sesame.server.domain.operation import (
    AddBeneficiary,
    ChangePhone,
    CreditTransfer,
    Login,
    Money,
    Operation,
    Payee,
    digest,
)
from tests import factories
from tests.fakes.state import MemoryState

Store = MemoryState | RedisState

PHONE = "+33612345678"
IBAN = "FR7630006000011234567890189"
TRANSFER = CreditTransfer(Money("EUR", 125000), Payee("Jean DUPONT", IBAN), "tx-1")
CONTEXT = RequestContext(ip="203.0.113.7", device_id="dev-1", session_id="sess-1", user_agent="app/1.0")
OPERATIONS: list[Operation] = [
    Login(),
    TRANSFER,
    AddBeneficiary(Payee("Zoé Durand", "DE89370400440532013000")),
    ChangePhone("+33698765432"),
]

# Real Redis purges challenges by its own wall clock, so every test works near the real present.
NOW = datetime.now(UTC).replace(microsecond=0)
LOCKOUT = LockoutPolicy()
UNKNOWN_ID = factories.challenge_id(b"\xff\xff")  # well formed, in u-1's place, never opened


def a_user(**changes: object) -> User:
    return factories.a_user(NOW - timedelta(days=30), **changes)


def a_challenge(operation: Operation = TRANSFER, **changes: object) -> Challenge:
    return factories.a_challenge(NOW, operation, **changes)


def an_attempt(
    challenge: Challenge,
    *,
    code_matches: bool,
    operation: Operation | None = None,
    at: datetime | None = None,
) -> VerificationAttempt:
    return VerificationAttempt(
        challenge_id=challenge.challenge_id,
        op_digest=digest(operation or challenge.operation),
        code_matches=code_matches,
        at=at or NOW + timedelta(seconds=30),
        context=CONTEXT,
    )


async def opened(store: Store, **changes: object) -> Challenge:
    challenge = await factories.its_user_enrolled(store, a_challenge(**changes))
    await store.challenges.open_challenge(challenge, CONTEXT)
    return challenge


async def reported(store: Store, challenge: Challenge, *reports: tuple[str, str]) -> None:
    """Record each (state, provider reference) report in turn."""
    for state, ref in reports:
        await store.challenges.record_delivery(challenge.challenge_id, DeliveryState(state), ref, NOW)
