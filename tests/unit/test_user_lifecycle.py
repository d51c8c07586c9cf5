"""Suspend, reinstate, revoke and terminate over fakes: what each does to the user and its challenges."""

from __future__ import annotations

import dataclasses
from datetime import timedelta

import pytest

from sesame.server.domain.budgets import BudgetSubject
from sesame.server.domain.enrollment import EnrollRequest, StatusRequest, TerminateRequest
from sesame.server.domain.errors import ClientNotFound, ClientTerminated, UserAlreadyExists, UserNotActive
from sesame.server.domain.lifecycle import ClientTermination, StatusAction, StatusChange, StatusChanged
from sesame.server.domain.model import (
    ChallengeStatus,
    UserStatus,
    VerifyResult,
)
from sesame.server.domain.opening import Opened, Opening
from sesame.server.domain.operation import Login
from tests.fakes.challenges import MemoryChallenges
from tests.fakes.state import memory_state
from tests.fakes.world import World, by


@pytest.fixture
def world() -> World:
    return World()


async def test_suspension_voids_open_challenges_so_the_right_code_is_refused(world: World) -> None:
    """After a suspension, the code of a challenge opened before it answers VOIDED."""
    challenge = await world.start(await world.enrol())
    code = world.last_code()
    assert await world.suspend() == 1
    assert await world.verify(challenge, code) is VerifyResult.VOIDED


async def test_a_code_voided_by_a_verify_between_the_step_and_the_voiding_counts_as_the_suspensions(
    world: World,
) -> None:
    """A Verify on another worker lands after the suspension's step, before its voiding: it answers VOIDED
    and marks the challenge void itself; the suspension still voided it (its code was void from the step
    on) and says so. Before, it answered 0 (decision 0102)."""
    challenge = await world.start(await world.enrol())
    code = world.last_code()
    users = world.store.users
    step = users.change_user_status
    answers: list[VerifyResult] = []

    async def then_a_verify(change: StatusChange) -> StatusChanged:
        changed = await step(change)
        answers.append(await world.verify(challenge, code))
        return changed

    users.change_user_status = then_a_verify  # type: ignore[method-assign]
    assert await world.suspend() == 1
    assert answers == [VerifyResult.VOIDED]


async def test_a_suspended_user_is_sent_no_code(world: World) -> None:
    """StartChallenge refuses a suspended user before any SMS."""
    await world.suspend(await world.enrol())
    with pytest.raises(UserNotActive):
        await world.start()
    assert world.sms.sent == []


async def test_suspending_again_voids_what_an_interrupted_suspension_left(world: World) -> None:
    """A suspension that died after its status change leaves challenges open; the retry voids them."""
    challenge = await world.start(await world.enrol())
    at = world.clock.now()
    await world.store.users.change_user_status(StatusChange("alice", StatusAction.SUSPEND, at, by("s-1")))
    assert (await world.store.challenges.get_challenge(challenge.challenge_id)).status is ChallengeStatus.OPEN
    assert await world.suspend(request_id="s-1") == 1
    assert (
        await world.store.challenges.get_challenge(challenge.challenge_id)
    ).status is ChallengeStatus.VOIDED


async def test_a_suspension_retried_once_reinstated_leaves_what_was_opened_since(world: World) -> None:
    """The retry of a suspension finishes its voiding, not a later one: a challenge the reinstated user
    opened since stays OPEN, uncounted, and its code verifies."""
    user_id = await world.enrol()
    await world.suspend(request_id="s-1")
    await world.registry.reinstate(StatusRequest(user_id, by("r-1")))
    challenge = await world.start()
    assert await world.suspend(request_id="s-1") == 0
    assert await world.verify(challenge, world.last_code()) is VerifyResult.VERIFIED


async def test_challenges_closed_or_expired_are_left_alone(world: World) -> None:
    """A verified challenge stays VERIFIED, and one long expired is not even looked at."""
    user_id = await world.enrol()
    old = await world.start(user_id)
    world.clock.advance(timedelta(hours=1))
    done = await world.start(user_id, Login())
    await world.verify(done, world.last_code())
    assert await world.suspend() == 0
    assert (await world.store.challenges.get_challenge(done.challenge_id)).status is ChallengeStatus.VERIFIED
    assert (await world.store.challenges.get_challenge(old.challenge_id)).status is ChallengeStatus.OPEN


async def test_reinstatement_lets_a_new_challenge_through(world: World) -> None:
    """A reinstated user is sent a code again, and that code verifies."""
    user_id = await world.enrol()
    await world.suspend()
    await world.registry.reinstate(StatusRequest(user_id, by("r-1")))
    challenge = await world.start()
    assert await world.verify(challenge, world.last_code()) is VerifyResult.VERIFIED


async def test_reinstatement_lifts_a_block_after_wrong_codes(world: World) -> None:
    """A user blocked after five wrong codes in a row is sent a code again once reinstated."""
    user_id = await world.enrol()
    for wrong_codes in (3, 2):
        challenge = await world.start()
        code = world.last_code()
        for _ in range(wrong_codes):
            await world.verify(challenge, str((int(code) + 1) % 1_000_000).zfill(6))
    result = await world.registry.reinstate(StatusRequest(user_id, by("r-1")))
    assert result.user.blocked_until is None
    await world.start()


async def test_a_retried_reinstatement_does_not_undo_a_later_suspension(world: World) -> None:
    """The reinstatement's request id is spent: its retry after a new suspension leaves the user suspended."""
    user_id = await world.enrol()
    await world.suspend(request_id="s-1")
    await world.registry.reinstate(StatusRequest(user_id, by("r-1")))
    await world.suspend(request_id="s-2")
    retried = await world.registry.reinstate(StatusRequest(user_id, by("r-1")))
    assert retried.user.status is UserStatus.SUSPENDED


async def test_revocation_is_final(world: World) -> None:
    """A revoked user cannot be reinstated, nor enrolled again, nor sent a code."""
    user_id = await world.enrol()
    await world.registry.revoke(StatusRequest(user_id, by("v-1")))
    with pytest.raises(UserNotActive):
        await world.registry.reinstate(StatusRequest(user_id, by("r-1")))
    with pytest.raises(UserNotActive):
        await world.enrol()
    with pytest.raises(UserNotActive):
        await world.start()


async def test_revocation_voids_open_challenges(world: World) -> None:
    """Revoking a user voids its open challenges, as a suspension does."""
    challenge = await world.start(await world.enrol())
    result = await world.registry.revoke(StatusRequest("alice", by("v-1")))
    assert result.voided == 1
    assert await world.verify(challenge, world.last_code()) is VerifyResult.VOIDED


class SuspendedWhileOpening(MemoryChallenges):
    """Challenges on which a suspension lands after the start computed its code, before the one step opens."""

    world: World

    async def start_challenge(self, opening: Opening) -> Opened:
        await self.world.suspend(opening.user_id)
        return await super().start_challenge(opening)


async def test_a_suspension_racing_a_start_opens_nothing_and_no_code_goes() -> None:
    """The opening step reads the status itself: the start fails, sends nothing and charges nothing."""
    state = memory_state()
    opening = SuspendedWhileOpening(state.memory)
    store = dataclasses.replace(state, challenges=opening)
    world = World(store)
    opening.world = world
    await world.enrol()
    with pytest.raises(UserNotActive):
        await world.start()
    assert world.sms.sent == []
    assert await store.challenges.pending_challenges("alice", world.clock.now()) == []
    assert store.units_taken(BudgetSubject.user("alice")) == 0


async def test_termination_revokes_every_user_of_the_client(world: World) -> None:
    """Each of the client's users is revoked and its challenges voided; another client's user is not."""
    challenge = await world.start(await world.enrol("alice"))
    await world.enrol("bob")
    await world.enrol("carol", client_id="other")
    revoked = await world.registry.terminate_client(TerminateRequest("acme", by("t-1")))
    assert revoked == 2
    statuses = [(await world.store.users.get_user(u)).status for u in ("alice", "bob", "carol")]
    assert statuses == [UserStatus.REVOKED, UserStatus.REVOKED, UserStatus.ACTIVE]
    assert (
        await world.store.challenges.get_challenge(challenge.challenge_id)
    ).status is ChallengeStatus.VOIDED


async def test_a_terminated_client_enrols_nobody(world: World) -> None:
    """After the termination, an enrolment for the client is refused and stores no user."""
    await world.enrol("alice")
    await world.registry.terminate_client(TerminateRequest("acme", by("t-1")))
    with pytest.raises(ClientTerminated):
        await world.enrol("dave")
    assert "dave" not in await world.store.clients.client_users("acme")


async def test_termination_again_finishes_an_interrupted_one(world: World) -> None:
    """A termination that died before revoking anyone is finished by the next call."""
    await world.enrol("alice")
    await world.store.clients.terminate_client(ClientTermination("acme", world.clock.now(), by("t-1")))
    assert (await world.store.users.get_user("alice")).status is UserStatus.ACTIVE
    assert await world.registry.terminate_client(TerminateRequest("acme", by("t-1"))) == 1
    assert (await world.store.users.get_user("alice")).status is UserStatus.REVOKED


async def test_an_id_listed_by_a_refused_enrolment_is_not_revoked(world: World) -> None:
    """An id enrolled by another client, listed here by an enrolment being refused (the refusal takes it
    back out, and the client it made: an outside audit), is left alone by a termination meanwhile, which
    finds no user of its own and terminates nothing (AP3: it terminated the client for good)."""
    await world.enrol("alice", client_id="other")
    with pytest.raises(UserAlreadyExists):
        await world.registry.enroll(EnrollRequest("alice", "acme", "+33698765432", "fr"))
    assert await world.store.clients.client_users("acme") == []
    with pytest.raises(ClientNotFound):
        await world.registry.terminate_client(TerminateRequest("acme", by("t-1")))
    await world.store.clients.enlist_user("acme", "alice", world.clock.now())  # listed, not yet taken back
    with pytest.raises(ClientNotFound):
        await world.registry.terminate_client(TerminateRequest("acme", by("t-2")))
    assert (await world.store.users.get_user("alice")).status is UserStatus.ACTIVE
