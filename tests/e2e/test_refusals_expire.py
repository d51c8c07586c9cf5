"""What a refused or proved request leaves beside a challenge expires with it: a replayed code, repeated,
grows nothing for good (the `:refusals` hash and the `:proof` key had no expiry)."""

from __future__ import annotations

import grpc
import pytest
import redis.asyncio as aioredis

from sesame.api.v1 import authentication_service_pb2 as auth_pb
from tests.e2e.conftest import Live
from tests.e2e.helpers import CONTEXT, enrolled, started, verify

pytestmark = [pytest.mark.e2e, pytest.mark.integration]


async def test_a_replayed_code_and_a_proof_leave_nothing_that_outlives_the_challenge(
    live: Live, redis_client: aioredis.Redis
) -> None:
    """Fifty replays of a used code and two cancels of a closed challenge: one count each, in a hash that
    expires no later than the challenge hash; the proof's JWS expires too."""
    challenge_id, code = await started(live, await enrolled(live))
    assert (await verify(live, challenge_id, code)).result == auth_pb.VERIFY_RESULT_VERIFIED
    for _ in range(50):
        assert (await verify(live, challenge_id, code)).result == auth_pb.VERIFY_RESULT_ALREADY_USED
    for _ in range(2):  # refused (FAILED_PRECONDITION), counted in the same hash
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await live.auth.CancelChallenge(
                auth_pb.CancelChallengeRequest(challenge_id=challenge_id, context=CONTEXT)
            )
        assert refused.value.code() is grpc.StatusCode.FAILED_PRECONDITION
    await live.auth.GetProof(auth_pb.GetProofRequest(challenge_id=challenge_id))
    keys = live.store.keys
    challenge_ttl = await redis_client.pttl(keys.challenge(challenge_id))
    refusals = await redis_client.hgetall(keys.challenge_refusals(challenge_id))
    assert refusals[b"challenge.verification:already_used"] == b"50"
    assert refusals[b"challenge.cancel:refused"] == b"2"
    assert 0 < await redis_client.pttl(keys.challenge_refusals(challenge_id)) <= challenge_ttl
    assert await redis_client.exists(keys.challenge_proof(challenge_id)) == 1
    assert await redis_client.pttl(keys.challenge_proof(challenge_id)) > 0
