"""A ResendChallenge retried with its request id, through the real server, Redis and SoftHSM (decision
0065): the first resend answered again, no second resend spent, no second SMS; the same request id on
another challenge is INVALID_ARGUMENT and spends nothing; retries keep one claim in Redis, whatever their
count. (A resend whose reply was lost: tests/e2e/test_redis_faults.py.)"""

from __future__ import annotations

import asyncio
from datetime import timedelta

import grpc
import pytest
import redis.asyncio as aioredis

from sesame.api.v1 import authentication_service_pb2 as auth_pb
from sesame.server.domain.challenges import ChallengePolicy
from tests.e2e.conftest import Live
from tests.e2e.helpers import CONTEXT, enrolled, sms_count, snapshot, started, violations
from tests.support.outbox import settled

pytestmark = [pytest.mark.e2e, pytest.mark.integration]

# No spacing between resends: a retry taken as a new resend would be accepted, and seen.
NO_SPACING = ChallengePolicy(resend_spacing=timedelta(0))
RESENDS = NO_SPACING.max_resends


def resend(challenge_id: str, request_id: str) -> auth_pb.ResendChallengeRequest:
    return auth_pb.ResendChallengeRequest(challenge_id=challenge_id, context=CONTEXT, request_id=request_id)


async def resends_left(live: Live, challenge_id: str) -> int:
    got = await live.auth.GetChallenge(auth_pb.GetChallengeRequest(challenge_id=challenge_id))
    return got.challenge.resends_left


@pytest.mark.parametrize("policy", [NO_SPACING])
async def test_a_retry_after_its_answer_answers_the_same_and_sends_no_second_sms(live: Live) -> None:
    """The same request id again: the first resend's expiry and resends left, one resend spent, one SMS."""
    challenge_id, _ = await started(live, await enrolled(live))
    first = await live.auth.ResendChallenge(resend(challenge_id, "r-1"))
    await settled(live.store)
    again = await live.auth.ResendChallenge(resend(challenge_id, "r-1"))
    await settled(live.store)
    assert (again.expires_at, again.resends_left) == (first.expires_at, RESENDS - 1)
    assert again.delivery_state == auth_pb.DELIVERY_STATE_SENT  # its SMS left: what it is now
    assert await resends_left(live, challenge_id) == RESENDS - 1
    assert sms_count(live, challenge_id) == 2


@pytest.mark.parametrize("policy", [NO_SPACING])
async def test_the_same_request_id_on_another_challenge_is_invalid_and_spends_nothing(
    live: Live, redis_client: aioredis.Redis
) -> None:
    """A request id a resend of one challenge claimed, sent with another: INVALID_ARGUMENT on request_id,
    and Redis as it was (no resend, no unit, no SMS, no journal entry)."""
    user_id = await enrolled(live)
    one, _ = await started(live, user_id)
    other, _ = await started(live, user_id)
    await live.auth.ResendChallenge(resend(one, "r-1"))
    await settled(live.store)
    before = await snapshot(redis_client)
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await live.auth.ResendChallenge(resend(other, "r-1"))
    assert caught.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert list(violations(caught.value)) == ["request_id"]
    assert await snapshot(redis_client) == before
    assert (await resends_left(live, other), sms_count(live, other)) == (RESENDS, 1)


@pytest.mark.parametrize("policy", [NO_SPACING])
async def test_two_thousand_retries_keep_one_claim_and_write_nothing(
    live: Live, redis_client: aioredis.Redis
) -> None:
    """2,000 retries of one resend's request id leave Redis as the resend left it: one claim, no entry."""
    challenge_id, _ = await started(live, await enrolled(live))
    await live.auth.ResendChallenge(resend(challenge_id, "r-1"))
    await settled(live.store)
    before = await snapshot(redis_client)
    assert len([key for key in before if b":resend:" in key]) == 1
    for _ in range(20):
        answers = await asyncio.gather(
            *(live.auth.ResendChallenge(resend(challenge_id, "r-1")) for _ in range(100))
        )
        assert {answer.resends_left for answer in answers} == {RESENDS - 1}
    await settled(live.store)
    assert await snapshot(redis_client) == before
    assert sms_count(live, challenge_id) == 2
