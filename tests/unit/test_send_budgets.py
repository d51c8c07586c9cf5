"""SMS send budgets and the destination-country allow-list in the challenge flows, over fakes."""

from __future__ import annotations

from datetime import timedelta

import pytest

from sesame.server.domain.budgets import BudgetSubject, SendBudget
from sesame.server.domain.challenges import ChallengePolicy, StartRequest
from sesame.server.domain.enrollment import EnrollRequest, PhoneRequest
from sesame.server.domain.errors import (
    DestinationNotAllowed,
    InvalidRequest,
    ResendRefused,
    SendBudgetExhausted,
)
from sesame.server.domain.lifecycle import ByOverride, VoidReason
from sesame.server.domain.model import RequestContext
from sesame.server.domain.operation import Login
from sesame.server.domain.tally import Tally
from tests.fakes.world import NO_CONTEXT, PHONE, TRANSFER, World, by

HOUR = timedelta(hours=1)
SPACING = ChallengePolicy().resend_spacing
US_MOBILE = "+14155552671"


def budgeted(per_user: int = 10, per_phone: int = 10) -> World:
    """A world whose challenge policy has these send budgets per hour."""
    return World(policy=ChallengePolicy(send_budget=SendBudget(per_user, per_phone, HOUR)))


async def test_the_eleventh_start_within_the_hour_is_refused_with_the_exact_wait() -> None:
    """Ten starts in the hour pass; the eleventh waits until the first one's hour is over, to the ms."""
    world = World()
    await world.enrol()
    for _ in range(10):
        await world.start()
        world.clock.advance(timedelta(minutes=3, milliseconds=7))
    with pytest.raises(SendBudgetExhausted) as refused:
        await world.start()
    assert (refused.value.subject, refused.value.retry_after) == (
        "user",
        HOUR - 10 * timedelta(minutes=3, milliseconds=7),
    )


async def test_a_refused_start_sends_nothing_and_opens_nothing() -> None:
    """The refused start sends no SMS and opens or indexes no challenge for the user."""
    world = budgeted(per_user=1)
    await world.enrol()
    await world.start()
    with pytest.raises(SendBudgetExhausted):
        await world.start()
    assert len(world.sms.sent) == 1
    assert len(await world.store.challenges.pending_challenges("alice", world.clock.now())) == 1


async def test_a_resend_takes_a_unit() -> None:
    """A start and an accepted resend spend a budget of two: the next start is refused."""
    world = budgeted(per_user=2)
    challenge = await world.start(await world.enrol())
    world.clock.advance(SPACING)
    await world.challenges.resend(challenge.challenge_id, NO_CONTEXT)
    with pytest.raises(SendBudgetExhausted):
        await world.start()


async def test_a_unit_frees_when_the_window_has_passed() -> None:
    """An hour after the only unit was taken, a start goes through again."""
    world = budgeted(per_user=1)
    await world.start(await world.enrol())
    world.clock.advance(HOUR)
    await world.start()
    assert len(world.sms.sent) == 2


async def test_the_phone_budget_binds_across_two_users_sharing_a_number() -> None:
    """Two users on one number share its budget: the second user's start is refused on `phone`."""
    world = budgeted(per_user=10, per_phone=1)
    await world.start(await world.enrol("alice"))
    with pytest.raises(SendBudgetExhausted) as refused:
        await world.start(await world.enrol("bob", client_id="acme"))
    assert refused.value.subject == "phone"


async def test_a_phone_refusal_takes_no_unit_of_the_users_budget() -> None:
    """When the number's budget refuses, the user's budget is untouched: no budget is charged alone."""
    world = budgeted(per_user=1, per_phone=1)
    await world.start(await world.enrol("alice"))
    with pytest.raises(SendBudgetExhausted):
        await world.start(await world.enrol("bob"))
    assert world.store.units_taken(BudgetSubject.user("bob")) == 0


async def test_a_refused_budget_spends_no_resend() -> None:
    """A resend refused by the budget leaves the challenge's resends untouched."""
    world = budgeted(per_user=1)
    challenge = await world.start(await world.enrol())
    world.clock.advance(SPACING)
    with pytest.raises(SendBudgetExhausted):
        await world.challenges.resend(challenge.challenge_id, NO_CONTEXT)
    assert (await world.store.challenges.get_challenge(challenge.challenge_id)).resends == 0


async def test_a_refused_resend_takes_no_unit() -> None:
    """A resend refused as too soon costs no unit: the budget still has room for a start."""
    world = budgeted(per_user=2)
    challenge = await world.start(await world.enrol())
    with pytest.raises(ResendRefused):
        await world.challenges.resend(challenge.challenge_id, NO_CONTEXT)
    await world.start()


async def test_a_retried_start_spends_no_unit() -> None:
    """A start retried with its request id answers the same challenge and takes no second unit."""
    world = budgeted(per_user=2)
    request = StartRequest(await world.enrol(), TRANSFER, NO_CONTEXT, request_id="r-1")
    await world.challenges.start(request)
    await world.challenges.start(request)
    await world.start()


def test_a_phone_subject_never_names_the_number() -> None:
    """A number's budget is keyed by a 128-bit hash, not by the number."""
    key = BudgetSubject.phone(PHONE).key
    assert len(key) == 32
    assert PHONE.removeprefix("+") not in key


async def test_enrolment_outside_the_allowed_countries_is_invalid() -> None:
    """A US secure number is bad input on `secure_phone` under the default allow-list."""
    world = World()
    with pytest.raises(InvalidRequest) as refused:
        await world.registry.enroll(EnrollRequest("alice", "acme", US_MOBILE, "fr"))
    assert [v.field for v in refused.value.violations] == ["secure_phone"]


async def test_a_send_outside_the_allowed_countries_is_refused_before_any_sms() -> None:
    """A number enrolled before its country left the list gets no code: DestinationNotAllowed, no SMS."""
    world = World(policy=ChallengePolicy(countries=frozenset({"DE"})))
    with pytest.raises(DestinationNotAllowed) as refused:
        await world.start(await world.enrol())
    assert (str(refused.value), world.sms.sent) == ("FR", [])


async def test_a_change_to_a_number_outside_the_allowed_countries_is_invalid() -> None:
    """The new secure number of a change must be in the allow-list too: bad input on `new_phone`."""
    world = World()
    request = PhoneRequest(
        await world.enrol(), US_MOBILE, ByOverride("agent-7"), by("p-1", reason="r"), NO_CONTEXT
    )
    with pytest.raises(InvalidRequest) as refused:
        await world.registry.change_phone(request)
    assert [v.field for v in refused.value.violations] == ["new_phone"]


async def test_each_calling_service_has_its_own_ceiling() -> None:
    """With a ceiling of one per caller, a second caller still sends; the first caller's second is refused."""
    world = World(policy=ChallengePolicy(send_budget=SendBudget(per_caller=1)))
    for user_id, phone in (("alice", "+33612000001"), ("bob", "+33612000002"), ("carol", "+33612000003")):
        await world.enrol(user_id, phone=phone)
    await world.challenges.start(StartRequest("alice", TRANSFER, RequestContext(caller="online-banking")))
    await world.challenges.start(StartRequest("bob", TRANSFER, RequestContext(caller="mobile-app")))
    with pytest.raises(SendBudgetExhausted) as refused:
        await world.challenges.start(StartRequest("carol", TRANSFER, RequestContext(caller="online-banking")))
    assert refused.value.subject == "caller"
    assert len(world.sms.sent) == 2


def test_a_caller_without_mtls_is_anonymous() -> None:
    """An empty caller (no mTLS) shares the one `anonymous` subject."""
    assert BudgetSubject.caller("") == BudgetSubject.caller("anonymous")
    assert BudgetSubject.caller("") != BudgetSubject.caller("online-banking")


class _Voids(Tally):
    """Counts the voidings told."""

    def __init__(self) -> None:
        self.voided_for: list[VoidReason] = []

    def budget_refused(self, subject: str) -> None:
        pass

    def voided(self, reason: VoidReason) -> None:
        self.voided_for.append(reason)

    def changed(self, change: str) -> None:
        pass


async def test_a_spent_ceiling_refuses_again_without_opening_anything() -> None:
    """Found from outside (AQ1): each Start refused by a spent caller's (or global) ceiling opened a
    challenge, journaled it and voided it, kept a day in Redis and 13 months in the archive. The first one
    still does (its step and its take go at once); the next are refused before their step, with the same
    wait, until a unit frees. The void is counted once (AQ2: it never was)."""
    voids = _Voids()
    budget = SendBudget(per_caller=1, ceiling_window=timedelta(minutes=1))
    world = World(policy=ChallengePolicy(send_budget=budget), tally=voids)
    await world.start(await world.enrol("alice"))
    await world.enrol("bob", phone="+33612000001")
    with pytest.raises(SendBudgetExhausted) as first:
        await world.start("bob")
    opened = set(world.store.memory._challenges)
    for _ in range(50):
        world.clock.advance(timedelta(milliseconds=100))
        with pytest.raises(SendBudgetExhausted) as again:
            await world.start("bob")
        assert again.value.subject == "caller"
    assert again.value.retry_after == first.value.retry_after - timedelta(seconds=5)
    assert set(world.store.memory._challenges) == opened
    assert voids.voided_for == [VoidReason.SEND_BUDGET]
    world.clock.advance(again.value.retry_after)
    await world.start("bob")  # a unit freed: opened and sent
    assert len(world.sms.sent) == 2


async def test_a_user_moved_off_a_spent_number_gets_codes_on_the_new_one() -> None:
    """Found from outside (AT1): the refused number remembered, a user moved to another number was refused
    on the old one's budget for its whole window (the number is the one this worker last saw; the step alone
    reads the stored one). A number's budget is never taken ahead of the step."""
    world = World(policy=ChallengePolicy(send_budget=SendBudget(10, 1, HOUR)))
    await world.start(await world.enrol("alice"))
    await world.enrol("bob")  # the same number, spent
    for _ in range(2):
        with pytest.raises(SendBudgetExhausted):
            await world.start("bob")
    moved = PhoneRequest("bob", "+33612000002", ByOverride("agent-7"), by("p-1", reason="lost"), NO_CONTEXT)
    await world.registry.change_phone(moved)
    await world.start("bob", Login())  # money waits for the change to cool; a log-in does not
    assert [sms.to for sms in world.sms.sent if sms.challenge_id][-1] == "+33612000002"


async def test_a_retried_request_id_past_a_spent_ceiling_is_answered_its_challenge() -> None:
    """Found from outside (AT2): the ceiling's refusal remembered, a Start retried by its request id (its
    first answer lost) was refused RESOURCE_EXHAUSTED while its challenge was open and its code sent. A Start
    with a request id never takes ahead of its step, which answers the retry."""
    world = World(policy=ChallengePolicy(send_budget=SendBudget(per_caller=1)))
    await world.enrol("alice")
    await world.enrol("bob", phone="+33612000001")
    request = StartRequest("alice", TRANSFER, NO_CONTEXT, request_id="r-1")
    first = await world.challenges.start(request)
    with pytest.raises(SendBudgetExhausted):
        await world.start("bob")
    assert (await world.challenges.start(request)).challenge_id == first.challenge_id


@pytest.mark.parametrize(
    ("subject", "budget", "phone"),
    [
        ("phone", SendBudget(per_phone=1), PHONE),  # alice's number, shared
        ("caller", SendBudget(per_caller=1, ceiling_window=timedelta(minutes=1)), "+33612000001"),
    ],
)
async def test_starts_past_a_spent_number_or_ceiling_open_nothing_more_with_fresh_request_ids(
    subject: str, budget: SendBudget, phone: str
) -> None:
    """The AQ1 remainder: a Start refused on a spent number's budget (shared with another user), or with a
    fresh request id on a spent ceiling, opened a challenge, journaled it and voided it, each call. The
    first refusal still does; the next are refused before the step, with the same subject."""
    voids = _Voids()
    world = World(policy=ChallengePolicy(send_budget=budget), tally=voids)
    await world.start(await world.enrol("alice"))
    await world.enrol("bob", phone=phone)
    with pytest.raises(SendBudgetExhausted) as first:
        await world.start("bob")
    assert first.value.subject == subject
    opened = set(world.store.memory._challenges)
    for attempt in range(20):
        world.clock.advance(timedelta(milliseconds=100))
        with pytest.raises(SendBudgetExhausted) as again:
            await world.challenges.start(StartRequest("bob", TRANSFER, NO_CONTEXT, request_id=f"r-{attempt}"))
        assert again.value.subject == subject
    assert set(world.store.memory._challenges) == opened
    assert voids.voided_for == [VoidReason.SEND_BUDGET]


async def test_resends_past_a_spent_number_journal_nothing_more() -> None:
    """Found from outside (AT3): each resend refused on a spent number's budget took the resend, journaled it
    and its withdrawal and queued an SMS dropped as a dead letter (602 journal entries for 200 calls), and
    neither the resends' limit nor their spacing stopped the next. The first refusal still does; the next
    are refused before the step."""
    world = World(policy=ChallengePolicy(send_budget=SendBudget(10, 2, HOUR)))
    challenge = await world.start(await world.enrol("alice"))
    await world.start(await world.enrol("bob"))  # the same number: spent
    world.clock.advance(SPACING)
    with pytest.raises(SendBudgetExhausted):
        await world.challenges.resend(challenge.challenge_id, NO_CONTEXT)
    journal = await world.store.journal.challenge_journal(challenge.challenge_id)
    for _ in range(20):
        world.clock.advance(SPACING)
        with pytest.raises(SendBudgetExhausted) as refused:
            await world.challenges.resend(challenge.challenge_id, NO_CONTEXT)
        assert refused.value.subject == "phone"
    assert await world.store.journal.challenge_journal(challenge.challenge_id) == journal
    assert len(world.sms.sent) == 2
