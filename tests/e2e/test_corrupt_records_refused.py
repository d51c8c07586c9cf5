"""A record Verify's step cannot read is refused before it writes, never read as the permissive case (an
outside audit, AF5: a challenge status it did not know read as open and verified, a block that was not a
number read as no block, a count of wrong codes that was not a number verified all the same). Refused
INTERNAL, not UNAVAILABLE "retry later": a retry meets the same record (the audit's leftover)."""

from __future__ import annotations

import grpc
import pytest
import redis.asyncio as aioredis

from tests.e2e.conftest import Live
from tests.e2e.helpers import enrolled, started, verify

pytestmark = [pytest.mark.e2e, pytest.mark.integration]


@pytest.mark.parametrize(
    ("record", "field", "value"),
    [
        ("challenge", "status", "bogus"),
        ("challenge", "attempts", "x"),
        ("user", "blocked_until", "abc"),
        ("user", "failures", "x"),
        ("user", "blocks", "?"),
    ],
)
async def test_a_damaged_field_refuses_the_verification_and_changes_nothing(
    live: Live, redis_client: aioredis.Redis, record: str, field: str, value: str
) -> None:
    user_id = await enrolled(live)
    challenge_id, code = await started(live, user_id)
    key = live.store.keys.challenge(challenge_id) if record == "challenge" else live.store.keys.user(user_id)
    await redis_client.hset(key, field, value)
    before = await _counts(live, redis_client, challenge_id, user_id)
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await verify(live, challenge_id, code)
    assert refused.value.code() is grpc.StatusCode.INTERNAL
    assert await _counts(live, redis_client, challenge_id, user_id) == before


async def _counts(live: Live, redis_client: aioredis.Redis, challenge_id: str, user_id: str) -> list[object]:
    """What a verification writes (not the delivery, which the dispatcher may still be writing)."""
    challenge = live.store.keys.challenge(challenge_id)
    user = live.store.keys.user(user_id)
    return [
        *await redis_client.hmget(challenge, ["status", "attempts"]),
        *await redis_client.hmget(user, ["failures", "blocks", "blocked_until"]),
    ]


async def test_a_block_that_is_not_a_number_refuses_a_start(live: Live, redis_client: aioredis.Redis) -> None:
    """A damaged block is not read as none by Start either: refused, no challenge opened."""
    user_id = await enrolled(live)
    await redis_client.hset(live.store.keys.user(user_id), "blocked_until", "abc")
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await started(live, user_id)
    assert refused.value.code() is grpc.StatusCode.INTERNAL
    assert await redis_client.zcard(live.store.keys.user_pending(user_id)) == 0
