"""Pytest plugin: Redis full (maxmemory 1 byte, noeviction) on a redis-server of the test's own
(`own_redis`, tests.support.redis_fixtures), for the out-of-memory drills (decisions 0109, 0111)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
import redis.asyncio as aioredis


@pytest.fixture
async def admin(own_redis_client: aioredis.Redis) -> AsyncIterator[aioredis.Redis]:
    """The test's client on `own_redis`, which gives it its memory back at the end."""
    try:
        yield own_redis_client
    finally:
        await own_redis_client.config_set("maxmemory", 0)


async def full(admin: aioredis.Redis) -> None:
    """maxmemory 1 byte, nothing evictable: every write that may grow memory is -OOM."""
    await admin.config_set("maxmemory-policy", "noeviction")
    await admin.config_set("maxmemory", 1)


async def stored(admin: aioredis.Redis) -> int:
    """The bytes Redis's keys take, each whole (MEMORY USAGE, every element sampled): what the state holds,
    without the buffers and caches of used_memory, which move with the connections' traffic."""
    return sum([await admin.memory_usage(key, samples=0) or 0 async for key in admin.scan_iter(count=1000)])
