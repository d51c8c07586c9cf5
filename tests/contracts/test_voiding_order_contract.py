"""A change of the user voids the challenges opened before it, not those the user opened since.

The voiding runs after the change's own step, and again when its request is retried (decision 0010): by
then the user may have been reinstated, or have started a challenge on its new number. The change's step
records the user's change counts it left with its request id, and each voiding step compares them with the
counts the challenge was opened under (decision 0056): the order of the steps, not a time (fake and Redis).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import timedelta

import pytest

from sesame.clients.redis_store import RedisState
from sesame.server.domain.lifecycle import StatusAction, Voiding, VoidOutcome, VoidReason
from sesame.server.domain.model import (
    Challenge,
    ChallengeStatus,
    LockoutPolicy,
    VerificationAttempt,
    VerifyResult,
)
from tests import factories
from tests.contracts.test_lifecycle_contract import (
    CONTEXT,
    NEW_PHONE,
    NOW,
    PHONE,
    by,
    change,
    enrolled,
    nonce,
    phone_change,
)
from tests.fakes.state import MemoryState

Store = MemoryState | RedisState
Counts = tuple[int, int] | None

LATER = NOW + timedelta(minutes=1)


async def opened(store: Store, n: int, phone: str = PHONE) -> Challenge:
    challenge = factories.a_challenge(NOW, nonce=nonce(n), phone=phone, expires_at=NOW + timedelta(hours=1))
    await factories.its_user_enrolled(store, challenge)
    await store.challenges.open_challenge(challenge, CONTEXT)
    return challenge


async def suspension_retried_once_reinstated(store: Store) -> Counts:
    """Suspended (s-1), reinstated; the counts the suspension's retry answers."""
    await store.users.change_user_status(change(StatusAction.SUSPEND, "s-1"))
    await store.users.change_user_status(change(StatusAction.REINSTATE, "r-1"))
    return (await store.users.change_user_status(change(StatusAction.SUSPEND, "s-1"))).counts


async def override_retried(store: Store) -> Counts:
    """The number overridden (p-1); the counts the override's retry answers."""
    await store.users.change_secure_phone(phone_change("p-1"))
    return (await store.users.change_secure_phone(phone_change("p-1"))).counts


RETRIED = pytest.mark.parametrize(
    ("retried", "reason", "request_id", "phone"),
    [
        (suspension_retried_once_reinstated, VoidReason.USER_SUSPENDED, "s-1", PHONE),
        (override_retried, VoidReason.PHONE_CHANGED, "p-1", NEW_PHONE),
    ],
    ids=["suspension", "override"],
)


async def void(
    store: Store, challenge: Challenge, reason: VoidReason, request_id: str, counts: Counts
) -> VoidOutcome:
    voiding = Voiding("u-1", reason, LATER, by(request_id), opened_before=counts)
    return await store.challenges.void_challenge(challenge.challenge_id, voiding)


@RETRIED
async def test_a_challenge_opened_after_the_change_is_left_open(
    store: Store,
    retried: Callable[[Store], Awaitable[Counts]],
    reason: VoidReason,
    request_id: str,
    phone: str,
) -> None:
    """The change's retry answers the counts it left: its voiding leaves a challenge opened since OPEN,
    unjournaled, and its right code verifies."""
    await opened(store, 1)
    counts = await retried(store)
    since = await opened(store, 2, phone)
    assert await void(store, since, reason, request_id, counts) is VoidOutcome.OPENED_AFTER
    assert (await store.challenges.get_challenge(since.challenge_id)).status is ChallengeStatus.OPEN
    assert [e["event"] for e in await store.journal.challenge_journal(since.challenge_id)] == [
        "challenge.opened"
    ]
    attempt = VerificationAttempt(since.challenge_id, since.op_digest, True, LATER, CONTEXT)
    assert (
        await store.challenges.record_verification(attempt, LockoutPolicy())
    ).result is VerifyResult.VERIFIED


@RETRIED
async def test_a_challenge_opened_before_the_change_is_voided_even_once_it_is_undone(
    store: Store,
    retried: Callable[[Store], Awaitable[Counts]],
    reason: VoidReason,
    request_id: str,
    phone: str,
) -> None:
    """A challenge opened before the change is voided by its retry, the user reinstated since or not."""
    before = await opened(store, 1)
    counts = await retried(store)
    assert await void(store, before, reason, request_id, counts) is VoidOutcome.VOIDED
    entry = (await store.journal.challenge_journal(before.challenge_id))[-1]
    assert (entry["event"], entry["void_reason"], entry["request_id"]) == (
        "challenge.void",
        reason.value,
        request_id,
    )


async def test_a_retry_answers_the_counts_its_change_left_not_the_users_now(store: Store) -> None:
    """Suspended, reinstated, suspended again: the first suspension's retry answers (1, 0), the user as it is
    now (2 status changes later, SUSPENDED), and a no-op the counts it found."""
    await opened(store, 1)
    first = await store.users.change_user_status(change(StatusAction.SUSPEND, "s-1"))
    await store.users.change_user_status(change(StatusAction.REINSTATE, "r-1"))
    await store.users.change_user_status(change(StatusAction.SUSPEND, "s-2"))
    noop = await store.users.change_user_status(change(StatusAction.SUSPEND, "s-3"))
    retried = await store.users.change_user_status(change(StatusAction.SUSPEND, "s-1"))
    assert (first.counts, noop.counts, retried.counts) == ((1, 0), (3, 0), (1, 0))
    assert retried.user.changes == (3, 0)


async def test_an_id_never_opened_is_foreclosed_by_any_change(store: Store) -> None:
    """An id indexed but never opened is spent, whatever the change's counts: its late opener fails."""
    challenge = await factories.its_user_enrolled(store, factories.a_challenge(NOW))
    counts = await suspension_retried_once_reinstated(store)
    assert await void(store, challenge, VoidReason.USER_SUSPENDED, "s-1", counts) is VoidOutcome.FORECLOSED


async def test_a_challenge_opened_before_the_counts_is_voided(store: Store) -> None:
    """A challenge without the counts of its opening (opened by a version before them) cannot be placed
    after the change: it is voided, as every open challenge was before."""
    await enrolled(store)
    counts = await override_retried(store)
    since = await opened(store, 2, NEW_PHONE)
    if isinstance(store, MemoryState):
        store.memory._opened_changes.pop(since.challenge_id)
    else:
        await store._client.hdel(store.keys.challenge(since.challenge_id), "user_changes")
    assert await void(store, since, VoidReason.PHONE_CHANGED, "p-1", counts) is VoidOutcome.VOIDED
