"""A code queued before its user was suspended, revoked or given another number is never handed to the
gateway (decision 0054): the outbox's take reads the user beside the challenge and withholds it, voided,
dead-lettered with the reason, journaled, its held send units given back. Through the real server, Redis and
SoftHSM: the first server runs no dispatch loop (Start queues, the change is made), then a second worker's
dispatcher takes the outbox; the SMS handed over are the console gateway's file."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta

import grpc
import pytest
import redis.asyncio as aioredis

from sesame.api.v1 import authentication_service_pb2 as auth_pb
from sesame.api.v1 import enrollment_service_pb2 as enrol_pb
from sesame.hsm.pkcs11 import Pkcs11KeyStore
from sesame.server.dispatch_loop import DispatchSettings
from sesame.server.domain.budgets import SendBudget
from sesame.server.domain.challenges import ChallengePolicy
from sesame.server.domain.lifecycle import (
    ByOverride,
    PhoneChange,
    Provenance,
    StatusAction,
    StatusChange,
)
from sesame.server.domain.model import ChallengeStatus, DeliveryState, RequestContext
from tests.e2e.conftest import Live
from tests.e2e.helpers import PHONE, enrolled, verify
from tests.e2e.test_send_holds import CALLER, EVERYONE, NUMBER, code_sms, held_units, spent_units, start
from tests.support.outbox import settled
from tests.support.wired_server import start_wired

pytestmark = [pytest.mark.e2e, pytest.mark.integration]

NEW_PHONE = "+33698765432"
QUEUE_ONLY = DispatchSettings(loops=0)  # the first server queues; nothing is taken until the second starts

Change = Callable[[Live], Awaitable[None]]


async def suspend_rpc(live: Live) -> None:
    await live.enrol.SuspendUser(
        enrol_pb.SuspendUserRequest(user_id="alice", request_id="s-1", actor="ops", reason="vol")
    )


async def revoke_rpc(live: Live) -> None:
    await live.enrol.RevokeUser(enrol_pb.RevokeUserRequest(user_id="alice", request_id="v-1", actor="ops"))


async def override_rpc(live: Live) -> None:
    await live.enrol.OverrideSecurePhone(
        enrol_pb.OverrideSecurePhoneRequest(
            user_id="alice",
            new_phone=NEW_PHONE,
            operator="agent-7",
            reason="phone lost",
            request_id="p-1",
            actor="back-office",
        )
    )


def _provenance() -> Provenance:
    return Provenance("ops", "vol", "crashed-1")


async def suspend_step_only(live: Live) -> None:
    """The Suspend's own step, its voiding step never run (its worker died between them: decision 0010)."""
    change = StatusChange("alice", StatusAction.SUSPEND, datetime.now(UTC), _provenance())
    await live.store.users.change_user_status(change)


async def revoke_step_only(live: Live) -> None:
    change = StatusChange("alice", StatusAction.REVOKE, datetime.now(UTC), _provenance())
    await live.store.users.change_user_status(change)


async def override_step_only(live: Live) -> None:
    at = datetime.now(UTC)
    change = PhoneChange("alice", NEW_PHONE, at, at, ByOverride("agent-7"), _provenance(), RequestContext())
    await live.store.users.change_secure_phone(change)


CHANGES = [
    pytest.param(suspend_rpc, "user_suspended", id="suspend"),
    pytest.param(revoke_rpc, "user_revoked", id="revoke"),
    pytest.param(override_rpc, "phone_changed", id="override"),
    pytest.param(suspend_step_only, "user_suspended", id="suspend-before-its-voiding"),
    pytest.param(revoke_step_only, "user_revoked", id="revoke-before-its-voiding"),
    pytest.param(override_step_only, "phone_changed", id="override-before-its-voiding"),
]


async def user_units(client: aioredis.Redis, live: Live) -> int:
    """Units of alice's own send budget (ZCARD of its sorted set, in her place)."""
    return int(await client.zcard(live.store.keys.send_budget("user", "alice")))


async def dead_letters(live: Live) -> list[tuple[str, str]]:
    outbox = live.store.outbox()
    try:
        letters = await outbox.dead_letters().recent(10)
    finally:
        await outbox.close()
    return sorted((letter.challenge_id, letter.reason) for letter in letters if not letter.notice)


async def dispatched_by_another_worker(live: Live, keystore: Pkcs11KeyStore) -> None:
    """Start a worker whose dispatcher takes what the outbox holds, and wait until all of it is settled."""
    wired = await start_wired(keystore, live.store, live.sms_file)
    try:
        await settled(live.store)
    finally:
        await wired.server.stop(0)


@pytest.mark.parametrize("dispatch", [QUEUE_ONLY])
@pytest.mark.parametrize(("change", "reason"), CHANGES)
async def test_a_code_queued_before_a_lifecycle_change_is_never_handed_over(
    live: Live, keystore: Pkcs11KeyStore, redis_client: aioredis.Redis, change: Change, reason: str
) -> None:
    """Start queued the SMS; the user is then suspended (loss or theft), revoked, or given another number,
    through the RPC (its voiding step ran) or by the change's step alone (its worker died before voiding);
    then a dispatcher takes the outbox: nothing handed to the gateway (no code to the old number), one dead
    letter with the reason, the challenge voided and its dead letter journaled (no number in the journal),
    the held units given back (none spent), and Verify refuses the challenge."""
    await enrolled(live)
    opened = await live.auth.StartChallenge(start())
    await change(live)
    await dispatched_by_another_worker(live, keystore)
    assert code_sms(live.sms_file) == []
    assert await dead_letters(live) == [(opened.challenge_id, reason)]
    challenge = await live.store.challenges.get_challenge(opened.challenge_id)
    assert challenge.status is ChallengeStatus.VOIDED
    assert challenge.delivery is DeliveryState.FAILED
    journal = await live.store.journal.challenge_journal(opened.challenge_id)
    (letter,) = [e for e in journal if e["event"] == "challenge.dead_letter"]
    assert (letter["reason"], letter["outcome"]) == (reason, "failed")
    assert all(PHONE[1:] not in v and NEW_PHONE[1:] not in v for e in journal for v in e.values())
    for subject in (NUMBER, CALLER, EVERYONE):
        assert await held_units(redis_client, live, subject) == 0
        assert await spent_units(redis_client, live, subject) == 0
    assert await user_units(redis_client, live) == 0  # the user's unit given back too (decision 0101)
    refused = await verify(live, opened.challenge_id, "000000")
    assert refused.result == auth_pb.VERIFY_RESULT_VOIDED


@pytest.mark.parametrize("policy", [ChallengePolicy(resend_spacing=timedelta(0))])
@pytest.mark.parametrize("dispatch", [QUEUE_ONLY])
async def test_a_resend_queued_before_a_suspension_is_never_handed_over(
    live: Live, keystore: Pkcs11KeyStore, redis_client: aioredis.Redis
) -> None:
    """Start and a Resend both queued, then the phone reported stolen (the Suspend's step only): neither
    SMS goes; both are dead-lettered `user_suspended`, and the resend's held units are given back too."""
    await enrolled(live)
    opened = await live.auth.StartChallenge(start())
    await live.auth.ResendChallenge(auth_pb.ResendChallengeRequest(challenge_id=opened.challenge_id))
    await suspend_step_only(live)
    await dispatched_by_another_worker(live, keystore)
    assert code_sms(live.sms_file) == []
    assert await dead_letters(live) == [(opened.challenge_id, "user_suspended")] * 2
    for subject in (NUMBER, CALLER, EVERYONE):
        assert await held_units(redis_client, live, subject) == 0
        assert await spent_units(redis_client, live, subject) == 0
    assert await user_units(redis_client, live) == 0
    with pytest.raises(grpc.aio.AioRpcError) as caught:  # closed: no third SMS is queued
        await live.auth.ResendChallenge(auth_pb.ResendChallengeRequest(challenge_id=opened.challenge_id))
    assert caught.value.code() is grpc.StatusCode.FAILED_PRECONDITION


@pytest.mark.parametrize("policy", [ChallengePolicy(send_budget=SendBudget(per_user=1))])
@pytest.mark.parametrize("dispatch", [QUEUE_ONLY])
async def test_a_start_withheld_after_a_suspension_leaves_the_users_budget_as_before(
    live: Live, keystore: Pkcs11KeyStore, redis_client: aioredis.Redis
) -> None:
    """A budget of one code an hour: Start took it, SuspendUser came before the dispatch, and the code was
    withheld, never handed over. "A unit is spent if and only if an SMS is handed to the gateway": once
    reinstated, the user's next Start opens (not RESOURCE_EXHAUSTED) and its code goes (decision 0101)."""
    await enrolled(live)
    withheld = await live.auth.StartChallenge(start())
    await suspend_rpc(live)
    await dispatched_by_another_worker(live, keystore)
    assert await dead_letters(live) == [(withheld.challenge_id, "user_suspended")]
    assert await user_units(redis_client, live) == 0
    await live.enrol.ReinstateUser(
        enrol_pb.ReinstateUserRequest(user_id="alice", request_id="r-1", actor="ops", reason="found")
    )
    sent = await live.auth.StartChallenge(start())
    await dispatched_by_another_worker(live, keystore)
    assert code_sms(live.sms_file) == [sent.challenge_id]
    assert await user_units(redis_client, live) == 1


async def suspended_and_reinstated(live: Live, at: datetime) -> None:
    """Suspended and reinstated by the steps alone on a host whose clock reads `at` (a ms between them)."""
    for action, when in (
        (StatusAction.SUSPEND, at),
        (StatusAction.REINSTATE, at + timedelta(milliseconds=1)),
    ):
        provenance = Provenance("ops", "vol", f"skewed-{action.value}-{at.timestamp()}")
        await live.store.users.change_user_status(StatusChange("alice", action, when, provenance))


@pytest.mark.parametrize("dispatch", [QUEUE_ONLY])
async def test_since_the_challenge_opened_is_the_order_of_the_steps_not_the_hosts_clocks(
    live: Live, keystore: Pkcs11KeyStore
) -> None:
    """The clocks disagree (decision 0056). A suspension and reinstatement made before a Start by a host a
    minute ahead: the Start's code is handed over all the same. Made after a Start by a host a minute
    behind: its code is withheld. Compared by time (decision 0054), the first was withheld and the second
    sent to the phone that was reported lost meanwhile."""
    await enrolled(live)
    await suspended_and_reinstated(live, datetime.now(UTC) + timedelta(minutes=1))
    after = await live.auth.StartChallenge(start())
    await dispatched_by_another_worker(live, keystore)
    assert code_sms(live.sms_file) == [after.challenge_id]
    assert await dead_letters(live) == []
    before = await live.auth.StartChallenge(start())
    await suspended_and_reinstated(live, datetime.now(UTC) - timedelta(minutes=1))
    await dispatched_by_another_worker(live, keystore)
    assert code_sms(live.sms_file) == [after.challenge_id]
    assert await dead_letters(live) == [(before.challenge_id, "user_suspended")]
    assert (await live.store.challenges.get_challenge(after.challenge_id)).delivery is DeliveryState.SENT
