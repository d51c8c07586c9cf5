"""A Resend retried by its request id (decision 0065), over the fakes: the first resend answered again, no
second resend or SMS; the SMS of a resend whose answer was lost held again, so that it leaves."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

import pytest

from sesame.server.domain.budgets import Charge
from sesame.server.domain.challenges import ChallengePolicy, StartRequest
from sesame.server.domain.errors import InvalidRequest, StoreUnavailable
from sesame.server.domain.model import DeliveryState, RequestContext
from sesame.server.domain.resending import ResendClaim, Resent
from sesame.server.grpc.demo import code_in
from tests.fakes.challenges import MemoryChallenges
from tests.fakes.state import MemoryState, memory_state
from tests.unit.test_challenges import NO_CONTEXT, SPACING, TRANSFER, World, flows_over


class LostReplies(MemoryChallenges):
    """Challenges whose next claimed resend runs its step and loses its answer (a cut after the script)."""

    lose_next = False

    async def record_resend_once(  # noqa: PLR0913 (as the port)
        self,
        challenge_id: str,
        at: datetime,
        context: RequestContext,
        charges: Sequence[Charge],
        hold: str,
        *,
        claim: ResendClaim,
    ) -> Resent:
        resent = await super().record_resend_once(challenge_id, at, context, charges, hold, claim=claim)
        if self.lose_next:
            self.lose_next = False
            raise StoreUnavailable("ConnectionError")
        return resent


class LossyWorld(World):
    """The unit tests' world, its challenges losing a resend's answer when told."""

    def __init__(self) -> None:
        super().__init__()
        fresh = memory_state()
        self.lossy = LostReplies(fresh.memory)
        self.store = MemoryState(
            users=fresh.users,
            clients=fresh.clients,
            challenges=self.lossy,
            proofs=fresh.proofs,
            journal=fresh.journal,
            send_units=fresh.send_units,
            memory=fresh.memory,
        )
        self.flows = flows_over(self.keys, self.store, self.sms, self.clock, ChallengePolicy())


async def test_a_retry_answers_the_first_resend_without_a_second_sms() -> None:
    """Retried after its answer came: the same resends left, no resend spent, no SMS sent again."""
    world = World()
    challenge = await world.flows.start(StartRequest(await world.enrol(), TRANSFER, NO_CONTEXT))
    world.clock.advance(SPACING)
    first = await world.flows.resend(challenge.challenge_id, NO_CONTEXT, "r-1")
    world.clock.advance(SPACING)
    again = await world.flows.resend(challenge.challenge_id, NO_CONTEXT, "r-1")
    assert (first.resends_left, again.resends_left) == (2, 2)
    assert again.delivery is DeliveryState.SENT  # its SMS left: what it is now
    assert len(world.sms.sent) == 2
    assert (await world.store.challenges.get_challenge(challenge.challenge_id)).resends == 1


async def test_a_resend_whose_answer_was_lost_sends_its_sms_once_retried() -> None:
    """The step ran, its answer lost: UNAVAILABLE and its units given back, so its SMS is not sent; the retry
    holds them again under its name: that SMS leaves, once, and no second resend is spent."""
    world = LossyWorld()
    challenge = await world.flows.start(StartRequest(await world.enrol(), TRANSFER, NO_CONTEXT))
    world.clock.advance(SPACING)
    world.lossy.lose_next = True
    with pytest.raises(StoreUnavailable):
        await world.flows.resend(challenge.challenge_id, NO_CONTEXT, "r-1")
    assert len(world.sms.sent) == 1  # the resend's SMS holds no units: not sent
    again = await world.flows.resend(challenge.challenge_id, NO_CONTEXT, "r-1")
    assert (again.resends_left, len(world.sms.sent)) == (2, 2)
    assert world.last_code() == code_in(world.sms.sent[0].text)  # the same code, sent again


async def test_the_same_request_id_on_another_challenge_is_invalid() -> None:
    """A request id claimed by a resend of one challenge, sent with another: InvalidRequest, nothing sent."""
    world = World()
    user_id = await world.enrol()
    one = await world.flows.start(StartRequest(user_id, TRANSFER, NO_CONTEXT))
    other = await world.flows.start(StartRequest(user_id, TRANSFER, NO_CONTEXT))
    world.clock.advance(SPACING)
    await world.flows.resend(one.challenge_id, NO_CONTEXT, "r-1")
    with pytest.raises(InvalidRequest):
        await world.flows.resend(other.challenge_id, NO_CONTEXT, "r-1")
    assert len(world.sms.sent) == 3
    assert (await world.store.challenges.get_challenge(other.challenge_id)).resends == 0
