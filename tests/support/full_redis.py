"""Pytest plugin: a redis-server of a test's own, and Redis full (maxmemory 1 byte, noeviction), for the
out-of-memory drills (decisions 0109, 0111)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import redis.asyncio as aioredis

from sesame.clients.redis_server import EmbeddedRedis


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[EmbeddedRedis]:
    """A redis-server of the test's own: its maxmemory is the drill's to set."""
    with EmbeddedRedis(tmp_path / "redis", extra_arguments=("--enable-protected-configs", "yes")) as server:
        yield server


@pytest.fixture
async def admin(own_redis: EmbeddedRedis) -> AsyncIterator[aioredis.Redis]:
    """A client on `own_redis`, which gives it its memory back at the end."""
    client = aioredis.Redis.from_url(own_redis.url)
    try:
        yield client
    finally:
        await client.config_set("maxmemory", 0)
        await client.aclose()


async def full(admin: aioredis.Redis) -> None:
    """maxmemory 1 byte, nothing evictable: every write that may grow memory is -OOM."""
    await admin.config_set("maxmemory-policy", "noeviction")
    await admin.config_set("maxmemory", 1)


async def stored(admin: aioredis.Redis) -> int:
    """The bytes Redis's keys take, each whole (MEMORY USAGE, every element sampled): what the state holds,
    without the buffers and caches of used_memory, which move with the connections' traffic."""
    return sum([await admin.memory_usage(key, samples=0) or 0 async for key in admin.scan_iter(count=1000)])
