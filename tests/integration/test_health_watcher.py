"""The server's gRPC health follows its dependencies: NOT_SERVING while Redis is dead, SERVING once back."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from sesame.clients.redis_server import EmbeddedRedis
from sesame.clients.redis_store import RedisState
from sesame.hsm.pkcs11 import Pkcs11KeyStore
from sesame.server.grpc.server import SERVICE_NAMES, GrpcServer
from tests.support.redis_fixtures import crash
from tests.support.wired_server import ServerOptions, start_wired

pytestmark = pytest.mark.integration

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING
INTERVAL = 0.05


@dataclass
class Watched:
    """A running server whose health watches a Redis server of the test's own."""

    server: GrpcServer
    redis: EmbeddedRedis
    health: health_pb2_grpc.HealthStub


@pytest.fixture
async def watched(tmp_path: Path, keystore: Pkcs11KeyStore) -> AsyncIterator[Watched]:
    """Start a private redis-server and a server probing it and the session's token every 50 ms."""
    own_redis = EmbeddedRedis(tmp_path / "redis")
    await asyncio.to_thread(own_redis.start)
    store = RedisState.from_url(own_redis.url)
    wired = await start_wired(
        keystore, store, tmp_path / "sms.jsonl", ServerOptions(health_interval=INTERVAL)
    )
    server = wired.server
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{server.port}")
    try:
        yield Watched(server, own_redis, health_pb2_grpc.HealthStub(channel))
    finally:
        await channel.close()
        await server.stop(0)
        await store.close()
        await asyncio.to_thread(own_redis.stop)


async def statuses(watched: Watched) -> set[int]:
    """The statuses Check reports for the server as a whole and for each of its services."""
    replies = [
        await watched.health.Check(health_pb2.HealthCheckRequest(service=name), timeout=2)
        for name in ("", *SERVICE_NAMES)
    ]
    return {reply.status for reply in replies}


async def wait_for(watched: Watched, status: int) -> set[int]:
    """Poll Check (at most 5 s) until every service reports `status`; return what was seen last."""
    seen: set[int] = set()
    for _ in range(100):
        seen = await statuses(watched)
        if seen == {status}:
            break
        await asyncio.sleep(INTERVAL)
    return seen


async def test_health_goes_not_serving_when_redis_is_killed(watched: Watched) -> None:
    """After SIGKILL of the Redis server it watches, every service reports NOT_SERVING."""
    assert await statuses(watched) == {SERVING}
    crash(watched.redis)
    assert await wait_for(watched, NOT_SERVING) == {NOT_SERVING}


async def test_health_is_serving_again_once_redis_is_back(watched: Watched) -> None:
    """When the killed Redis server is started again, every service reports SERVING again."""
    crash(watched.redis)
    assert await wait_for(watched, NOT_SERVING) == {NOT_SERVING}
    assert await asyncio.to_thread(watched.redis.restart_if_dead)
    assert await wait_for(watched, SERVING) == {SERVING}


async def test_health_stays_not_serving_once_graceful_shutdown_began(watched: Watched) -> None:
    """A recovery the watcher sees after graceful shutdown began does not bring SERVING back."""
    crash(watched.redis)
    assert await wait_for(watched, NOT_SERVING) == {NOT_SERVING}
    await watched.server.health.enter_graceful_shutdown()
    await asyncio.to_thread(watched.redis.restart_if_dead)
    for _ in range(100):
        if watched.server.health.healthy:
            break
        await asyncio.sleep(INTERVAL)
    assert watched.server.health.healthy is True
    await asyncio.sleep(3 * INTERVAL)
    assert await statuses(watched) == {NOT_SERVING}


async def test_an_outage_is_logged_once_by_error_class(
    watched: Watched, caplog: pytest.LogCaptureFixture
) -> None:
    """However many rounds fail, the outage gives one WARNING naming the error class and not the address."""
    with caplog.at_level(logging.INFO, logger="sesame.health"):
        crash(watched.redis)
        assert await wait_for(watched, NOT_SERVING) == {NOT_SERVING}
        await asyncio.sleep(5 * INTERVAL)
    warnings = [r for r in caplog.records if r.name == "sesame.health" and r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert "StoreUnavailable" in warnings[0].getMessage()
    assert str(watched.redis.port) not in warnings[0].getMessage()
