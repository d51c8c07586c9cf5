"""SESAME_REDIS_SHARDS through the real Redis (decision 0058): a count other than the default lays the keys,
journal feeds and outboxes out by it, and a deployment's count cannot change under its data."""

from __future__ import annotations

from datetime import timedelta

import pytest
import redis.asyncio as aioredis

from sesame.clients.redis_store import RedisState
from sesame.server.domain.challenges import user_tag
from sesame.server.domain.errors import ConfigurationError
from tests.contracts.test_start_challenge_contract import USER_ID, an_opening, enrolled

pytestmark = pytest.mark.integration

WAIT = timedelta(seconds=5)
TAG = int(user_tag(USER_ID), 16)


async def test_four_shards_place_the_user_its_challenge_its_sms_and_its_journal_by_four(
    redis_client: aioredis.Redis,
) -> None:
    """The user's shard is its tag modulo 4 (not 16): its challenge, its queued SMS and the feed entries of
    its journals are there; the outbox reads 4 streams and hands the SMS over with its challenge."""
    assert TAG % 4 != TAG % 16  # the two layouts put the user in different places
    store = RedisState.on(redis_client, shards=4)
    await store.check_layout()
    assert await redis_client.get(store.keys.layout()) == b"4"
    await enrolled(store)
    opened = (await store.challenges.start_challenge(an_opening())).challenge
    place = store.keys.place(TAG % 4)
    assert await redis_client.exists(f"{place}:user:{USER_ID}", f"{place}:ch:{opened.challenge_id}") == 2
    assert await redis_client.xlen(f"{place}:outbox") == 1
    outbox = store.outbox()
    try:
        (queued,) = await outbox.take("d-1", 10, WAIT)
    finally:
        await outbox.close()
    assert queued.challenge == await store.challenges.get_challenge(opened.challenge_id)
    assert store.keys.journal_feeds() == [store.keys.journal_feed(n) for n in range(4)]
    assert await redis_client.xlen(store.keys.journal_feed(TAG % 4)) > 0
    unsealed = await store.sealed_journal().unsealed("0-0")
    assert len(unsealed.entries) == await redis_client.xlen(f"{place}:feed")


async def test_another_count_on_a_deployments_data_is_refused_at_start(redis_client: aioredis.Redis) -> None:
    """An SMS queued under 16 shards sits in shard 9's outbox, which 4 shards never read: a start with
    SESAME_REDIS_SHARDS=4 on that Redis is refused with the error naming the setting, nothing stranded."""
    before = RedisState.on(redis_client)
    await before.check_layout()
    await enrolled(before)
    opened = (await before.challenges.start_challenge(an_opening())).challenge
    after = RedisState.on(redis_client, shards=4)
    assert before.keys.outbox_of(opened.challenge_id) not in after.keys.outboxes()  # it would be stranded
    with pytest.raises(ConfigurationError, match=r"laid out in 16 shards; SESAME_REDIS_SHARDS is 4"):
        await after.check_layout()
    assert await redis_client.get(before.keys.layout()) == b"16"
