"""Pytest plugin: one real redis-server per test session, a clean database for every test; and a
redis-server of a test's own, for a test that counts its clients or commands, or changes its settings."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import redis
import redis.asyncio as aioredis

from sesame.clients.redis_lane import close_lane
from sesame.clients.redis_server import EmbeddedRedis
from sesame.clients.redis_store import RedisState


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
        await close_lane(client)
        await client.aclose()


@pytest.fixture
def flushed_redis_server(redis_server: EmbeddedRedis) -> EmbeddedRedis:
    """The session's server, every key deleted before the test: for a test that is not async (a
    `sesame serve` it starts on this Redis must not find another test's key ledger, for one)."""
    client = redis.Redis.from_url(redis_server.url)
    try:
        client.flushall()
    finally:
        client.close()
    return redis_server


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[EmbeddedRedis]:
    """A redis-server of the test's own: its clients, command counts and settings (maxmemory) are those of
    the test and of the processes it starts, and no other test's."""
    with EmbeddedRedis(tmp_path / "redis") as server:
        yield server


@pytest.fixture
async def own_redis_client(own_redis: EmbeddedRedis) -> AsyncIterator[aioredis.Redis]:
    """The test's own connection to `own_redis`."""
    client = aioredis.Redis.from_url(own_redis.url)
    try:
        yield client
    finally:
        await client.aclose()


@pytest.fixture
def redis_store(redis_client: aioredis.Redis) -> RedisState:
    """The real state store on the clean database."""
    return RedisState.on(redis_client)


def crash(server: EmbeddedRedis) -> int:
    """SIGKILL the child through its pid file, as the OOM killer would; return its pid once it is gone."""
    pid = int(server.pid_file.read_text())
    os.kill(pid, signal.SIGKILL)
    for _ in range(200):
        if not server.is_running:
            return pid
        time.sleep(0.01)
    raise AssertionError("redis-server survived SIGKILL")
