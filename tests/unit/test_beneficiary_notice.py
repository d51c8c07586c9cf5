"""The notice that a payee was added: queued by a VERIFIED add_beneficiary only, sent by the dispatcher; it
never changes the answer (docs/decisions/0033)."""

from __future__ import annotations

import dataclasses
import re
from datetime import timedelta

from sesame.server.domain.challenges import ChallengeFlows, ChallengePolicy, StartRequest, VerifyRequest
from sesame.server.domain.errors import StoreUnavailable
from sesame.server.domain.lifecycle import UserNotice
from sesame.server.domain.model import VerificationOutcome, VerifyResult
from sesame.server.domain.operation import AddBeneficiary, Payee
from tests.fakes.challenges import MemoryChallenges
from tests.unit.test_challenges import NO_CONTEXT, PHONE, TRANSFER, World, flows_over, wrong

ADD = AddBeneficiary(Payee("Jean DUPONT", "FR7630006000011234567890189"))


async def added(world: World, code_of: str = "") -> VerificationOutcome:
    """Start an add_beneficiary challenge and submit its code (or `code_of` wrong)."""
    challenge = await world.flows.start(StartRequest(await world.enrol(), ADD, NO_CONTEXT))
    code = world.last_code()
    submitted = wrong(code) if code_of == "wrong" else code
    return await world.flows.verify(VerifyRequest(challenge.challenge_id, submitted, ADD, NO_CONTEXT))


async def notices(world: World) -> list[tuple[str, str]]:
    return [
        (entry["kind"], entry["outcome"])
        for entry in await world.store.users.user_journal("alice")
        if entry["event"] == "user.notice"
    ]


async def test_a_verified_new_payee_is_notified_with_its_date_and_time() -> None:
    """One SMS to the secure number, no code, naming the payee, the date and time; journaled as sent."""
    world = World()
    outcome = await added(world)
    assert outcome.result is VerifyResult.VERIFIED
    notice = world.sms.sent[-1]
    assert (notice.to, notice.challenge_id) == (PHONE, "")
    assert '"Jean DUPONT" (IBAN FR76...0189) a été ajouté le ' in notice.text
    assert world.clock.now().strftime("%d/%m/%Y à %H:%M UTC") in notice.text
    assert not re.search(r"\d{6}", notice.text)
    assert await notices(world) == [("beneficiary_added", "sent")]


async def test_a_wrong_code_or_another_operation_sends_no_notice() -> None:
    """Only a VERIFIED add_beneficiary challenge is notified: not a wrong code, not a transfer."""
    world = World()
    assert (await added(world, "wrong")).result is VerifyResult.WRONG_CODE
    challenge = await world.flows.start(StartRequest("alice", TRANSFER, NO_CONTEXT))
    assert await world.verify(challenge.challenge_id, world.last_code()) is VerifyResult.VERIFIED
    assert all(message.challenge_id for message in world.sms.sent)
    assert await notices(world) == []


async def test_a_notice_the_gateway_refuses_is_journaled_failed_and_the_answer_stands() -> None:
    """The gateway down after the code was sent: VERIFIED all the same, the notice journaled failed."""
    world = World()
    challenge = await world.flows.start(StartRequest(await world.enrol(), ADD, NO_CONTEXT))
    code = world.last_code()
    world.sms.fail()
    outcome = await world.flows.verify(VerifyRequest(challenge.challenge_id, code, ADD, NO_CONTEXT))
    assert outcome.result is VerifyResult.VERIFIED
    assert await notices(world) == [("beneficiary_added", "failed")]


class NoticeJournalDown(MemoryChallenges):
    """Challenges whose outbox cannot journal a notice (record_notice.lua's step), as Redis gone right after
    the verification."""

    async def record_notice(self, user_id: str, notice: UserNotice) -> None:
        raise StoreUnavailable("ConnectionError")


async def test_a_notice_that_cannot_be_journaled_never_changes_the_answer() -> None:
    """With the journal of notices failing, the verification still answers VERIFIED, the SMS sent, and its
    entry stays in the outbox (claimed again, at least once: docs/decisions/0033)."""
    world = World()
    world.store = dataclasses.replace(world.store, challenges=NoticeJournalDown(world.store.memory))
    world.flows = flows_over(world.keys, world.store, world.sms, world.clock, ChallengePolicy())
    outcome = await added(world)
    assert outcome.result is VerifyResult.VERIFIED
    assert world.sms.sent[-1].challenge_id == ""
    assert (await world.store.outbox.backlog()).depth == 1


async def test_the_notice_is_queued_by_the_verification_itself() -> None:
    """The VERIFIED step queues the notice in the outbox before the call returns: nothing sent inline."""
    world = World()
    challenge = await world.flows.start(StartRequest(await world.enrol(), ADD, NO_CONTEXT))
    code = world.last_code()
    sent = len(world.sms.sent)
    outcome = await ChallengeFlows.verify(
        world.flows, VerifyRequest(challenge.challenge_id, code, ADD, NO_CONTEXT)
    )  # the flows alone: no dispatch after the call
    assert outcome.result is VerifyResult.VERIFIED
    assert len(world.sms.sent) == sent
    (queued,) = await world.store.outbox.take("unit", 10, timedelta(0))
    assert (queued.challenge_id, queued.notice) == (challenge.challenge_id, "beneficiary_added")
