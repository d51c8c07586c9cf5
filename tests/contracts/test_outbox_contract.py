"""The Outbox contract: what Start and Resend queue is given to one consumer, settled once, and claimed
from a consumer that died; the fake and Redis alike (docs/decisions/0025)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import datetime, timedelta

import pytest

from sesame.clients.redis_outbox import RedisOutbox
from sesame.clients.redis_store import RedisState
from sesame.server.domain.budgets import BudgetSubject, Charge
from sesame.server.domain.dispatching import QueuedSms
from sesame.server.domain.lifecycle import (
    ByOverride,
    PhoneChange,
    Provenance,
    StatusAction,
    StatusChange,
    Unblocking,
    Voiding,
    VoidReason,
)
from sesame.server.domain.model import Challenge, ChallengeStatus, DeliveryState, RequestContext
from sesame.server.domain.operation import Login
from sesame.server.domain.ports import Outbox
from sesame.server.domain.resending import ResendClaim, Resent
from tests import factories
from tests.contracts.state_cases import LOCKOUT, an_attempt
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
    assert await outbox.keep("a", [taken]) == 1
    assert await outbox.reclaim("b", idle, 10) == []
    await asyncio.sleep(0.3)
    (claimed,) = await outbox.reclaim("b", idle, 10)
    assert claimed.entry_id == taken.entry_id
    assert await outbox.keep("a", [taken]) == 0  # claimed by another: left to it
    await outbox.settle(claimed, DeliveryState.SENT, "ref-1", opened.created_at)
    assert await outbox.keep("b", [claimed]) == 0
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


# The user's send unit an entry paid for is given back when the entry ends without any hand-over to the
# gateway, once, and only in the entry's first hand-out (decision 0101).
USER_UNIT = BudgetSubject.user("u-1")
OWN = Charge(USER_UNIT, 10, timedelta(hours=1))  # the user's charge of a resend (its other units held apart)


async def _user_units(store: Store) -> int:
    """How many units the user's send budget holds (ZCARD of its sorted set)."""
    if isinstance(store, MemoryState):
        return store.units_taken(USER_UNIT)
    return int(await store._client.zcard(store.keys.send_budget("user", "u-1")))


async def _resent(store: Store, opened: Challenge, hold: str = "h-1", seconds: int = 31) -> datetime:
    """A resend of `opened` `seconds` after it opened, charged its user's unit under `hold`; its time."""
    at = opened.created_at + timedelta(seconds=seconds)
    await store.challenges.record_resend(opened.challenge_id, at, RequestContext(), (OWN,), hold)
    return at


async def _resend_entry(outbox: Outbox, consumer: str = "a") -> QueuedSms:
    """Take the Start's entry and the resend's; settle the Start's SENT; the resend's."""
    start, resend = await outbox.take(consumer, 10, NO_WAIT)
    await outbox.settle(start, DeliveryState.SENT, "ref-start", start.queued_at)
    return resend


@pytest.mark.parametrize("change", ["suspend", "number"])
async def test_a_withheld_code_gives_its_users_unit_back(store: Store, outbox: Outbox, change: str) -> None:
    """Start took the user's unit; the user is suspended (or given another number) before the take, which
    withholds the code: nothing was handed over, the unit is given back. A claimed entry (its first
    dispatcher may have handed it over before dying) keeps its unit."""
    await enrolled(store)
    opened = (await store.challenges.start_challenge(an_opening())).challenge
    assert await _user_units(store) == 1
    at = opened.created_at + timedelta(seconds=1)
    if change == "number":
        await store.users.change_secure_phone(_new_number(at))
    else:
        await store.users.change_user_status(_suspension(at))
    assert await _codes_taken(outbox) == ["user_suspended" if change == "suspend" else "phone_changed"]
    assert await _user_units(store) == 0


async def test_a_claimed_withheld_code_keeps_its_users_unit(store: Store, outbox: Outbox) -> None:
    """Taken by a dispatcher that died, then withheld at the claim: the first may have handed it over, so
    its unit stays spent."""
    await enrolled(store)
    opened = (await store.challenges.start_challenge(an_opening())).challenge
    await outbox.take("dead", 10, NO_WAIT)
    await store.users.change_user_status(_suspension(opened.created_at + timedelta(seconds=1)))
    (claimed,) = [e for e in await outbox.reclaim("b", timedelta(0), 10) if not e.notice]
    assert claimed.withheld == "user_suspended"
    assert await _user_units(store) == 1


@pytest.mark.parametrize("close", ["verify", "cancel"])
async def test_a_resend_dropped_after_its_challenge_closed_gives_its_unit_back(
    store: Store, outbox: Outbox, close: str
) -> None:
    """A resend queued, then the challenge verified (with the first SMS's code) or cancelled before its SMS
    left: the dispatcher settles it EXPIRED, never handed over, and the resend's unit comes back; the
    Start's, whose SMS went, stays spent."""
    await enrolled(store)
    opened = (await store.challenges.start_challenge(an_opening())).challenge
    at = await _resent(store, opened)
    assert await _user_units(store) == 2
    resend = await _resend_entry(outbox)
    if close == "verify":
        await store.challenges.record_verification(an_attempt(opened, code_matches=True, at=at), LOCKOUT)
    else:
        await store.challenges.cancel_challenge(opened.challenge_id, at, RequestContext())
    await outbox.settle(resend, DeliveryState.EXPIRED, "", at)
    assert await _user_units(store) == 1


@pytest.mark.parametrize("failure", ["expired", "unheld"])
async def test_a_code_dead_lettered_before_its_send_gives_its_unit_back(
    store: Store, outbox: Outbox, failure: str
) -> None:
    """Dead-lettered at its first hand-out before any send (its code expired while it waited, its held units
    missing): the unit comes back. One the gateway refused was handed over: its unit stays spent."""
    await enrolled(store)
    opened = (await store.challenges.start_challenge(an_opening())).challenge
    at = await _resent(store, opened)
    resend = await _resend_entry(outbox)
    assert (await outbox.fail(resend, failure, at, 0)).dead_letter == failure
    assert await _user_units(store) == 1
    await _resent(store, opened, "h-2", seconds=62)
    (refused,) = await outbox.take("a", 10, NO_WAIT)
    assert (await outbox.fail(refused, "bad_number", at, 0)).dead_letter == "bad_number"
    assert await _user_units(store) == 2


async def test_an_entry_tried_before_keeps_its_unit(store: Store, outbox: Outbox) -> None:
    """A try that timed out (the provider may have taken it), the entry claimed again and then ending
    before a send (its code expired, or its challenge closed): its unit stays spent."""
    await enrolled(store)
    opened = (await store.challenges.start_challenge(an_opening())).challenge
    (queued,) = await outbox.take("a", 10, NO_WAIT)
    assert not (await outbox.fail(queued, "timeout", opened.created_at, 3)).dead_letter
    (claimed,) = await outbox.reclaim("b", timedelta(0), 10)
    assert (await outbox.fail(claimed, "expired", opened.created_at, 0)).dead_letter == "unconfirmed"
    assert await _user_units(store) == 1
    at = await _resent(store, opened)
    await outbox.take("dead", 10, NO_WAIT)
    await store.challenges.cancel_challenge(opened.challenge_id, at, RequestContext())
    (claimed,) = await outbox.reclaim("b", timedelta(0), 10)
    await outbox.settle(claimed, DeliveryState.EXPIRED, "", at)
    assert await _user_units(store) == 2


async def test_a_start_voided_for_its_refused_units_gives_back_one_unit(store: Store, outbox: Outbox) -> None:
    """A Start whose other units were refused voids its challenge, its user's unit given back by the voiding
    (decision 0046); the dispatcher then drops its SMS (the challenge closed): nothing more is given back,
    the other Start's unit stays spent."""
    await enrolled(store)
    kept = (await store.challenges.start_challenge(an_opening())).challenge
    voided = (await store.challenges.start_challenge(an_opening())).challenge
    assert await _user_units(store) == 2
    voiding = Voiding("u-1", VoidReason.SEND_BUDGET, voided.created_at, Provenance("svc", "send budget", ""))
    await store.challenges.void_challenge(voided.challenge_id, voiding)
    assert await _user_units(store) == 1
    entries = {e.challenge_id: e for e in await outbox.take("a", 10, NO_WAIT)}
    await outbox.settle(entries[voided.challenge_id], DeliveryState.EXPIRED, "", voided.created_at)
    assert await _user_units(store) == 1
    await outbox.settle(entries[kept.challenge_id], DeliveryState.SENT, "ref-1", kept.created_at)
    assert await _user_units(store) == 1


async def test_a_withdrawn_resend_gives_back_one_unit(store: Store, outbox: Outbox) -> None:
    """A resend whose other units were refused is withdrawn, its user's unit given back (decision 0046); the
    dispatcher then dead-letters its SMS (`unheld`: its hold withdrawn): nothing more is given back, the
    Start's unit stays spent."""
    await enrolled(store)
    opened = (await store.challenges.start_challenge(an_opening())).challenge
    at = await _resent(store, opened)
    await store.challenges.withdraw_resend(opened, at, RequestContext(), hold="h-1")
    assert await _user_units(store) == 1
    resend = await _resend_entry(outbox)
    assert (await outbox.fail(resend, "unheld", at, 0)).dead_letter == "unheld"
    assert await _user_units(store) == 1
