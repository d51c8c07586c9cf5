"""Send budgets and the destination-country allow-list over a real gRPC channel, real Redis and SoftHSM."""

from __future__ import annotations

from datetime import timedelta

import grpc
import pytest
import redis.asyncio as aioredis

from sesame.api.v1 import authentication_service_pb2 as auth_pb
from sesame.api.v1 import enrollment_service_pb2 as enrol_pb
from sesame.api.v1 import operation_pb2 as op_pb
from sesame.server.domain.budgets import SendBudget
from sesame.server.domain.challenges import ChallengePolicy
from tests.e2e.conftest import Live
from tests.e2e.helpers import CONTEXT, PHONE, enrolled, quota, snapshot, started, transfer, violations

pytestmark = [pytest.mark.e2e, pytest.mark.integration]


@pytest.mark.parametrize("policy", [ChallengePolicy(send_budget=SendBudget(per_user=2, per_phone=5))])
async def test_a_spent_user_budget_is_resource_exhausted_with_quota_and_retry(live: Live) -> None:
    """A third start on a budget of two is RESOURCE_EXHAUSTED with QuotaFailure `user` and RetryInfo."""
    user_id = await enrolled(live)
    await started(live, user_id)
    await started(live, user_id)
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await live.auth.StartChallenge(auth_pb.StartChallengeRequest(user_id=user_id, operation=transfer()))
    subjects, wait = quota(caught.value)
    assert subjects == ["user"]
    assert timedelta(minutes=59) < wait <= timedelta(hours=1)
    assert PHONE.removeprefix("+") not in str(caught.value.details())
    assert len(live.sms_file.read_text().splitlines()) == 2


async def test_enrolment_of_a_number_outside_the_allowed_countries_is_invalid(live: Live) -> None:
    """EnrollUser with a US mobile number is INVALID_ARGUMENT on `secure_phone`."""
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await live.enrol.EnrollUser(
            enrol_pb.EnrollUserRequest(user_id="alice", client_id="acme", secure_phone="+14155552671")
        )
    assert caught.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert "secure_phone" in violations(caught.value)


async def test_a_change_to_a_number_outside_the_allowed_countries_sends_no_code(
    live: Live, redis_client: aioredis.Redis
) -> None:
    """StartChallenge for `change_phone` to a US mobile number is INVALID_ARGUMENT on its `new_phone`, before
    anything is written or sent. It sent the old number a code for a change that ChangeSecurePhone could
    then only refuse (INVALID_ARGUMENT on `new_phone`): a code the user typed for nothing, a unit spent."""
    user_id = await enrolled(live)
    before = await snapshot(redis_client)
    change = op_pb.Operation(change_phone=op_pb.ChangePhone(new_phone="+14155552671"))
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await live.auth.StartChallenge(
            auth_pb.StartChallengeRequest(user_id=user_id, operation=change, context=CONTEXT)
        )
    assert caught.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert "(US)" in violations(caught.value)["operation.change_phone.new_phone"]
    assert "14155552671" not in str(caught.value.details())
    assert await snapshot(redis_client) == before
    assert not live.sms_file.exists() or not live.sms_file.read_text().strip()
    inside = op_pb.Operation(change_phone=op_pb.ChangePhone(new_phone="+33698765432"))
    await started(live, user_id, inside)
