"""What a dispatcher's read of the outbox costs on Redis (decision 0040): one round trip gives the entries
and their challenges; a purged challenge comes as none; an entry that arrives while the dispatcher blocks
comes with its challenge too."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
import redis.asyncio as aioredis

from sesame.clients.redis_outbox import RedisOutbox
from sesame.clients.redis_store import RedisState
from tests.contracts.test_start_challenge_contract import an_opening, enrolled

pytestmark = pytest.mark.integration

NO_WAIT = timedelta(milliseconds=1)


@pytest.fixture
def sent(redis_client: aioredis.Redis) -> Iterator[Counter[str]]:
    """The commands the client sends from now on, by name; a pipeline counts as one `pipeline`."""
    counted: Counter[str] = Counter()
    send = redis_client.execute_command

    async def counting(*args: Any, **options: Any) -> Any:
        counted[str(args[0]).lower()] += 1
        return await send(*args, **options)

    redis_client.execute_command = counting  # type: ignore[method-assign]
    yield counted
    del redis_client.execute_command


async def test_taking_entries_with_their_challenges_is_one_round_trip(
    redis_client: aioredis.Redis, sent: Counter[str]
) -> None:
    store = RedisState.on(redis_client)
    await enrolled(store)
    opened = [(await store.challenges.start_challenge(an_opening())).challenge for _ in range(3)]
    outbox = RedisOutbox(redis_client)
    await outbox.reclaim("warm", timedelta(hours=1), 1)  # loads the script (a first use: SCRIPT LOAD more)
    sent.clear()
    taken = await outbox.take("a", 10, NO_WAIT)
    assert sent == Counter(evalsha=1)
    assert [q.challenge_id for q in taken] == [c.challenge_id for c in opened]
    for queued in taken:
        assert queued.challenge == await store.challenges.get_challenge(queued.challenge_id)
    await redis_client.delete(store.keys.challenge(opened[0].challenge_id))  # purged while pending
    sent.clear()
    claimed = await outbox.reclaim("b", timedelta(0), 10)
    assert sent == Counter(evalsha=1)
    assert [q.challenge is None for q in claimed] == [True, False, False]


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
