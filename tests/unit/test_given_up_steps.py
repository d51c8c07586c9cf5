"""Changes whose caller gives up run to their end and are counted (outside audits AG and AH); a call whose
deadline has passed begins nothing, and leaves no coroutine unawaited (audit AI)."""

from __future__ import annotations

import asyncio
import gc
import warnings

import pytest

from sesame.server.domain.enrollment import EnrollRequest, StatusRequest
from sesame.server.domain.errors import DeadlinePassed
from sesame.server.domain.model import RequestContext, VerifyResult
from sesame.server.domain.operation import Operation
from sesame.server.domain.tally import Untallied
from sesame.server.domain.to_the_end import answering_by
from tests.fakes.world import World, by
from tests.support.given_up import given_up, held


class Counted(Untallied):
    """The changes and resends counted."""

    def __init__(self) -> None:
        self.changes: list[str] = []
        self.resends: list[str] = []

    def changed(self, change: str) -> None:
        self.changes.append(change)

    def resend(self, outcome: str) -> None:
        self.resends.append(outcome)

    def opened(self, operation: Operation) -> None:
        """Not counted here."""


async def test_an_enrolment_given_up_between_its_steps_registers_the_user(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Cut after the client listed the id, the user was never registered (AH3)."""
    world = World()
    reached, release = held(monkeypatch, world.store.users, "register_user")
    enrolling = asyncio.ensure_future(
        world.registry.enroll(EnrollRequest("alice", "acme", "+33612345678", "fr"))
    )
    await given_up(enrolling, reached, release)
    assert (await world.store.users.get_user("alice")).client_id == "acme"


async def test_an_unblock_given_up_is_counted(monkeypatch: pytest.MonkeyPatch) -> None:
    counted = Counted()
    world = World(tally=counted)
    await world.enrol()
    for wrong_codes in (3, 2):  # five in a row: blocked
        challenge = await world.start()
        code = world.last_code()
        for _ in range(wrong_codes):
            await world.verify(challenge, str((int(code) + 1) % 1_000_000).zfill(6))
    reached, release = held(monkeypatch, world.store.users, "unblock_user")
    unblocking = asyncio.ensure_future(
        world.registry.unblock(StatusRequest("alice", by("u-1", reason="checked")))
    )
    await given_up(unblocking, reached, release)
    assert counted.changes == ["unblock"]


async def test_a_refused_resend_given_up_is_counted(monkeypatch: pytest.MonkeyPatch) -> None:
    counted = Counted()
    world = World(tally=counted)
    await world.enrol()
    challenge = await world.start()
    await world.challenges.cancel(challenge.challenge_id, RequestContext())
    reached, release = held(monkeypatch, world.store.challenges, "record_resend")
    resending = asyncio.ensure_future(world.challenges.resend(challenge.challenge_id, RequestContext()))
    await given_up(resending, reached, release)
    assert counted.resends == ["closed"]


async def test_a_resend_past_its_deadline_begins_nothing_and_leaves_nothing_unawaited() -> None:
    world = World()
    await world.enrol()
    challenge = await world.start()
    with warnings.catch_warnings(record=True) as seen, answering_by(-1.0):
        warnings.simplefilter("always")
        with pytest.raises(DeadlinePassed):
            await world.challenges.resend(challenge.challenge_id, RequestContext(), "r-1")
        gc.collect()
    assert not [w for w in seen if "never awaited" in str(w.message)]
    assert (
        await world.store.challenges.get_challenge(challenge.challenge_id)
    ).resends_left == challenge.resends_left


async def test_a_start_or_a_verify_past_its_deadline_begins_nothing() -> None:
    """Found from outside (AG2): a Start whose deadline had passed sent its SMS and spent its unit, a Verify
    consumed the code, for a caller told DEADLINE_EXCEEDED."""
    world = World()
    await world.enrol()
    with answering_by(-1.0), pytest.raises(DeadlinePassed):
        await world.start()
    assert world.sms.sent == []
    challenge = await world.start()
    code = world.last_code()
    with answering_by(-1.0), pytest.raises(DeadlinePassed):
        await world.verify(challenge, code)
    assert (
        await world.store.challenges.get_challenge(challenge.challenge_id)
    ).attempts_left == challenge.attempts_left
    assert await world.verify(challenge, code) is VerifyResult.VERIFIED


async def test_a_deadline_read_a_millisecond_ahead_begins_nothing() -> None:
    """gRPC reads a deadline that passed a moment ago as a millisecond or two left (its own clock against
    time.time()): a Verify sent with a 1 ns timeout once consumed its code under load (a full run)."""
    world = World()
    await world.enrol()
    challenge = await world.start()
    code = world.last_code()
    with answering_by(0.001), pytest.raises(DeadlinePassed):
        await world.verify(challenge, code)
    assert await world.verify(challenge, code) is VerifyResult.VERIFIED


async def test_a_block_voids_only_what_was_open_when_it_started(monkeypatch: pytest.MonkeyPatch) -> None:
    """Found from outside (AN3): an unblock landed between the block's step and its voiding, a challenge
    opened then got its SMS, and the voiding, late, voided it too: its right code answered VOIDED."""
    from sesame.server.domain import blocking
    from sesame.server.domain import challenges as flows
    from sesame.server.domain.model import ChallengeStatus

    blocks: list[blocking.Block] = []

    async def later(store: object, block: blocking.Block, **_: object) -> None:
        blocks.append(block)

    monkeypatch.setattr(flows, "after_block", later)
    world = World()
    await world.enrol()
    open_at_block = await world.start()
    for wrong_codes in (3, 2):
        challenge = await world.start()
        code = world.last_code()
        for _ in range(wrong_codes):
            await world.verify(challenge, str((int(code) + 1) % 1_000_000).zfill(6))
    [block] = blocks
    await world.registry.unblock(StatusRequest("alice", by("u-1", reason="checked")))
    opened_after = await world.start()
    code = world.last_code()
    await blocking.after_block(world.store, block)  # the voiding, late
    challenges = world.store.challenges
    assert (await challenges.get_challenge(open_at_block.challenge_id)).status is ChallengeStatus.VOIDED
    assert await world.verify(opened_after, code) is VerifyResult.VERIFIED
