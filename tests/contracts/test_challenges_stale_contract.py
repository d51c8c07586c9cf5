"""A suspension, a revocation or a change of number voids the user's pending challenges in a step after its
own. Until that step runs (or if it never does), the verification and resend scripts read the user's status
and secure number themselves, and the changes counted since the challenge opened (decision 0056): no code of
the old state is taken, and none is sent again, even once the change is undone (fake and Redis)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import timedelta

import pytest

from sesame.clients.redis_store import RedisState
from sesame.server.domain.errors import ChallengeClosed
from sesame.server.domain.lifecycle import StatusAction, StatusChange
from sesame.server.domain.model import ChallengeStatus, LockoutPolicy, VerificationAttempt, VerifyResult
from sesame.server.domain.operation import digest
from tests import factories
from tests.contracts.test_lifecycle_contract import CONTEXT, NOW, PHONE, by, phone_change
from tests.fakes.state import MemoryState

Store = MemoryState | RedisState


async def suspended(store: Store) -> None:
    await store.users.change_user_status(StatusChange("u-1", StatusAction.SUSPEND, NOW, by("s-1")))


async def revoked(store: Store) -> None:
    await store.users.change_user_status(StatusChange("u-1", StatusAction.REVOKE, NOW, by("v-1")))


async def number_changed(store: Store) -> None:
    await store.users.change_secure_phone(phone_change("p-1"))


async def suspended_and_reinstated(store: Store) -> None:
    """Reported lost, then found again: the code went to the phone while it was out of the user's hands."""
    await suspended(store)
    await store.users.change_user_status(StatusChange("u-1", StatusAction.REINSTATE, NOW, by("r-2")))


async def number_changed_and_back(store: Store) -> None:
    await number_changed(store)
    await store.users.change_secure_phone(phone_change("p-2", new_phone=PHONE))


CHANGES = pytest.mark.parametrize(
    "change", [suspended, revoked, number_changed, suspended_and_reinstated, number_changed_and_back]
)


@CHANGES
async def test_a_right_code_after_the_change_voids_the_challenge(
    store: Store, change: Callable[[Store], Awaitable[None]]
) -> None:
    """The right code of a challenge the voiding has not reached yet answers VOIDED and closes it."""
    challenge = factories.a_challenge(NOW, expires_at=NOW + timedelta(days=1))
    await factories.its_user_enrolled(store, challenge)
    await store.challenges.open_challenge(challenge, CONTEXT)
    await change(store)
    right = VerificationAttempt(challenge.challenge_id, digest(challenge.operation), True, NOW, CONTEXT)
    outcome = await store.challenges.record_verification(right, LockoutPolicy())
    assert outcome.result is VerifyResult.VOIDED
    assert (await store.challenges.get_challenge(challenge.challenge_id)).status is ChallengeStatus.VOIDED


@CHANGES
async def test_no_resend_after_the_change(store: Store, change: Callable[[Store], Awaitable[None]]) -> None:
    """A resend of such a challenge is refused as closed and takes nothing."""
    challenge = factories.a_challenge(NOW, expires_at=NOW + timedelta(days=1))
    await factories.its_user_enrolled(store, challenge)
    await store.challenges.open_challenge(challenge, CONTEXT)
    await change(store)
    with pytest.raises(ChallengeClosed):
        await store.challenges.record_resend(challenge.challenge_id, NOW + timedelta(minutes=1), CONTEXT)
    assert (await store.challenges.get_challenge(challenge.challenge_id)).resends == 0
