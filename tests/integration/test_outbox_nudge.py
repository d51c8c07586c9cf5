"""The steps that queue an SMS tell the nudge the shard they queued in, from the keyspace, and only when
their script queued (decision 0060): on real Redis, with a nudge that writes down what it was told."""

from __future__ import annotations

import dataclasses

import pytest
import redis.asyncio as aioredis

from sesame.clients.redis_store import RedisState
from sesame.server.domain.call_meter import UNMETERED
from sesame.server.domain.errors import UserNotFound
from tests.contracts.test_start_challenge_contract import USER_ID, an_opening, enrolled

pytestmark = pytest.mark.integration


@dataclasses.dataclass
class Told:
    """A nudge that keeps the shards it was told of."""

    shards: list[int] = dataclasses.field(default_factory=list)

    def queued(self, shard: int) -> None:
        self.shards.append(shard)


async def test_a_start_that_queued_names_the_shard_whose_outbox_holds_its_sms(
    redis_client: aioredis.Redis,
) -> None:
    """The shard told is the challenge's, and its outbox is the one that got the entry."""
    told = Told()
    store = RedisState.on(redis_client, nudge=told)
    await enrolled(store)
    opened = await store.challenges.start_challenge(an_opening())
    shard = store.keys.shard_of_challenge(opened.challenge.challenge_id)
    assert told.shards == [shard] == [store.keys.shard_of_user(USER_ID)]
    lengths = [await redis_client.xlen(outbox) for outbox in store.keys.outboxes()]
    assert [n for n, length in enumerate(lengths) if length] == [shard]


async def test_a_step_that_queued_nothing_tells_nothing(redis_client: aioredis.Redis) -> None:
    """A refused Start, and a Start answered with its earlier challenge (the same request id), queue no SMS
    and wake no dispatcher."""
    told = Told()
    store = RedisState.on(redis_client, nudge=told)
    with pytest.raises(UserNotFound):
        await store.challenges.start_challenge(an_opening())
    await enrolled(store)
    await store.challenges.start_challenge(an_opening(request_id="r-1"))
    again = await store.challenges.start_challenge(an_opening(request_id="r-1"))
    assert not again.queued
    assert len(told.shards) == 1


async def test_the_view_the_flows_use_keeps_the_nudge(redis_client: aioredis.Redis) -> None:
    """`metered` (what `sesame serve` gives the flows) tells the nudge it is given; the bare state none."""
    told = Told()
    store = RedisState.on(redis_client).metered(UNMETERED, told)
    await enrolled(store)
    await store.challenges.start_challenge(an_opening())
    assert len(told.shards) == 1
