"""The dispatcher: a queued SMS is sent only while its challenge can be answered, and settled once, whatever
the gateway said: sent, tried again, or dead-lettered (docs/decisions/0025, 0033). Over the fakes; the
outbox and dead letters contracts hold the fake to Redis."""

from __future__ import annotations

from datetime import timedelta

import pytest

from sesame.server.domain.challenges import ChallengeFlows, ChallengePolicy, StartRequest
from sesame.server.domain.dispatching import Dispatcher, Outcome, RecentCodes, minutes_left
from sesame.server.domain.errors import KeyNotFound
from sesame.server.domain.model import Challenge, DeliveryState, RequestContext, User, UserStatus
from tests.fakes.clock import FixedClock
from tests.fakes.keystore import FakeKeyStore
from tests.fakes.outbox import MemoryDeadLetters
from tests.fakes.proof_flows import proof_flows
from tests.fakes.sms import RecordingSmsGateway
from tests.fakes.state import memory_state
from tests.fakes.world import PHONE, TRANSFER

NO_CONTEXT = RequestContext()
NO_WAIT = timedelta(0)


class Queued:
    """Flows that queue without sending, a dispatcher over the same fakes, and a handle on each."""

    def __init__(
        self, *, recent: bool = False, dispatcher_keys: FakeKeyStore | None = None, max_tries: int = 1
    ) -> None:
        self.clock = FixedClock()
        self.keys = FakeKeyStore()
        self.keys.add_key("sesame-otp-v1", b"k" * 32)
        self.store = memory_state(purge_clock=self.clock)  # the outbox's idle times on the same clock
        self.sms = RecordingSmsGateway(self.clock)
        policy = ChallengePolicy()
        codes = RecentCodes(self.clock) if recent else None
        proofs = proof_flows(self.keys, self.store, self.clock, policy.bank_name)
        self.flows = ChallengeFlows(
            keys=self.keys,
            store=self.store,
            sms=self.sms,
            clock=self.clock,
            policy=policy,
            proofs=proofs,
            recent=codes,
        )
        self.dispatcher = Dispatcher(
            keys=dispatcher_keys or self.keys,
            outbox=self.store.outbox,
            sms=self.sms,
            clock=self.clock,
            bank_name=policy.bank_name,
            recent=codes,
            units=self.store.send_units,
            max_tries=max_tries,
        )

    async def start(self) -> Challenge:
        await self.store.users.register_user(
            User("alice", "acme", PHONE, "fr", UserStatus.ACTIVE, self.clock.now())
        )
        return await self.flows.start(StartRequest("alice", TRANSFER, NO_CONTEXT))

    async def dispatch_one(self) -> Outcome:
        (queued,) = await self.store.outbox.take("unit", 10, NO_WAIT)
        return (await self.dispatcher.dispatch(queued)).outcome

    async def delivery(self, challenge: Challenge) -> DeliveryState:
        return (await self.store.challenges.get_challenge(challenge.challenge_id)).delivery


async def test_start_queues_and_sends_nothing_itself() -> None:
    """Start answers QUEUED with one entry in the outbox and no SMS handed to the gateway."""
    world = Queued()
    challenge = await world.start()
    assert challenge.delivery is DeliveryState.QUEUED
    assert (await world.store.outbox.backlog()).depth == 1
    assert world.sms.sent == []


async def test_a_queued_sms_is_sent_once_and_settled() -> None:
    """Dispatched: one SMS to the secure number, the challenge SENT, the outbox empty."""
    world = Queued()
    challenge = await world.start()
    assert await world.dispatch_one() is Outcome.SENT
    assert [(m.to, m.challenge_id) for m in world.sms.sent] == [(PHONE, challenge.challenge_id)]
    assert await world.delivery(challenge) is DeliveryState.SENT
    assert (await world.store.outbox.backlog()).depth == 0


async def test_an_sms_claimed_while_its_dispatcher_was_paused_is_not_sent_by_it() -> None:
    """Paused past the claim idle time after its take, a dispatcher finds the entry claimed by another: it
    sends nothing and settles nothing, and the other sends the SMS once (decision 0129)."""
    world = Queued()
    challenge = await world.start()
    (paused,) = await world.store.outbox.take("paused", 10, NO_WAIT)
    world.clock.advance(timedelta(seconds=31))
    (claimed,) = await world.store.outbox.reclaim("other", timedelta(seconds=30), 10)
    assert (await world.dispatcher.dispatch(claimed)).outcome is Outcome.SENT
    assert (await world.dispatcher.dispatch(paused)).outcome is Outcome.TAKEN_OVER
    assert [m.challenge_id for m in world.sms.sent] == [challenge.challenge_id]


async def test_an_sms_still_pending_with_its_late_dispatcher_is_kept_and_sent() -> None:
    """Late but not claimed (nobody else dispatches): the entry is kept as its dispatcher's and sent."""
    world = Queued()
    await world.start()
    (late,) = await world.store.outbox.take("late", 10, NO_WAIT)
    world.clock.advance(timedelta(seconds=31))
    assert (await world.dispatcher.dispatch(late)).outcome is Outcome.SENT
    assert len(world.sms.sent) == 1


async def test_an_expired_challenges_sms_is_never_sent() -> None:
    """Taken after the challenge expired: no SMS, the challenge EXPIRED (reason expired), dead-lettered."""
    world = Queued()
    challenge = await world.start()
    world.clock.advance(ChallengePolicy().lifetime)
    assert await world.dispatch_one() is Outcome.DEAD_LETTERED
    assert world.sms.sent == []
    stored = await world.store.challenges.get_challenge(challenge.challenge_id)
    assert (stored.delivery, stored.delivery_reason) == (DeliveryState.EXPIRED, "expired")
    assert (await world.store.outbox.backlog()).depth == 0
    (letter,) = await MemoryDeadLetters(world.store.outbox).recent(10)
    assert (letter.challenge_id, letter.state, letter.reason) == (
        challenge.challenge_id,
        DeliveryState.EXPIRED,
        "expired",
    )


async def test_a_cancelled_challenges_sms_is_never_sent() -> None:
    """Cancelled before its SMS left: no SMS, the entry settled."""
    world = Queued()
    challenge = await world.start()
    await world.flows.cancel(challenge.challenge_id, NO_CONTEXT)
    assert await world.dispatch_one() is Outcome.EXPIRED
    assert world.sms.sent == []
    assert (await world.store.outbox.backlog()).depth == 0


async def test_a_gateway_failure_with_one_try_allowed_is_dead_lettered() -> None:
    """The gateway fails (SESAME_SMS_MAX_TRIES=1, the default): FAILED with reason max_tries, dead-lettered
    masked, the entry gone."""
    world = Queued()
    challenge = await world.start()
    world.sms.fail()
    assert await world.dispatch_one() is Outcome.DEAD_LETTERED
    stored = await world.store.challenges.get_challenge(challenge.challenge_id)
    assert (stored.delivery, stored.delivery_reason) == (DeliveryState.FAILED, "max_tries")
    assert (await world.store.outbox.backlog()).depth == 0
    (letter,) = await MemoryDeadLetters(world.store.outbox).recent(10)
    assert (letter.reason, letter.failure, letter.tries) == ("max_tries", "error", 1)
    assert PHONE not in repr(letter)


async def test_a_failed_try_stays_queued_until_its_tries_are_spent() -> None:
    """With three tries: the first two failures leave the entry pending (claimed again once idle), the
    third dead-letters it; the challenge reads QUEUED in between."""
    world = Queued(max_tries=3)
    challenge = await world.start()
    world.sms.fail()
    (queued,) = await world.store.outbox.take("unit", 10, NO_WAIT)
    assert (await world.dispatcher.dispatch(queued)).outcome is Outcome.RETRY
    assert await world.delivery(challenge) is DeliveryState.QUEUED
    (queued,) = await world.store.outbox.reclaim("unit", NO_WAIT, 10)
    assert (await world.dispatcher.dispatch(queued)).outcome is Outcome.RETRY
    (queued,) = await world.store.outbox.reclaim("unit", NO_WAIT, 10)
    dispatched = await world.dispatcher.dispatch(queued)
    assert (dispatched.outcome, dispatched.reason) == (Outcome.DEAD_LETTERED, "max_tries")
    assert await world.delivery(challenge) is DeliveryState.FAILED
    assert (await world.store.outbox.backlog()).depth == 0


async def test_a_retried_sms_that_gets_through_is_sent() -> None:
    """A failed try, then the gateway back: the claimed entry is sent once, the challenge SENT."""
    world = Queued(max_tries=3)
    challenge = await world.start()
    world.sms.fail()
    (queued,) = await world.store.outbox.take("unit", 10, NO_WAIT)
    assert (await world.dispatcher.dispatch(queued)).outcome is Outcome.RETRY
    world.sms.recover()
    (queued,) = await world.store.outbox.reclaim("unit", NO_WAIT, 10)
    assert (await world.dispatcher.dispatch(queued)).outcome is Outcome.SENT
    assert [m.challenge_id for m in world.sms.sent] == [challenge.challenge_id]
    assert await world.delivery(challenge) is DeliveryState.SENT


async def test_every_providers_final_word_is_dead_lettered_at_once() -> None:
    """DeliveryRefused (every provider refused the number): dead-lettered on the first try, whatever
    the tries allowed, with the providers' reason."""
    world = Queued(max_tries=5)
    challenge = await world.start()
    world.sms.refuse("bad_number")
    assert await world.dispatch_one() is Outcome.DEAD_LETTERED
    stored = await world.store.challenges.get_challenge(challenge.challenge_id)
    assert (stored.delivery, stored.delivery_reason) == (DeliveryState.FAILED, "bad_number")


async def test_a_code_that_expires_between_tries_is_never_sent_again() -> None:
    """A failed try, then the code expires before the claim: EXPIRED, reason expired, nothing sent."""
    world = Queued(max_tries=3)
    challenge = await world.start()
    world.sms.fail()
    (queued,) = await world.store.outbox.take("unit", 10, NO_WAIT)
    assert (await world.dispatcher.dispatch(queued)).outcome is Outcome.RETRY
    world.sms.recover()
    world.clock.advance(ChallengePolicy().lifetime)
    (queued,) = await world.store.outbox.reclaim("unit", NO_WAIT, 10)
    dispatched = await world.dispatcher.dispatch(queued)
    assert (dispatched.outcome, dispatched.reason) == (Outcome.DEAD_LETTERED, "expired")
    assert world.sms.sent == []
    assert await world.delivery(challenge) is DeliveryState.EXPIRED


async def test_the_code_start_noted_is_sent_without_another_hsm_call() -> None:
    """With Start's code noted in the process, the dispatcher sends it without the HSM: a dispatcher whose
    key store holds no key still sends it."""
    world = Queued(recent=True, dispatcher_keys=FakeKeyStore())
    challenge = await world.start()
    assert await world.dispatch_one() is Outcome.SENT
    assert world.sms.sent[-1].challenge_id == challenge.challenge_id


async def test_an_hsm_failure_leaves_the_sms_queued() -> None:
    """A dispatcher that cannot compute the code sends nothing and settles nothing: the entry stays, to be
    claimed again once idle (and sent, or found expired)."""
    world = Queued(dispatcher_keys=FakeKeyStore())
    await world.start()
    with pytest.raises(KeyNotFound):
        await world.dispatch_one()
    assert world.sms.sent == []
    assert (await world.store.outbox.backlog()).depth == 1


async def _a_notice_queued(world: Queued) -> None:
    """A block alert queued about the user's challenge, its code SMS already settled (decision 0033)."""
    challenge = await world.start()
    assert await world.dispatch_one() is Outcome.SENT
    world.store.outbox.queue(challenge.challenge_id, world.clock.now(), "user_blocked", world.clock.now())


async def test_a_notice_no_provider_took_stays_for_another_try() -> None:
    """Three tries allowed: a failed notice is journaled try_failed and stays in the outbox; the gateway
    back, the next try sends it once (decision 0041)."""
    world = Queued(max_tries=3)
    await _a_notice_queued(world)
    world.sms.fail()
    assert await world.dispatch_one() is Outcome.RETRY
    assert (await world.store.outbox.backlog()).depth == 1
    world.sms.recover()
    (claimed,) = await world.store.outbox.reclaim("other", NO_WAIT, 10)
    assert (await world.dispatcher.dispatch(claimed)).outcome is Outcome.NOTICE_SENT
    journal = await world.store.users.user_journal("alice")
    assert [e["outcome"] for e in journal if e["event"] == "user.notice"] == ["try_failed", "sent"]
    assert [m.challenge_id for m in world.sms.sent].count("") == 1


async def test_a_notice_past_its_age_limit_is_dead_lettered_never_sent() -> None:
    """A notice still queued a day after its change is given up on (reason expired), not sent late."""
    world = Queued()
    await _a_notice_queued(world)
    world.clock.advance(timedelta(days=1))
    sent_before = len(world.sms.sent)
    assert await world.dispatch_one() is Outcome.DEAD_LETTERED
    assert len(world.sms.sent) == sent_before
    (letter,) = await MemoryDeadLetters(world.store.outbox).recent(10)
    assert (letter.notice, letter.reason) == ("user_blocked", "expired")


@pytest.mark.parametrize(
    ("remaining", "said"),
    [
        (timedelta(minutes=5) - timedelta(milliseconds=50), 5),  # sent as Start returns
        (timedelta(minutes=3, seconds=30), 3),  # rounding said 4
        (timedelta(minutes=3, seconds=57, milliseconds=999), 3),
        (timedelta(minutes=3, seconds=58), 4),  # within the 2 s in transit
        (timedelta(seconds=59), 1),
        (timedelta(seconds=1), 1),
    ],
)
def test_the_sms_never_says_more_minutes_than_remain(remaining: timedelta, said: int) -> None:
    assert minutes_left(remaining) == said
