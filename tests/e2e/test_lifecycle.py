"""The user lifecycle over a real gRPC channel, real Redis and SoftHSM: suspend, reinstate, revoke, change
the secure number, terminate a client."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta

import grpc
import pytest
import redis.asyncio as aioredis
from google.rpc import error_details_pb2, status_pb2

from sesame.api.v1 import authentication_service_pb2 as auth_pb
from sesame.api.v1 import enrollment_service_pb2 as enrol_pb
from sesame.api.v1 import operation_pb2 as op_pb
from sesame.server.domain.lifecycle import ByOverride, PhoneChange, Provenance, StatusAction, StatusChange
from sesame.server.domain.model import RequestContext
from tests.e2e.conftest import Live
from tests.e2e.helpers import (
    CONTEXT,
    PHONE,
    enrolled,
    keys_written,
    precondition,
    sms_count,
    started,
    transfer,
    verify,
)
from tests.support.outbox import settled

pytestmark = [pytest.mark.e2e, pytest.mark.integration]

NEW_PHONE = "+33698765432"
LOGIN = op_pb.Operation(login=op_pb.Login())


def sent(live: Live) -> list[dict[str, str]]:
    """Every SMS the console gateway wrote, oldest first."""
    return [json.loads(line) for line in live.sms_file.read_text().splitlines()]


async def suspend(
    live: Live, user_id: str = "alice", request_id: str = "s-1"
) -> enrol_pb.SuspendUserResponse:
    response: enrol_pb.SuspendUserResponse = await live.enrol.SuspendUser(
        enrol_pb.SuspendUserRequest(user_id=user_id, request_id=request_id, actor="ops-42", reason="vol")
    )
    return response


async def change_phone(live: Live, **authority: object) -> enrol_pb.ChangeSecurePhoneResponse:
    request = enrol_pb.ChangeSecurePhoneRequest(
        user_id="alice",
        new_phone=NEW_PHONE,
        request_id="p-1",
        actor="online-banking",
        context=CONTEXT,
        **authority,
    )
    response: enrol_pb.ChangeSecurePhoneResponse = await live.enrol.ChangeSecurePhone(request)
    return response


async def override(live: Live, request_id: str = "o-1") -> enrol_pb.OverrideSecurePhoneResponse:
    request = enrol_pb.OverrideSecurePhoneRequest(
        user_id="alice",
        new_phone=NEW_PHONE,
        operator="agent-7",
        reason="identité vérifiée en agence",
        request_id=request_id,
        actor="back-office",
    )
    response: enrol_pb.OverrideSecurePhoneResponse = await live.enrol.OverrideSecurePhone(request)
    return response


async def verified_change_phone(live: Live, new_phone: str = NEW_PHONE) -> str:
    """A change_phone challenge for `new_phone`, its code read on the current number and verified."""
    operation = op_pb.Operation(change_phone=op_pb.ChangePhone(new_phone=new_phone))
    challenge_id, code = await started(live, "alice", operation)
    assert (await verify(live, challenge_id, code, operation)).result == auth_pb.VERIFY_RESULT_VERIFIED
    return challenge_id


async def test_suspension_voids_an_open_challenge(live: Live) -> None:
    """After SuspendUser, the right code of a challenge opened before answers VOIDED."""
    challenge_id, code = await started(live, await enrolled(live))
    suspended = await suspend(live)
    assert (suspended.user.status, suspended.voided_challenges) == (enrol_pb.USER_STATUS_SUSPENDED, 1)
    assert (await verify(live, challenge_id, code)).result == auth_pb.VERIFY_RESULT_VOIDED


async def suspension_undone(live: Live) -> None:
    """Reported lost, then found: each change's own step, the suspension's voiding never run (its worker died
    between them, decision 0010; the caller did not ask again before reinstating)."""
    for action, request_id in ((StatusAction.SUSPEND, "crashed-s"), (StatusAction.REINSTATE, "r-1")):
        change = StatusChange("alice", action, datetime.now(UTC), Provenance("ops", "vol", request_id))
        await live.store.users.change_user_status(change)


async def number_undone(live: Live) -> None:
    """The number overridden, then set back, each by its own step, the voiding never run."""
    for phone, request_id in ((NEW_PHONE, "crashed-p"), (PHONE, "p-2")):
        at = datetime.now(UTC)
        provenance = Provenance("back-office", "lost", request_id)
        change = PhoneChange("alice", phone, at, at, ByOverride("agent-7"), provenance, RequestContext())
        await live.store.users.change_secure_phone(change)


@pytest.mark.parametrize("undone", [suspension_undone, number_undone])
async def test_a_code_from_before_a_change_undone_stays_void(
    live: Live, undone: Callable[[Live], Awaitable[None]]
) -> None:
    """The code went to the phone before it was reported lost (or before the number was changed); the change
    is undone before its voiding step ran. The user is active on the same number again, but the change is
    counted since the challenge opened (decision 0056): the right code answers VOIDED, no resend is sent.
    Before, Verify and Resend compared only the user's status and number as they are now, and took it."""
    challenge_id, code = await started(live, await enrolled(live))
    await undone(live)
    live.clock.advance(timedelta(minutes=1))  # past the resends' spacing, within the code's lifetime
    with pytest.raises(grpc.aio.AioRpcError) as resending:
        await live.auth.ResendChallenge(
            auth_pb.ResendChallengeRequest(challenge_id=challenge_id, context=CONTEXT)
        )
    assert resending.value.code() is grpc.StatusCode.FAILED_PRECONDITION
    assert sms_count(live, challenge_id) == 1
    assert (await verify(live, challenge_id, code)).result == auth_pb.VERIFY_RESULT_VOIDED


@pytest.mark.parametrize("undone", [suspension_undone, number_undone])
async def test_a_code_opened_after_a_change_undone_verifies(
    live: Live, undone: Callable[[Live], Awaitable[None]]
) -> None:
    """The counts void what opened before the change, not the user's later challenges."""
    await enrolled(live)
    await undone(live)
    challenge_id, code = await started(live, "alice")
    assert (await verify(live, challenge_id, code)).result == auth_pb.VERIFY_RESULT_VERIFIED


async def test_a_retried_override_leaves_the_challenge_opened_on_the_new_number(live: Live) -> None:
    """OverrideSecurePhone voids the code sent to the old number; the user then starts a challenge on the new
    one, and the override is retried (same request id, its answer lost, say): the retry voids nothing and
    the new code verifies. Before, the retry's voiding reached every pending challenge of the user, the new
    one too, and counted it in `voided_challenges`."""
    old_id, _ = await started(live, await enrolled(live))
    changed = await override(live)
    assert (changed.voided_challenges, changed.old_phone_notified) == (1, True)
    challenge_id, code = await started(live, "alice", LOGIN)
    assert sent(live)[-1]["to"] == NEW_PHONE
    retried = await override(live)
    assert (retried.voided_challenges, retried.old_phone_notified) == (0, False)
    assert (await verify(live, challenge_id, code, LOGIN)).result == auth_pb.VERIFY_RESULT_VERIFIED
    voided = [e for e in await live.store.journal.challenge_journal(old_id) if e["event"] == "challenge.void"]
    assert len(voided) == 1


async def test_a_suspension_retried_once_reinstated_leaves_the_new_challenge(live: Live) -> None:
    """Suspended, reinstated, a new challenge, then the suspension retried (same request id): the retry
    answers the user ACTIVE, voids nothing and the new code verifies (a retry never undoes a later change)."""
    await enrolled(live)
    await suspend(live)
    await live.enrol.ReinstateUser(
        enrol_pb.ReinstateUserRequest(user_id="alice", request_id="r-1", actor="ops-42")
    )
    challenge_id, code = await started(live, "alice")
    retried = await suspend(live)
    assert (retried.user.status, retried.voided_challenges) == (enrol_pb.USER_STATUS_ACTIVE, 0)
    assert (await verify(live, challenge_id, code)).result == auth_pb.VERIFY_RESULT_VERIFIED


async def test_reinstatement_lets_a_new_challenge_through(live: Live) -> None:
    """A suspended user gets no code; once reinstated, a new challenge is sent and verifies."""
    await enrolled(live)
    await suspend(live)
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await started(live, "alice")
    assert precondition(caught.value) == "USER_STATUS"
    await live.enrol.ReinstateUser(
        enrol_pb.ReinstateUserRequest(user_id="alice", request_id="r-1", actor="ops-42")
    )
    challenge_id, code = await started(live, "alice")
    assert (await verify(live, challenge_id, code)).result == auth_pb.VERIFY_RESULT_VERIFIED


async def test_revocation_is_final(live: Live) -> None:
    """A revoked user cannot be reinstated nor enrolled again, even with the same number."""
    await enrolled(live)
    revoked = await live.enrol.RevokeUser(
        enrol_pb.RevokeUserRequest(user_id="alice", request_id="v-1", actor="ops")
    )
    assert revoked.user.status == enrol_pb.USER_STATUS_REVOKED
    with pytest.raises(grpc.aio.AioRpcError) as reinstating:
        await live.enrol.ReinstateUser(
            enrol_pb.ReinstateUserRequest(user_id="alice", request_id="r-1", actor="ops")
        )
    assert precondition(reinstating.value) == "USER_STATUS"
    with pytest.raises(grpc.aio.AioRpcError) as enrolling:
        await enrolled(live)
    assert precondition(enrolling.value) == "USER_STATUS"


async def test_change_by_verified_challenge_moves_codes_and_cools_payments(live: Live) -> None:
    """The next code goes to the new number, the old one got a notice, transfers wait, login does not."""
    await enrolled(live)
    changed = await change_phone(live, verified_challenge_id=await verified_change_phone(live))
    assert (changed.user.masked_phone, changed.old_phone_notified) == ("+33*******32", True)
    await settled(live.store)  # the notice was queued by the change: the dispatcher sends it (0041)
    notice = sent(live)[-1]
    assert (notice["to"], notice["challenge_id"]) == (PHONE, "")
    assert "numéro sécurisé a été changé pour le +33*******32" in notice["text"]
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await started(live, "alice", transfer())
    assert precondition(caught.value) == "PHONE_COOLING"
    retry = error_details_pb2.RetryInfo()
    raw = dict(caught.value.trailing_metadata() or ())["grpc-status-details-bin"]
    assert status_pb2.Status.FromString(raw).details[1].Unpack(retry)
    assert 71 * 3600 < retry.retry_delay.seconds <= 72 * 3600
    await started(live, "alice", LOGIN)
    assert sent(live)[-1]["to"] == NEW_PHONE


async def test_get_user_shows_the_change_and_the_cooling(live: Live) -> None:
    """GetUser shows when the number changed and until when payments wait."""
    await enrolled(live)
    await change_phone(live, verified_challenge_id=await verified_change_phone(live))
    user = (await live.enrol.GetUser(enrol_pb.GetUserRequest(user_id="alice"))).user
    changed_at = user.phone_changed_at.ToDatetime(tzinfo=UTC)
    assert abs(changed_at - datetime.now(UTC)) < timedelta(minutes=1)
    assert user.cooling_until.ToDatetime(tzinfo=UTC) - changed_at == timedelta(hours=72)


async def test_a_challenge_for_another_number_is_refused(live: Live) -> None:
    """A code verified for +33611111111 does not change the number to +33698765432."""
    await enrolled(live)
    challenge_id = await verified_change_phone(live, "+33611111111")
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await change_phone(live, verified_challenge_id=challenge_id)
    assert precondition(caught.value) == "CHALLENGE_MISMATCH"
    user = (await live.enrol.GetUser(enrol_pb.GetUserRequest(user_id="alice"))).user
    assert user.masked_phone == "+33*******78"


async def test_a_challenge_authorises_one_change(live: Live) -> None:
    """The same verified challenge under a new request id is CHALLENGE_CONSUMED."""
    await enrolled(live)
    challenge_id = await verified_change_phone(live)
    await change_phone(live, verified_challenge_id=challenge_id)
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await live.enrol.ChangeSecurePhone(
            enrol_pb.ChangeSecurePhoneRequest(
                user_id="alice",
                new_phone=NEW_PHONE,
                verified_challenge_id=challenge_id,
                request_id="p-2",
                actor="a",
            )
        )
    assert precondition(caught.value) == "CHALLENGE_CONSUMED"


async def test_the_back_office_overrides_for_a_suspended_user(live: Live) -> None:
    """After a lost phone, an override with operator and reason gives the suspended user its new number."""
    await enrolled(live)
    await suspend(live)
    changed = await live.enrol.OverrideSecurePhone(
        enrol_pb.OverrideSecurePhoneRequest(
            user_id="alice",
            new_phone=NEW_PHONE,
            operator="agent-7",
            reason="identité vérifiée en agence",
            request_id="p-1",
            actor="back-office",
        )
    )
    assert (changed.user.status, changed.user.masked_phone) == (
        enrol_pb.USER_STATUS_SUSPENDED,
        "+33*******32",
    )
    journal = await live.store.users.user_journal("alice")
    entry = next(e for e in journal if e["event"] == "user.change_phone")
    assert (entry["method"], entry["operator"], entry["reason"]) == (
        "override",
        "agent-7",
        "identité vérifiée en agence",
    )


async def test_termination_revokes_every_user_of_the_client(live: Live) -> None:
    """TerminateClient revokes each user the client designated, and refuses its next enrolment."""
    for user_id in ("alice", "bob"):
        await enrolled(live, user_id)
    request = enrol_pb.TerminateClientRequest(
        client_id="acme", request_id="t-1", actor="ops", reason="résiliation"
    )
    assert (await live.enrol.TerminateClient(request)).revoked_users == 2
    for user_id in ("alice", "bob"):
        user = (await live.enrol.GetUser(enrol_pb.GetUserRequest(user_id=user_id))).user
        assert user.status == enrol_pb.USER_STATUS_REVOKED
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await enrolled(live, "carol")
    assert precondition(caught.value) == "CLIENT_STATUS"


async def test_a_change_retried_is_counted_once(live: Live) -> None:
    """Found by an outside audit: SuspendUser retried (its request id, or another), RevokeUser and
    TerminateClient again each counted one more `sesame_user_changes_total`, and an alert on a rise of
    suspensions fired for one back-office job retrying. Each change counts once, when made."""
    await enrolled(live, "alice")
    for request_id in ("s-1", "s-1", "s-2"):
        await live.enrol.SuspendUser(
            enrol_pb.SuspendUserRequest(user_id="alice", request_id=request_id, actor="ops", reason="vol")
        )
    for request_id in ("t-1", "t-2"):
        await live.enrol.TerminateClient(
            enrol_pb.TerminateClientRequest(
                client_id="acme", request_id=request_id, actor="ops", reason="fin"
            )
        )
    registry = live.metrics.registry
    for change, once in (("suspend", 1), ("terminate_client", 1), ("revoke", 1)):
        assert registry.get_sample_value("sesame_user_changes_total", {"change": change}) == once, change


async def test_an_enrolment_refused_as_another_clients_user_leaves_nothing(
    live: Live, redis_client: aioredis.Redis
) -> None:
    """Found from outside (AJ2): EnrollUser(alice, other client) refused ALREADY_EXISTS left that client's
    record and alice in its index, for good (2,000 keys for 1,000 refused calls), and TerminateClient of a
    client nobody enrolled for answered OK and closed it for ever."""
    await enrolled(live, "alice")
    before = await keys_written(redis_client)
    for client_id in ("other-1", "other-2"):
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await live.enrol.EnrollUser(
                enrol_pb.EnrollUserRequest(user_id="alice", client_id=client_id, secure_phone=PHONE)
            )
        assert refused.value.code() is grpc.StatusCode.ALREADY_EXISTS
    assert await keys_written(redis_client) == before
    with pytest.raises(grpc.aio.AioRpcError) as unknown:
        await live.enrol.TerminateClient(
            enrol_pb.TerminateClientRequest(client_id="other-1", request_id="t-1", actor="ops", reason="x")
        )
    assert unknown.value.code() is grpc.StatusCode.NOT_FOUND
    assert (await live.enrol.GetUser(enrol_pb.GetUserRequest(user_id="alice"))).user.client_id == "acme"


async def test_a_termination_landing_inside_a_refused_enrolment_terminates_nothing(
    live: Live, redis_client: aioredis.Redis
) -> None:
    """Found from outside (AP3): TerminateClient of an unknown client, landing while an enrolment of another
    client's user under it was being refused (its id listed, not yet taken out), answered OK and left that
    client terminated with no user, for good: the company's first real enrolment was refused. The state in
    between is made here as the refused enrolment makes it (its client created, the id listed)."""
    await enrolled(live, "alice")
    await live.store.clients.enlist_user("newco", "alice", datetime.now(UTC))
    with pytest.raises(grpc.aio.AioRpcError) as unknown:
        await live.enrol.TerminateClient(
            enrol_pb.TerminateClientRequest(client_id="newco", request_id="t-1", actor="ops", reason="x")
        )
    assert unknown.value.code() is grpc.StatusCode.NOT_FOUND
    await live.store.clients.delist_user("newco", "alice")  # the refused enrolment's end
    await live.enrol.EnrollUser(
        enrol_pb.EnrollUserRequest(user_id="bob", client_id="newco", secure_phone=PHONE)
    )
    assert (await live.enrol.GetUser(enrol_pb.GetUserRequest(user_id="bob"))).user.client_id == "newco"


async def test_no_user_enrolled_during_a_termination_stays_active(live: Live) -> None:
    """Found from outside (AS1): TerminateClient read the client's users before terminating it (to answer
    NOT_FOUND for a client with none of its own), so a user enrolled in between stayed ACTIVE under a
    terminated client (50 in 25 raced rounds). Each enrolment racing a termination is refused, or its user
    revoked."""
    for round_ in range(10):
        client_id = f"corp-{round_}"
        await live.enrol.EnrollUser(
            enrol_pb.EnrollUserRequest(user_id=f"first-{round_}", client_id=client_id, secure_phone=PHONE)
        )
        users = [f"u-{round_}-{n}" for n in range(5)]
        enrolments = [
            live.enrol.EnrollUser(
                enrol_pb.EnrollUserRequest(user_id=user_id, client_id=client_id, secure_phone=PHONE)
            )
            for user_id in users
        ]
        termination = live.enrol.TerminateClient(
            enrol_pb.TerminateClientRequest(client_id=client_id, request_id="t", actor="ops", reason="fin")
        )
        await asyncio.gather(*enrolments[:2], termination, *enrolments[2:], return_exceptions=True)
        statuses = await asyncio.gather(
            *(live.enrol.GetUser(enrol_pb.GetUserRequest(user_id=user_id)) for user_id in users),
            return_exceptions=True,
        )
        for user_id, found in zip(users, statuses, strict=True):
            if isinstance(found, grpc.aio.AioRpcError):  # refused: never enrolled
                assert found.code() is grpc.StatusCode.NOT_FOUND, user_id
            else:
                assert found.user.status == enrol_pb.USER_STATUS_REVOKED, user_id
