"""Pytest plugin: one real redis-server per test session, a clean database for every test."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest
import redis.asyncio as aioredis

from sesame.clients.redis_server import EmbeddedRedis
from sesame.clients.redis_store import RedisStateStore


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedRedis]:
    """A private redis-server on a free loopback port, its data in the session's temporary directory."""
    with EmbeddedRedis(tmp_path_factory.mktemp("redis")) as server:
        yield server


@pytest.fixture
async def redis_client(redis_server: EmbeddedRedis) -> AsyncIterator[aioredis.Redis]:
    """A client on the session's server, whose every key was deleted before the test."""
    client = aioredis.Redis.from_url(redis_server.url)
    await client.flushall()
    try:
        yield client
    finally:
        await client.aclose()


@pytest.fixture
def redis_store(redis_client: aioredis.Redis) -> RedisStateStore:
    """The real state store on the clean database."""
    return RedisStateStore(redis_client)
