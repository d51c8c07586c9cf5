"""The Outbox contract: what Start and Resend queue is given to one consumer, settled once, and claimed
from a consumer that died; the fake and Redis alike (docs/decisions/0025)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import datetime, timedelta

import pytest

from sesame.clients.redis_outbox import RedisOutbox
from sesame.clients.redis_store import RedisState
from sesame.server.domain.lifecycle import (
    ByOverride,
    PhoneChange,
    Provenance,
    StatusAction,
    StatusChange,
    Unblocking,
)
from sesame.server.domain.model import ChallengeStatus, DeliveryState, RequestContext
from sesame.server.domain.operation import Login
from sesame.server.domain.ports import Outbox
from sesame.server.domain.resending import ResendClaim, Resent
from tests import factories
from tests.contracts.test_start_challenge_contract import an_opening, enrolled, now
from tests.fakes.state import MemoryState

Store = MemoryState | RedisState
NO_WAIT = timedelta(milliseconds=1)


@pytest.fixture
async def outbox(store: Store) -> AsyncIterator[Outbox]:
    """The outbox beside the store (the fake's own, or the stream in the store's Redis)."""
    if isinstance(store, MemoryState):
        yield store.outbox
        return
    redis_outbox: RedisOutbox = store.outbox()
    try:
        yield redis_outbox
    finally:
        await redis_outbox.close()


async def test_a_start_queues_one_entry_given_to_one_consumer(store: Store, outbox: Outbox) -> None:
    """The opened challenge's SMS is one entry; the first consumer takes it, the next finds nothing."""
    await enrolled(store)
    opened = (await store.challenges.start_challenge(an_opening())).challenge
    (queued,) = await outbox.take("a", 10, NO_WAIT)
    assert queued.challenge_id == opened.challenge_id
    assert queued.queued_at == opened.created_at
    assert await outbox.take("b", 10, NO_WAIT) == []
    assert (await outbox.backlog()).depth == 1


async def test_settling_records_the_send_and_removes_the_entry(store: Store, outbox: Outbox) -> None:
    """Settled SENT: the challenge reads SENT, the outbox is empty, nobody can claim the entry again."""
    await enrolled(store)
    opened = (await store.challenges.start_challenge(an_opening())).challenge
    (queued,) = await outbox.take("a", 10, NO_WAIT)
    assert (await outbox.challenge(queued)).challenge_id == opened.challenge_id
    await outbox.settle(queued, DeliveryState.SENT, "ref-1", opened.created_at)
    assert (await store.challenges.get_challenge(opened.challenge_id)).delivery is DeliveryState.SENT
    assert (await outbox.backlog()).depth == 0
    assert await outbox.reclaim("b", timedelta(0), 10) == []


async def test_settling_journals_the_providers_own_ids(store: Store, outbox: Outbox) -> None:
    """Settled with the provider's message ids (SMPP: one per part): the send's entry names them, in order."""
    await enrolled(store)
    opened = (await store.challenges.start_challenge(an_opening())).challenge
    (queued,) = await outbox.take("a", 10, NO_WAIT)
    await outbox.settle(queued, DeliveryState.SENT, "smpp-1", opened.created_at, provider_ids=("3e8", "3e9"))
    entry = (await store.journal.challenge_journal(opened.challenge_id))[-1]
    assert (entry["event"], entry["provider_ref"], entry["provider_id"]) == (
        "challenge.delivery",
        "smpp-1",
        "3e8 3e9",
    )


async def test_an_entry_of_a_dead_consumer_is_claimed_once_idle(store: Store, outbox: Outbox) -> None:
    """An entry taken and never settled goes to another consumer once idle past the timeout, not before."""
    await enrolled(store)
    await store.challenges.start_challenge(an_opening())
    (taken,) = await outbox.take("dead", 10, NO_WAIT)
    assert await outbox.reclaim("alive", timedelta(hours=1), 10) == []
    (claimed,) = await outbox.reclaim("alive", timedelta(0), 10)
    assert claimed.entry_id == taken.entry_id


async def test_an_entry_kept_by_its_consumer_is_not_claimed(store: Store, outbox: Outbox) -> None:
    """A consumer still sending its entry keeps it: its idle time starts again, so that another does not
    claim it as a dead consumer's (and send the SMS twice); kept no more, it is claimed once idle. Keeping
    a settled entry changes nothing."""
    await enrolled(store)
    opened = (await store.challenges.start_challenge(an_opening())).challenge
    (taken,) = await outbox.take("a", 10, NO_WAIT)
    idle = timedelta(milliseconds=200)
    await asyncio.sleep(0.3)
    await outbox.keep("a", [taken])
    assert await outbox.reclaim("b", idle, 10) == []
    await asyncio.sleep(0.3)
    (claimed,) = await outbox.reclaim("b", idle, 10)
    assert claimed.entry_id == taken.entry_id
    await outbox.settle(claimed, DeliveryState.SENT, "ref-1", opened.created_at)
    await outbox.keep("b", [claimed])
    assert (await outbox.backlog()).depth == 0


async def test_an_expired_send_is_recorded_expired(store: Store, outbox: Outbox) -> None:
    """Settled EXPIRED (the challenge closed before its SMS left): the challenge reads EXPIRED."""
    await enrolled(store)
    opened = (await store.challenges.start_challenge(an_opening())).challenge
    (queued,) = await outbox.take("a", 10, NO_WAIT)
    await outbox.settle(queued, DeliveryState.EXPIRED, "", opened.created_at)
    assert (await store.challenges.get_challenge(opened.challenge_id)).delivery is DeliveryState.EXPIRED


async def test_a_resend_queues_another_entry(store: Store, outbox: Outbox) -> None:
    """A resend taken in the store queues the same challenge's SMS again."""
    await enrolled(store)
    opened = (await store.challenges.start_challenge(an_opening())).challenge
    await store.challenges.record_resend(
        opened.challenge_id, opened.created_at + timedelta(seconds=31), RequestContext()
    )
    entries = await outbox.take("a", 10, NO_WAIT)
    assert [e.challenge_id for e in entries] == [opened.challenge_id] * 2


async def test_a_retried_resend_says_whether_its_sms_is_still_queued(store: Store, outbox: Outbox) -> None:
    """A resend's request id retried: its SMS queued until settled, then no longer (decision 0065)."""
    await enrolled(store)
    opened = (await store.challenges.start_challenge(an_opening())).challenge
    claim = ResendClaim(opened.user_id, "r-1")

    async def resend(seconds: int) -> Resent:
        at = opened.created_at + timedelta(seconds=seconds)
        return await store.challenges.record_resend_once(
            opened.challenge_id, at, RequestContext(), (), "h", claim=claim
        )

    await resend(31)
    assert (await resend(62)).queued
    for queued in await outbox.take("a", 10, NO_WAIT):
        await outbox.settle(queued, DeliveryState.SENT, f"ref-{queued.entry_id}", opened.created_at)
    again = await resend(93)
    assert (again.earlier, again.queued) == (True, False)


async def test_take_and_reclaim_give_each_entry_with_its_challenge(store: Store, outbox: Outbox) -> None:
    """The dispatcher needs no read of its own (decision 0040): each entry comes with its challenge as
    stored when it was taken or claimed; none once the challenge was purged (the dispatcher then finds it
    missing)."""
    await enrolled(store)
    opened = (await store.challenges.start_challenge(an_opening())).challenge
    (queued,) = await outbox.take("a", 10, NO_WAIT)
    assert queued.challenge == await store.challenges.get_challenge(opened.challenge_id)
    (claimed,) = await outbox.reclaim("b", timedelta(0), 10)
    assert claimed.challenge == queued.challenge
    await store.challenges.cancel_challenge(opened.challenge_id, opened.created_at, RequestContext())
    (again,) = await outbox.reclaim("c", timedelta(0), 10)
    assert again.challenge is not None
    assert again.challenge.status is ChallengeStatus.CANCELLED


def _suspension(at: datetime, action: StatusAction = StatusAction.SUSPEND, request: str = "") -> StatusChange:
    request_id = f"r-{action.value}{request}"
    return StatusChange("u-1", action, at, Provenance("agent-7", "phone stolen", request_id))


def _new_number(at: datetime, number: str = "+33698765432", request: str = "") -> PhoneChange:
    return PhoneChange(
        user_id="u-1",
        new_phone=number,
        at=at,
        cooling_until=at + timedelta(hours=72),
        authority=ByOverride("agent-7"),
        provenance=Provenance("agent-7", "phone lost", f"r-number-{number}{request}"),
        context=RequestContext(),
    )


async def _changed_and_back(store: Store, change: str, at: datetime) -> None:
    """Suspended and reinstated, or given another number and the first again, both stamped `at` (and a ms
    later) by the clock of the host that made them."""
    later, tag = at + timedelta(milliseconds=1), f"-{at.timestamp()}"  # a request id per change
    if change == "status":
        await store.users.change_user_status(_suspension(at, StatusAction.SUSPEND, tag))
        await store.users.change_user_status(_suspension(later, StatusAction.REINSTATE, tag))
    else:
        await store.users.change_secure_phone(_new_number(at, request=tag))
        await store.users.change_secure_phone(_new_number(later, factories.PHONE, tag))


async def _codes_taken(outbox: Outbox) -> list[str]:
    """What the take withheld of the code SMS it gave ('' : none), the changes' notices left out."""
    return [entry.withheld for entry in await outbox.take("a", 10, NO_WAIT) if not entry.notice]


async def _counts_forgotten(store: Store, challenge_id: str) -> None:
    """The challenge as one opened before the counts existed (decision 0056): without `user_changes`."""
    if isinstance(store, MemoryState):
        store.memory._opened_changes.pop(challenge_id)
        return
    await store._client.hdel(store.keys.challenge(challenge_id), "user_changes")


@pytest.mark.parametrize(
    ("change", "reason"),
    [("suspend", "user_suspended"), ("revoke", "user_revoked"), ("number", "phone_changed")],
)
async def test_a_code_whose_user_changed_since_it_was_queued_is_withheld_at_take(
    store: Store, outbox: Outbox, change: str, reason: str
) -> None:
    """Suspended, revoked, or given another number after the SMS was queued, before the take, and before
    the change's voiding step ran (decision 0054): the take hands it out withheld, its challenge voided
    and dead-lettered with the reason, journaled; the outbox holds nothing more of it."""
    await enrolled(store)
    opened = (await store.challenges.start_challenge(an_opening())).challenge
    at = opened.created_at + timedelta(seconds=1)
    if change == "number":
        await store.users.change_secure_phone(_new_number(at))
    else:
        await store.users.change_user_status(_suspension(at, StatusAction(change)))
    taken = await outbox.take("a", 10, NO_WAIT)  # an override's notice to the old number too (not withheld)
    (queued,) = [entry for entry in taken if entry.challenge_id == opened.challenge_id]
    assert queued.withheld == reason
    assert [entry.withheld for entry in taken if entry.notice] == [""] * (change == "number")
    stored = await store.challenges.get_challenge(opened.challenge_id)
    assert stored.status is ChallengeStatus.VOIDED
    assert stored.delivery is DeliveryState.FAILED
    assert await store.challenges.pending_challenges(opened.user_id, at) == []  # closed (decision 0093)
    journal = await store.journal.challenge_journal(opened.challenge_id)
    assert [(e["event"], e.get("reason", e.get("void_reason"))) for e in journal[1:]] == [
        ("challenge.void", reason),
        ("challenge.dead_letter", reason),
    ]
    assert all("12345678" not in value for entry in journal for value in entry.values())  # no number
    assert (await outbox.backlog()).depth == len(taken) - 1
    assert [e.challenge_id for e in await outbox.reclaim("b", timedelta(0), 10) if e.challenge_id] == []


async def test_a_code_is_withheld_after_a_suspension_and_reinstatement(store: Store, outbox: Outbox) -> None:
    """Suspended and reinstated before the take: the user is active on the same number again, but was
    suspended since the challenge opened (a lost phone found?): its code is withheld all the same."""
    await enrolled(store)
    opened = (await store.challenges.start_challenge(an_opening())).challenge
    at = opened.created_at + timedelta(seconds=1)
    await store.users.change_user_status(_suspension(at))
    await store.users.change_user_status(_suspension(at + timedelta(seconds=1), StatusAction.REINSTATE))
    (queued,) = await outbox.take("a", 10, NO_WAIT)
    assert queued.withheld == "user_suspended"


@pytest.mark.parametrize(("change", "reason"), [("status", "user_suspended"), ("number", "phone_changed")])
async def test_since_is_the_order_of_the_steps_not_their_clocks(
    store: Store, outbox: Outbox, change: str, reason: str
) -> None:
    """A change made before the Start but stamped a minute later by a host whose clock is ahead withholds
    nothing; one made after the Start but stamped a minute earlier by a clock behind withholds the code
    (decision 0056: the user's changes are counted, the challenge keeps the counts it opened at). By the
    times (decision 0054) the first code was withheld and the second handed over."""
    await enrolled(store)
    await _changed_and_back(store, change, now() + timedelta(minutes=1))
    await store.challenges.start_challenge(an_opening(Login()))  # Login: no cooling after a number change
    assert await _codes_taken(outbox) == [""]
    opened = (await store.challenges.start_challenge(an_opening(Login()))).challenge
    await _changed_and_back(store, change, opened.created_at - timedelta(minutes=1))
    assert await _codes_taken(outbox) == [reason]


async def test_what_changes_nothing_withholds_nothing(store: Store, outbox: Outbox) -> None:
    """A reinstatement of an active user and an unblock change neither status nor number: nothing is
    counted, the code goes."""
    await enrolled(store)
    await store.challenges.start_challenge(an_opening())
    at = now()
    await store.users.change_user_status(_suspension(at, StatusAction.REINSTATE))
    await store.users.unblock_user(Unblocking("u-1", at, Provenance("agent-7", "called", "r-unblock")))
    assert await _codes_taken(outbox) == [""]


async def test_records_written_before_the_counts_keep_a_sensible_rule(store: Store, outbox: Outbox) -> None:
    """A user written before the counts existed has none: no change counted, so a challenge opened now is
    compared with the changes after it only, whatever time its last change carries (here a minute ahead).
    A challenge opened before the counts existed (no `user_changes`) keeps the rule it was opened under, the
    change's time against its creation (decision 0054): a suspension and reinstatement stamped after it
    withhold its code."""
    await enrolled(store, status_changed_at=now() + timedelta(minutes=1))
    await store.challenges.start_challenge(an_opening())
    assert await _codes_taken(outbox) == [""]
    opened = (await store.challenges.start_challenge(an_opening())).challenge
    await _counts_forgotten(store, opened.challenge_id)
    await _changed_and_back(store, "status", opened.created_at + timedelta(seconds=1))
    assert await _codes_taken(outbox) == ["user_suspended"]


async def _deliveries(store: Store, challenge_id: str) -> int:
    journal = await store.journal.challenge_journal(challenge_id)
    return [entry["event"] for entry in journal].count("challenge.delivery")


@pytest.mark.parametrize(("state", "ref"), [(DeliveryState.SENT, "console-1"), (DeliveryState.EXPIRED, "")])
async def test_a_record_asked_again_for_its_attempt_journals_nothing_more(
    store: Store, outbox: Outbox, state: DeliveryState, ref: str
) -> None:
    """The record of a send ran but its answer was lost, and the dispatcher asks again (decision 0055): the
    second answers False (already recorded) and writes nothing: one `challenge.delivery` entry for one send
    (decision 0056), the challenge as the first left it."""
    await enrolled(store)
    opened = (await store.challenges.start_challenge(an_opening())).challenge
    (queued,) = await outbox.take("a", 10, NO_WAIT)
    assert await outbox.settle(queued, state, ref, opened.created_at) is True
    recorded = await store.challenges.get_challenge(opened.challenge_id)
    assert await outbox.settle(queued, state, ref, opened.created_at + timedelta(seconds=1)) is False
    assert await _deliveries(store, opened.challenge_id) == 1
    assert await store.challenges.get_challenge(opened.challenge_id) == recorded
    assert recorded.delivery is state
    assert (await outbox.backlog()).depth == 0


async def test_another_attempt_of_the_same_entry_is_another_send(store: Store, outbox: Outbox) -> None:
    """An entry taken by a dispatcher thought dead, claimed by another once idle, and sent by both: the
    same entry and the same reference (the entry's), but two hand-outs, two sends: both journaled."""
    await enrolled(store)
    opened = (await store.challenges.start_challenge(an_opening())).challenge
    (taken,) = await outbox.take("slow", 10, NO_WAIT)
    (claimed,) = await outbox.reclaim("alive", timedelta(0), 10)
    assert claimed.entry_id == taken.entry_id
    assert await outbox.settle(claimed, DeliveryState.SENT, "console-1", opened.created_at) is True
    assert await outbox.settle(taken, DeliveryState.SENT, "console-1", opened.created_at) is True
    assert await outbox.settle(taken, DeliveryState.SENT, "console-1", opened.created_at) is False
    assert await _deliveries(store, opened.challenge_id) == 2
