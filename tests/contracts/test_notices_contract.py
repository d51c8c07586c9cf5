"""Notices through the outbox: the step that makes the change queues the notice that reports it, and
settling it journals a user notice and removes the entry; the fake and Redis alike (docs/decisions/0033)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest

from sesame.clients.redis_outbox import RedisOutbox
from sesame.clients.redis_store import RedisState
from sesame.server.domain.lifecycle import UserNotice
from sesame.server.domain.model import DeliveryState, LockoutPolicy, RequestContext, VerificationAttempt
from sesame.server.domain.operation import AddBeneficiary, Payee, digest
from sesame.server.domain.ports import Outbox
from tests import factories
from tests.fakes.state import MemoryState

Store = MemoryState | RedisState

NOW = datetime.now(UTC).replace(microsecond=0)
CONTEXT = RequestContext(ip="203.0.113.7")
ONE_WRONG_BLOCKS = LockoutPolicy(max_failures=1, first_block=timedelta(minutes=2))
NO_WAIT = timedelta(milliseconds=1)
ADD = AddBeneficiary(Payee("Jean DUPONT", "FR7630006000011234567890189"))


@pytest.fixture
async def outbox(store: Store) -> AsyncIterator[Outbox]:
    """The fake's own outbox, or the stream in the store's Redis."""
    if isinstance(store, MemoryState):
        yield store.outbox
        return
    redis_outbox: RedisOutbox = store.outbox()
    try:
        yield redis_outbox
    finally:
        await redis_outbox.close()


async def _opened(store: Store, outbox: Outbox, **changes: object) -> str:
    """An open challenge of its enrolled user, its own code SMS already sent and settled."""
    challenge = factories.a_challenge(NOW, expires_at=NOW + timedelta(days=1), **changes)
    await factories.its_user_enrolled(store, challenge)
    await store.challenges.open_challenge(challenge, CONTEXT)
    (code,) = await outbox.take("code", 10, NO_WAIT)
    await outbox.settle(code, DeliveryState.SENT, "ref-0", NOW)
    return challenge.challenge_id


async def test_a_verified_added_payee_queues_its_notice_in_the_same_step(
    store: Store, outbox: Outbox
) -> None:
    """VERIFIED with the notice asked: one notice entry naming the challenge, queued at the decision."""
    challenge_id = await _opened(store, outbox, operation=ADD)
    attempt = VerificationAttempt(challenge_id, digest(ADD), True, NOW, CONTEXT, notice="beneficiary_added")
    await store.challenges.record_verification(attempt, LockoutPolicy())
    (queued,) = await outbox.take("a", 10, NO_WAIT)
    assert (queued.challenge_id, queued.notice, queued.queued_at, queued.until) == (
        challenge_id,
        "beneficiary_added",
        NOW,
        None,
    )


async def test_a_wrong_code_queues_no_payee_notice(store: Store, outbox: Outbox) -> None:
    """A wrong code (no block) queues nothing, whatever notice a VERIFIED decision would have queued."""
    challenge_id = await _opened(store, outbox, operation=ADD)
    attempt = VerificationAttempt(challenge_id, digest(ADD), False, NOW, CONTEXT, notice="beneficiary_added")
    await store.challenges.record_verification(attempt, LockoutPolicy())
    assert await outbox.take("a", 10, NO_WAIT) == []


async def test_a_block_queues_the_alert_with_its_end(store: Store, outbox: Outbox) -> None:
    """The wrong code that starts a block queues the `user_blocked` alert, with the block's end."""
    challenge_id = await _opened(store, outbox)
    challenge = await store.challenges.get_challenge(challenge_id)
    attempt = VerificationAttempt(challenge_id, digest(challenge.operation), False, NOW, CONTEXT)
    outcome = await store.challenges.record_verification(attempt, ONE_WRONG_BLOCKS)
    (queued,) = await outbox.take("a", 10, NO_WAIT)
    assert (queued.notice, queued.until) == ("user_blocked", outcome.blocked_until)


async def test_settling_a_notice_journals_it_masked_and_removes_the_entry(
    store: Store, outbox: Outbox
) -> None:
    """Settled: a `user.notice` in the user's journal (number masked), the outbox empty."""
    challenge_id = await _opened(store, outbox, operation=ADD)
    attempt = VerificationAttempt(challenge_id, digest(ADD), True, NOW, CONTEXT, notice="beneficiary_added")
    await store.challenges.record_verification(attempt, LockoutPolicy())
    (queued,) = await outbox.take("a", 10, NO_WAIT)
    challenge = await store.challenges.get_challenge(challenge_id)
    notice = UserNotice("beneficiary_added", challenge.phone, True, "ref-1", NOW)
    await outbox.settle_notice(queued, challenge.user_id, notice)
    journal = await store.users.user_journal(challenge.user_id)
    (entry,) = [e for e in journal if e["event"] == "user.notice"]
    assert (entry["kind"], entry["outcome"], entry["phone"], entry["provider_ref"]) == (
        "beneficiary_added",
        "sent",
        "+33*******78",
        "ref-1",
    )
    assert (await outbox.backlog()).depth == 0
    assert await outbox.reclaim("b", timedelta(0), 10) == []
