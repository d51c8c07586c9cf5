"""While a user is blocked after wrong codes in a row, the step that would send a code refuses, atomically:
opening a challenge and taking a resend read the block in the same script that charges and writes, so a
start or a resend racing the fifth wrong code cannot send a code (fake and Redis alike)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from sesame.clients.redis_store import RedisState
from sesame.server.domain.budgets import BudgetSubject, Charge
from sesame.server.domain.errors import ChallengeClosed, ChallengeNotFound, UserBlocked
from sesame.server.domain.model import Challenge, LockoutPolicy, RequestContext, VerificationAttempt
from sesame.server.domain.operation import digest
from tests import factories
from tests.fakes.state import MemoryState

Store = MemoryState | RedisState

NOW = datetime.now(UTC).replace(microsecond=0)
CONTEXT = RequestContext(ip="203.0.113.7")
ONE_WRONG_BLOCKS = LockoutPolicy(max_failures=1, first_block=timedelta(minutes=2))
BLOCKED_AT = NOW + timedelta(seconds=10)
# Limit 1: a second unit taken would refuse the opening after the block.
BUDGET = (Charge(BudgetSubject.user("u-1"), 1, timedelta(hours=1)),)


def a_challenge(number: int) -> Challenge:
    """A day-long challenge of `u-1` opened at NOW, told apart by `number`."""
    return factories.a_challenge(NOW, nonce=bytes([number]) * 16, expires_at=NOW + timedelta(days=1))


async def blocked(store: Store) -> Challenge:
    """Enrol `u-1`, open two challenges (no budget), block the user with one wrong code on the first at
    BLOCKED_AT; return the second, still OPEN (as if the block's voiding had missed it)."""
    challenge, pending = a_challenge(1), a_challenge(2)
    await factories.its_user_enrolled(store, challenge)
    await store.challenges.open_challenge(challenge, CONTEXT)
    await store.challenges.open_challenge(pending, CONTEXT)
    attempt = VerificationAttempt(
        challenge.challenge_id, digest(challenge.operation), False, BLOCKED_AT, CONTEXT
    )
    outcome = await store.challenges.record_verification(attempt, ONE_WRONG_BLOCKS)
    assert outcome.blocked_until == BLOCKED_AT + timedelta(minutes=2)
    return pending


async def test_no_challenge_opens_while_the_user_is_blocked(store: Store) -> None:
    """UserBlocked with the wait; nothing stored, indexed, journaled or charged; it opens after the block."""
    await blocked(store)
    late = factories.a_challenge(BLOCKED_AT + timedelta(seconds=30), nonce=bytes([7]) * 16)
    with pytest.raises(UserBlocked) as refused:
        await store.challenges.open_challenge(late, CONTEXT, BUDGET)
    assert refused.value.retry_after == timedelta(seconds=90)
    with pytest.raises(ChallengeNotFound):
        await store.challenges.get_challenge(late.challenge_id)
    assert await store.journal.challenge_journal(late.challenge_id) == []
    assert late.challenge_id not in await store.challenges.pending_challenges("u-1", NOW)
    after = factories.a_challenge(BLOCKED_AT + timedelta(minutes=2), nonce=bytes([3]) * 16)
    await store.challenges.open_challenge(
        after, CONTEXT, BUDGET
    )  # the refused one took no unit of the budget


async def test_no_resend_while_the_user_is_blocked(store: Store) -> None:
    """UserBlocked with the wait; no resend, no unit spent; counted once; after the block the challenge,
    open when it started, is closed (a block voids by construction: decision 0013's amendment)."""
    pending = await blocked(store)
    for seconds in (30, 40):
        with pytest.raises(UserBlocked) as refused:
            await store.challenges.record_resend(
                pending.challenge_id, BLOCKED_AT + timedelta(seconds=seconds), CONTEXT, BUDGET
            )
    assert refused.value.retry_after == timedelta(seconds=80)
    assert (await store.challenges.get_challenge(pending.challenge_id)).resends == 0
    [count] = await store.journal.challenge_refusals(pending.challenge_id)
    assert (count.event, count.outcome, count.count) == ("challenge.resend", "user_blocked", 2)
    outcomes = [e["outcome"] for e in await store.journal.challenge_journal(pending.challenge_id)]
    assert outcomes == ["opened", "user_blocked"]
    later = BLOCKED_AT + timedelta(minutes=2)
    with pytest.raises(ChallengeClosed):
        await store.challenges.record_resend(pending.challenge_id, later, CONTEXT, BUDGET)
