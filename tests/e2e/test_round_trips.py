"""What one StartChallenge costs in Redis, counted by the server itself (docs/benchmarks.md states it)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import redis.asyncio as aioredis

from sesame.api.v1 import authentication_service_pb2 as auth_pb
from tests.e2e.conftest import Live
from tests.e2e.helpers import CONTEXT, enrolled, transfer

pytestmark = [pytest.mark.e2e, pytest.mark.integration]

BENCHMARKS_MD = Path(__file__).parents[2] / "docs" / "benchmarks.md"
NUMBERS = {"one": 1, "two": 2, "three": 3, "four": 4, "five": 5, "six": 6, "seven": 7, "eight": 8, "nine": 9}


def documented_round_trips() -> int:
    """The figure of docs/benchmarks.md's "Start makes N Redis round trips"."""
    found = re.search(r"Start makes (\w+) Redis round trips", BENCHMARKS_MD.read_text(encoding="utf-8"))
    assert found is not None
    return NUMBERS[found.group(1)]


async def counters(client: aioredis.Redis) -> tuple[int, int]:
    """Requests read by the server so far, and PINGs among them (a health probe is no part of a Start)."""
    stats = await client.info("stats")
    pings = (await client.info("commandstats")).get("cmdstat_ping", {}).get("calls", 0)
    return int(stats["total_reads_processed"]), int(pings)


async def start(live: Live, user_id: str) -> None:
    await live.auth.StartChallenge(
        auth_pb.StartChallengeRequest(user_id=user_id, operation=transfer(), context=CONTEXT)
    )


async def test_one_start_makes_the_round_trips_the_benchmarks_state(
    live: Live, redis_client: aioredis.Redis
) -> None:
    """The requests Redis reads during one Start (scripts already loaded) are docs/benchmarks.md's count."""
    user_id = await enrolled(live)
    await start(live, user_id)  # loads the Lua scripts: a first use costs a NOSCRIPT and a SCRIPT LOAD more
    reads_before, pings_before = await counters(redis_client)
    await start(live, user_id)
    reads_after, pings_after = await counters(redis_client)
    # Each counters() call is two requests, read before INFO answers: the second call's two are counted.
    round_trips = reads_after - reads_before - 2 - (pings_after - pings_before)
    assert round_trips == documented_round_trips()
