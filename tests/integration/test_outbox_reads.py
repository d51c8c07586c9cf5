"""What a dispatcher's read of the outbox costs on Redis (decisions 0040, 0044): one round trip (a pipeline
of one take_outbox.lua per shard it reads) gives the entries and their challenges; a purged challenge comes
as none; an entry that arrives while the dispatcher waits comes with its challenge too."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
import redis.asyncio as aioredis

from sesame.clients.redis_lane import lane_of
from sesame.clients.redis_outbox import RedisOutbox
from sesame.clients.redis_store import RedisState
from tests.contracts.test_start_challenge_contract import an_opening, enrolled

pytestmark = pytest.mark.integration

NO_WAIT = timedelta(milliseconds=1)


@pytest.fixture
def sent(redis_client: aioredis.Redis) -> Iterator[Counter[str]]:
    """The round trips the client makes from now on (through its pool or its lane: decision 0063), by command
    name; a pipeline counts as one `pipeline` and each of its commands as `pipeline <name>`. The bell's
    blocking XREADs (decision 0044), each on a connection of its own while the dispatcher works, are left
    out: they are not the take's round trips."""
    counted: Counter[str] = Counter()
    send, make = redis_client.execute_command, redis_client.pipeline

    async def counting(*args: Any, **options: Any) -> Any:
        if str(args[0]).lower() != "xread":
            counted[str(args[0]).lower()] += 1
        return await send(*args, **options)

    def piping(*args: Any, **options: Any) -> Any:
        pipe = make(*args, **options)
        execute = pipe.execute

        async def executing(*given: Any, **chosen: Any) -> Any:
            counted["pipeline"] += 1
            for command, _ in pipe.command_stack:
                counted[f"pipeline {str(command[0]).lower()}"] += 1
            return await execute(*given, **chosen)

        pipe.execute = executing  # type: ignore[method-assign]
        return pipe

    lane = lane_of(redis_client)
    call, pipeline = lane.call, lane.pipeline

    async def lane_calling(*args: Any) -> Any:
        counted[str(args[0]).lower()] += 1
        return await call(*args)

    async def lane_piping(commands: Any) -> Any:
        counted["pipeline"] += 1
        for command in commands:
            counted[f"pipeline {str(command[0]).lower()}"] += 1
        return await pipeline(commands)

    redis_client.execute_command = counting  # type: ignore[method-assign]
    redis_client.pipeline = piping  # type: ignore[method-assign]
    lane.call = lane_calling  # type: ignore[method-assign]
    lane.pipeline = lane_piping  # type: ignore[method-assign]
    yield counted
    del redis_client.execute_command
    del redis_client.pipeline
    del lane.call
    del lane.pipeline


async def test_taking_entries_with_their_challenges_is_one_round_trip(
    redis_client: aioredis.Redis, sent: Counter[str]
) -> None:
    store = RedisState.on(redis_client)
    await enrolled(store)
    outbox = RedisOutbox(redis_client)
    # The first take loads the script, starts the bell and reads every shard (nothing queued yet).
    assert await outbox.take("warm", 10, NO_WAIT) == []
    opened = [(await store.challenges.start_challenge(an_opening())).challenge for _ in range(3)]
    sent.clear()
    taken = await outbox.take("a", 10, timedelta(seconds=5))  # the bell rang (or rings) for their shard
    assert sent == Counter({"pipeline": 1, "pipeline evalsha": 1})
    assert [q.challenge_id for q in taken] == [c.challenge_id for c in opened]
    for queued in taken:
        assert queued.challenge == await store.challenges.get_challenge(queued.challenge_id)
    await redis_client.delete(store.keys.challenge(opened[0].challenge_id))  # purged while pending
    sent.clear()
    claimed = await outbox.reclaim("b", timedelta(0), 10)
    assert sent == Counter({"pipeline": 1, "pipeline evalsha": store.keys.shards})  # every shard, at once
    assert [q.challenge is None for q in claimed] == [True, False, False]
    await outbox.close()


async def test_an_entry_that_arrives_while_the_dispatcher_waits_comes_with_its_challenge(
    redis_client: aioredis.Redis,
) -> None:
    store = RedisState.on(redis_client)
    await enrolled(store)
    await store.challenges.start_challenge(an_opening())
    outbox = RedisOutbox(redis_client)
    assert len(await outbox.take("a", 10, NO_WAIT)) == 1
    waiting = asyncio.create_task(outbox.take("a", 10, timedelta(seconds=5)))
    await asyncio.sleep(0.2)
    opened = (await store.challenges.start_challenge(an_opening())).challenge
    (queued,) = await waiting
    assert queued.challenge == await store.challenges.get_challenge(opened.challenge_id)
    await outbox.close()
