"""The skeleton's flows over a real gRPC channel, real Redis and SoftHSM."""

from __future__ import annotations

import asyncio
import json
import logging
from datetime import UTC, datetime, timedelta

import grpc
import pytest
from google.protobuf import any_pb2
from google.rpc import error_details_pb2, status_pb2

from sesame.api.v1 import authentication_service_pb2 as auth_pb
from sesame.api.v1 import enrollment_service_pb2 as enrol_pb
from sesame.api.v1 import operation_pb2 as op_pb
from sesame.server.domain.budgets import SendBudget
from sesame.server.domain.challenges import ChallengePolicy
from tests.e2e.conftest import Live
from tests.e2e.helpers import CONTEXT, PHONE, enrolled, started, transfer, verify, wrong
from tests.support.outbox import settled

pytestmark = [pytest.mark.e2e, pytest.mark.integration]


def rich_details(error: grpc.aio.AioRpcError) -> list[any_pb2.Any]:
    """The google.rpc details an error carries in its trailing metadata."""
    raw = dict(error.trailing_metadata() or ())["grpc-status-details-bin"]
    return list(status_pb2.Status.FromString(raw).details)


async def test_right_code_verifies_once(live: Live) -> None:
    """The code from the SMS verifies the operation; the same code again is ALREADY_USED."""
    challenge_id, code = await started(live, await enrolled(live))
    first = await verify(live, challenge_id, code)
    assert first.result == auth_pb.VERIFY_RESULT_VERIFIED
    replay = await verify(live, challenge_id, code)
    assert replay.result == auth_pb.VERIFY_RESULT_ALREADY_USED


async def test_wrong_codes_count_down_then_lock(live: Live) -> None:
    """Three wrong codes spend the attempts; then even the right code is LOCKED."""
    challenge_id, code = await started(live, await enrolled(live))
    lefts = [(await verify(live, challenge_id, wrong(code))).attempts_left for _ in range(3)]
    assert lefts == [2, 1, 0]
    after = await verify(live, challenge_id, code)
    assert after.result == auth_pb.VERIFY_RESULT_LOCKED


async def test_changed_amount_voids_the_code(live: Live) -> None:
    """The right code for another amount is OPERATION_MISMATCH, and the code is void from then on."""
    challenge_id, code = await started(live, await enrolled(live))
    mismatch = await verify(live, challenge_id, code, transfer(amount_minor=125001))
    assert mismatch.result == auth_pb.VERIFY_RESULT_OPERATION_MISMATCH
    again = await verify(live, challenge_id, code)
    assert again.result == auth_pb.VERIFY_RESULT_VOIDED


async def test_changed_payee_voids_the_code(live: Live) -> None:
    """Another IBAN for the same name is a mismatch too."""
    challenge_id, code = await started(live, await enrolled(live))
    other = transfer(iban="DE89370400440532013000")
    assert (await verify(live, challenge_id, code, other)).result == auth_pb.VERIFY_RESULT_OPERATION_MISMATCH


async def test_sms_names_the_operation_and_goes_to_the_secure_phone(live: Live) -> None:
    """The console SMS goes to the enrolled number with the amount, payee and warning."""
    challenge_id, _ = await started(live, await enrolled(live))
    message = json.loads(live.sms_file.read_text().splitlines()[-1])
    assert message["to"] == PHONE
    assert message["challenge_id"] == challenge_id
    assert 'ENVOYER 1 250,00 EUR à "Jean DUPONT"' in message["text"]
    assert "ne le demande jamais" in message["text"]


async def test_start_answers_masked_phone_and_expiry(live: Live) -> None:
    """The response shows only the ends of the number, the expiry and the delivery state."""
    user_id = await enrolled(live)
    reply = await live.auth.StartChallenge(
        auth_pb.StartChallengeRequest(user_id=user_id, operation=transfer(), context=CONTEXT)
    )
    assert reply.masked_phone == "+33*******78"
    assert reply.delivery_state == auth_pb.DELIVERY_STATE_QUEUED
    assert reply.expires_at.seconds > 0
    await settled(live.store)
    described = await live.auth.GetChallenge(auth_pb.GetChallengeRequest(challenge_id=reply.challenge_id))
    assert described.challenge.delivery_state == auth_pb.DELIVERY_STATE_SENT


async def test_cancel_voids_and_get_describes(live: Live) -> None:
    """A cancelled challenge refuses its code and reads CANCELLED."""
    challenge_id, code = await started(live, await enrolled(live))
    cancelled = await live.auth.CancelChallenge(auth_pb.CancelChallengeRequest(challenge_id=challenge_id))
    assert cancelled.challenge.status == auth_pb.CHALLENGE_STATUS_CANCELLED
    assert (await verify(live, challenge_id, code)).result == auth_pb.VERIFY_RESULT_VOIDED
    described = await live.auth.GetChallenge(auth_pb.GetChallengeRequest(challenge_id=challenge_id))
    assert described.challenge.status == auth_pb.CHALLENGE_STATUS_CANCELLED
    assert described.challenge.operation == transfer()


async def test_a_closed_challenge_has_no_attempts_or_resends_left(live: Live) -> None:
    """An open challenge shows its attempts and resends left; once verified it has none of either."""
    challenge_id, code = await started(live, await enrolled(live))
    request = auth_pb.GetChallengeRequest(challenge_id=challenge_id)
    opened = (await live.auth.GetChallenge(request)).challenge
    assert (opened.attempts_left, opened.resends_left) == (3, 3)
    await verify(live, challenge_id, code)
    spent = (await live.auth.GetChallenge(request)).challenge
    assert (spent.status, spent.attempts_left, spent.resends_left) == (
        auth_pb.CHALLENGE_STATUS_VERIFIED,
        0,
        0,
    )


async def test_cancel_twice_is_failed_precondition(live: Live) -> None:
    """Only an open challenge can be cancelled."""
    challenge_id, _ = await started(live, await enrolled(live))
    await live.auth.CancelChallenge(auth_pb.CancelChallengeRequest(challenge_id=challenge_id))
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await live.auth.CancelChallenge(auth_pb.CancelChallengeRequest(challenge_id=challenge_id))
    assert caught.value.code() is grpc.StatusCode.FAILED_PRECONDITION


@pytest.mark.parametrize("policy", [ChallengePolicy(resend_spacing=timedelta(0))])
async def test_resend_sends_the_same_code(live: Live) -> None:
    """A resend delivers the very same code and resets no attempt counter."""
    challenge_id, code = await started(live, await enrolled(live))
    await verify(live, challenge_id, wrong(code))
    resent = await live.auth.ResendChallenge(
        auth_pb.ResendChallengeRequest(challenge_id=challenge_id, context=CONTEXT)
    )
    assert resent.resends_left == 2
    await settled(live.store)
    texts = [json.loads(line)["text"] for line in live.sms_file.read_text().splitlines()]
    assert len(texts) == 2
    assert f"code {code} " in texts[1]
    assert (await verify(live, challenge_id, wrong(code))).attempts_left == 1


@pytest.mark.parametrize("policy", [ChallengePolicy(resend_spacing=timedelta(0))])
async def test_a_resend_says_the_minutes_left_never_more(live: Live) -> None:
    """The first SMS of a 5-minute code says 5 min; a resend with 3 min 40 s left says 3 (it said 4,
    rounding: 20 s more than remained)."""
    challenge_id, _ = await started(live, await enrolled(live))
    live.clock.advance(timedelta(seconds=80))
    request = auth_pb.ResendChallengeRequest(challenge_id=challenge_id, context=CONTEXT)
    await live.auth.ResendChallenge(request)
    await settled(live.store)
    texts = [json.loads(line)["text"] for line in live.sms_file.read_text().splitlines()]
    assert ["Valable 5 min." in texts[0], "Valable 3 min." in texts[1]] == [True, True]


async def test_resend_too_soon_is_resource_exhausted_with_retry_info(live: Live) -> None:
    """An immediate resend is RESOURCE_EXHAUSTED, says how long to wait, and sends nothing."""
    challenge_id, _ = await started(live, await enrolled(live))
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await live.auth.ResendChallenge(auth_pb.ResendChallengeRequest(challenge_id=challenge_id))
    assert caught.value.code() is grpc.StatusCode.RESOURCE_EXHAUSTED
    details = rich_details(caught.value)
    retry = error_details_pb2.RetryInfo()
    assert details[1].Unpack(retry)
    assert 29 <= retry.retry_delay.seconds <= 30
    quota = error_details_pb2.QuotaFailure()
    assert details[0].Unpack(quota)
    assert quota.violations[0].subject == f"challenge:{challenge_id}"
    assert len(live.sms_file.read_text().splitlines()) == 1


@pytest.mark.parametrize("policy", [ChallengePolicy(max_resends=1, resend_spacing=timedelta(0))])
async def test_resends_run_out(live: Live) -> None:
    """Past the last resend the refusal carries no RetryInfo: only a new challenge helps."""
    challenge_id, _ = await started(live, await enrolled(live))
    request = auth_pb.ResendChallengeRequest(challenge_id=challenge_id)
    assert (await live.auth.ResendChallenge(request)).resends_left == 0
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await live.auth.ResendChallenge(request)
    assert caught.value.code() is grpc.StatusCode.RESOURCE_EXHAUSTED
    assert [detail.TypeName() for detail in rich_details(caught.value)] == ["google.rpc.QuotaFailure"]
    await settled(live.store)
    assert len(live.sms_file.read_text().splitlines()) == 2


async def test_login_and_beneficiary_and_change_phone_verify(live: Live) -> None:
    """Every operation type round-trips: start, read the SMS, verify."""
    user_id = await enrolled(live)
    payee = op_pb.Payee(name="Zoé Durand", iban="DE89370400440532013000")
    for operation in (
        op_pb.Operation(login=op_pb.Login()),
        op_pb.Operation(add_beneficiary=op_pb.AddBeneficiary(payee=payee)),
        op_pb.Operation(change_phone=op_pb.ChangePhone(new_phone="+33698765432")),
    ):
        challenge_id, code = await started(live, user_id, operation)
        assert (await verify(live, challenge_id, code, operation)).result == auth_pb.VERIFY_RESULT_VERIFIED


@pytest.mark.parametrize(("phone", "locale"), [("+33698765432", ""), (PHONE, "en")])
async def test_enrol_is_idempotent_and_conflicts_are_refused(live: Live, phone: str, locale: str) -> None:
    """The same enrolment twice is fine (the default locale named or not); another number or another SMS
    language under the same id is ALREADY_EXISTS (another locale was answered OK, its language silently
    kept: an outside audit's)."""
    await enrolled(live)
    again = await live.enrol.EnrollUser(
        enrol_pb.EnrollUserRequest(user_id="alice", client_id="acme", secure_phone=PHONE, locale="fr")
    )
    assert again.user.masked_phone == "+33*******78"
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await live.enrol.EnrollUser(
            enrol_pb.EnrollUserRequest(user_id="alice", client_id="acme", secure_phone=phone, locale=locale)
        )
    assert caught.value.code() is grpc.StatusCode.ALREADY_EXISTS


async def test_get_user_masks_the_number(live: Live) -> None:
    """GetUser never shows the full secure number."""
    await enrolled(live)
    reply = await live.enrol.GetUser(enrol_pb.GetUserRequest(user_id="alice"))
    assert reply.user.masked_phone == "+33*******78"
    assert reply.user.status == enrol_pb.USER_STATUS_ACTIVE


async def test_no_code_reaches_the_logs(live: Live, caplog: pytest.LogCaptureFixture) -> None:
    """A full flow logs nothing that contains the code or the full phone number."""
    caplog.set_level(logging.DEBUG)
    challenge_id, code = await started(live, await enrolled(live))
    await verify(live, challenge_id, wrong(code))
    await verify(live, challenge_id, code)
    logged = "\n".join(record.getMessage() for record in caplog.records)
    assert code not in logged
    assert PHONE not in logged


@pytest.mark.parametrize("policy", [ChallengePolicy(send_budget=SendBudget(per_user=1000, per_phone=1000))])
async def test_race_has_exactly_one_winner(live: Live) -> None:
    """32 concurrent right codes on one challenge give one VERIFIED, 100 times over."""
    user_id = await enrolled(live)
    for _ in range(100):
        challenge_id, code = await started(live, user_id)
        replies = await asyncio.gather(*(verify(live, challenge_id, code) for _ in range(32)))
        results = [reply.result for reply in replies]
        assert results.count(auth_pb.VERIFY_RESULT_VERIFIED) == 1
        assert results.count(auth_pb.VERIFY_RESULT_ALREADY_USED) == 31


async def test_start_retried_with_its_request_id_sends_one_sms(live: Live) -> None:
    """A retried StartChallenge with the same request_id answers the same challenge, one SMS in all."""
    user_id = await enrolled(live)
    request = auth_pb.StartChallengeRequest(
        user_id=user_id, operation=transfer(), context=CONTEXT, request_id="r-9"
    )
    first = await live.auth.StartChallenge(request)
    second = await live.auth.StartChallenge(request)
    assert second.challenge_id == first.challenge_id
    await settled(live.store)
    assert len(live.sms_file.read_text().splitlines()) == 1


async def test_five_wrong_codes_in_a_row_block_new_challenges(live: Live) -> None:
    """After 3 + 2 wrong codes, StartChallenge is FAILED_PRECONDITION with USER_BLOCKED and RetryInfo."""
    user_id = await enrolled(live)
    for wrong_codes in (3, 2):
        challenge_id, code = await started(live, user_id)
        for _ in range(wrong_codes):
            assert (await verify(live, challenge_id, wrong(code))).result == auth_pb.VERIFY_RESULT_WRONG_CODE
    sent = len(live.sms_file.read_text().splitlines())
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await live.auth.StartChallenge(
            auth_pb.StartChallengeRequest(user_id=user_id, operation=transfer(), context=CONTEXT)
        )
    assert caught.value.code() is grpc.StatusCode.FAILED_PRECONDITION
    precondition, retry = error_details_pb2.PreconditionFailure(), error_details_pb2.RetryInfo()
    details = rich_details(caught.value)
    assert details[0].Unpack(precondition)
    assert details[1].Unpack(retry)
    assert precondition.violations[0].type == "USER_BLOCKED"
    assert 899 <= retry.retry_delay.seconds <= 900
    assert len(live.sms_file.read_text().splitlines()) == sent
    user = (await live.enrol.GetUser(enrol_pb.GetUserRequest(user_id=user_id))).user
    assert user.HasField("blocked_until")
    assert user.blocked_until.ToDatetime(tzinfo=UTC) > datetime.now(UTC) + timedelta(minutes=14)
