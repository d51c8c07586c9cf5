"""Notices through the outbox: the step that makes the change queues the notice that reports it, and
settling it journals a user notice and removes the entry; the fake and Redis alike (docs/decisions/0033)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest

from sesame.clients.redis_outbox import DEAD_LETTERS_LIFETIME, RedisOutbox
from sesame.clients.redis_store import RedisState
from sesame.server.domain.dispatching import DeadLetter, NoticeFailure, QueuedSms
from sesame.server.domain.lifecycle import UserNotice
from sesame.server.domain.model import DeliveryState, LockoutPolicy, RequestContext, VerificationAttempt
from sesame.server.domain.operation import AddBeneficiary, Payee, digest
from sesame.server.domain.ports import Outbox
from tests import factories
from tests.fakes.outbox import MemoryDeadLetters
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


async def _queued_notice(store: Store, outbox: Outbox) -> tuple[QueuedSms, str, str]:
    """A beneficiary-added notice taken by consumer `a`: (its entry, the user, the number)."""
    challenge_id = await _opened(store, outbox, operation=ADD)
    attempt = VerificationAttempt(challenge_id, digest(ADD), True, NOW, CONTEXT, notice="beneficiary_added")
    await store.challenges.record_verification(attempt, LockoutPolicy())
    (queued,) = await outbox.take("a", 10, NO_WAIT)
    challenge = await store.challenges.get_challenge(challenge_id)
    return queued, challenge.user_id, challenge.phone


def _failure(failure: str, allowed: int, at: datetime = NOW) -> NoticeFailure:
    return NoticeFailure(failure, at, allowed, NOW + timedelta(days=1))


async def _dead_letters(store: Store, outbox: Outbox) -> list[DeadLetter]:
    if isinstance(store, MemoryState):
        return await MemoryDeadLetters(store.outbox).recent(10)
    assert isinstance(outbox, RedisOutbox)
    return await outbox.dead_letters().recent(10)


@pytest.mark.parametrize(
    "case",
    [
        ("unreachable", 2, timedelta(0)),  # its tries spent
        ("bad_number", 0, timedelta(0)),  # every provider's final word
        ("unreachable", 3, timedelta(days=1)),  # past its age limit
    ],
)
async def test_a_notice_an_earlier_try_of_which_may_have_gone_is_unconfirmed(
    store: Store, outbox: Outbox, case: tuple[str, int, timedelta], request: pytest.FixtureRequest
) -> None:
    """A first try timed out; whatever ends the notice later reads `unconfirmed` (decision 0097), its
    journal and its dead letter keeping the last failure. In Redis its mark expires, and goes with it."""
    later, allowed, after = case
    queued, user_id, phone = await _queued_notice(store, outbox)
    notice = UserNotice("beneficiary_added", phone, False, "", NOW)
    assert (await outbox.fail_notice(queued, user_id, notice, _failure("timeout", 3))).dead_letter == ""
    client = request.getfixturevalue("redis_client") if isinstance(store, RedisState) else None
    if client is not None:
        (mark,) = await client.keys("*:unconfirmed:*")
        assert 0 < await client.pttl(mark) <= DEAD_LETTERS_LIFETIME // timedelta(milliseconds=1)
    (claimed,) = await outbox.reclaim("b", timedelta(0), 10)
    tried = await outbox.fail_notice(claimed, user_id, notice, _failure(later, allowed, NOW + after))
    assert (tried.tries, tried.dead_letter) == (2, "unconfirmed")
    failed = [e for e in await store.users.user_journal(user_id) if e.get("outcome") == "failed"]
    assert [(e["reason"], e["failure"]) for e in failed] == [("unconfirmed", later)]
    (letter,) = await _dead_letters(store, outbox)
    assert (letter.reason, letter.failure) == ("unconfirmed", later)
    if client is not None:
        assert await client.keys("*:unconfirmed:*") == []


async def test_a_notices_failed_try_with_tries_left_stays_for_another(store: Store, outbox: Outbox) -> None:
    """One try of three: the entry stays (claimable once idle), the try journaled as the user's notice
    (try_failed), no dead letter, and the challenge's delivery untouched (decision 0041)."""
    queued, user_id, phone = await _queued_notice(store, outbox)
    notice = UserNotice("beneficiary_added", phone, False, "", NOW)
    tried = await outbox.fail_notice(queued, user_id, notice, _failure("unreachable", 3))
    assert (tried.tries, tried.dead_letter) == (1, "")
    (claimed,) = await outbox.reclaim("b", timedelta(0), 10)
    assert claimed.entry_id == queued.entry_id
    (entry,) = [e for e in await store.users.user_journal(user_id) if e["event"] == "user.notice"]
    assert (entry["outcome"], entry["failure"], entry["tries"], entry["phone"]) == (
        "try_failed",
        "unreachable",
        "1",
        "+33*******78",
    )
    assert await _dead_letters(store, outbox) == []
    assert (await store.challenges.get_challenge(queued.challenge_id)).delivery is DeliveryState.SENT


@pytest.mark.parametrize(
    "case",
    [
        ("bad_number", 0, NOW, "bad_number"),  # every provider's final word
        ("unreachable", 1, NOW, "max_tries"),  # its tries spent
        ("timeout", 1, NOW, "unconfirmed"),  # its tries spent, the last maybe taken (decision 0096)
        ("unreachable", 3, NOW + timedelta(days=1), "expired"),  # past its age limit
    ],
)
async def test_a_notice_is_dead_lettered_with_its_reason(
    store: Store, outbox: Outbox, case: tuple[str, int, datetime, str]
) -> None:
    """Given up on: journaled failed with the reason, removed, a masked dead letter naming the notice."""
    failure, allowed, at, reason = case
    queued, user_id, phone = await _queued_notice(store, outbox)
    notice = UserNotice("beneficiary_added", phone, False, "", at)
    tried = await outbox.fail_notice(queued, user_id, notice, _failure(failure, allowed, at))
    assert tried.dead_letter == reason
    (entry,) = [e for e in await store.users.user_journal(user_id) if e["event"] == "user.notice"]
    assert (entry["outcome"], entry["reason"], entry["failure"]) == ("failed", reason, failure)
    assert (await outbox.backlog()).depth == 0
    assert await outbox.reclaim("b", timedelta(0), 10) == []
    (letter,) = await _dead_letters(store, outbox)
    assert (letter.challenge_id, letter.notice, letter.reason, letter.masked_phone, letter.state) == (
        queued.challenge_id,
        "beneficiary_added",
        reason,
        "+33*******78",
        DeliveryState.FAILED,
    )
    assert (await store.challenges.get_challenge(queued.challenge_id)).delivery is DeliveryState.SENT


async def test_a_notices_record_asked_again_for_its_attempt_journals_nothing_more(
    store: Store, outbox: Outbox
) -> None:
    """The record of a notice ran but its answer was lost, and the dispatcher asks again (decision 0055): the
    second answers False and writes nothing, one `user.notice` for one send (decision 0056); another attempt
    of the same entry (claimed from a dispatcher thought dead, which sent it too) is another send."""
    challenge_id = await _opened(store, outbox, operation=ADD)
    attempt = VerificationAttempt(challenge_id, digest(ADD), True, NOW, CONTEXT, notice="beneficiary_added")
    await store.challenges.record_verification(attempt, LockoutPolicy())
    (taken,) = await outbox.take("slow", 10, NO_WAIT)
    (claimed,) = await outbox.reclaim("alive", timedelta(0), 10)
    challenge = await store.challenges.get_challenge(challenge_id)
    notice = UserNotice("beneficiary_added", challenge.phone, True, "ref-1", NOW)
    assert await outbox.settle_notice(claimed, challenge.user_id, notice) is True
    assert await outbox.settle_notice(claimed, challenge.user_id, notice) is False
    assert await outbox.settle_notice(taken, challenge.user_id, notice) is True
    assert await outbox.settle_notice(taken, challenge.user_id, notice) is False
    journal = await store.users.user_journal(challenge.user_id)
    assert [e["event"] for e in journal].count("user.notice") == 2
    assert (await outbox.backlog()).depth == 0
