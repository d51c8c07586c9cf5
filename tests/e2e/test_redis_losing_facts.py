"""A Redis that can lose Sésame's facts behind its back is seen (an outside audit, AF2 and AF3).

A Redis that evicts keys when full (`maxmemory-policy` other than `noeviction`) booted and served without a
word: under `volatile-ttl` it sent 13 codes against a budget of 10 and answered a retried request id with a
second challenge; under `allkeys-lru` it lost users. And a shard count lost while serving (FLUSHALL, a
restart without its data) was never recorded again, so a later boot with another count split the data.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
import redis
import redis.asyncio as aioredis

from sesame.api.v1 import authentication_service_pb2 as auth_pb
from sesame.clients.redis_server import EmbeddedRedis
from sesame.clients.redis_store import RedisState
from sesame.server.domain.errors import ConfigurationError
from tests.e2e.conftest import Live
from tests.e2e.helpers import CONTEXT, enrolled, keys_written, started, transfer
from tests.support.serve_process import run_serve

pytestmark = [pytest.mark.e2e, pytest.mark.integration]


@pytest.fixture
def evicting(tmp_path: Path) -> Iterator[EmbeddedRedis]:
    """A private redis-server that evicts keys when full."""
    with EmbeddedRedis(tmp_path / "redis", extra_arguments=("--maxmemory-policy", "allkeys-lru")) as server:
        yield server


def test_a_boot_on_a_redis_that_evicts_keys_is_refused(tmp_path: Path, evicting: EmbeddedRedis) -> None:
    result = run_serve(tmp_path / "var", {"SESAME_REDIS_URL": evicting.url})
    assert result.returncode == 2, result.stdout[-3000:]
    assert "Redis evicts keys when full (maxmemory-policy allkeys-lru): set noeviction" in result.stdout
    assert "Traceback" not in result.stdout


async def test_health_fails_once_redis_evicts_keys_and_passes_once_it_no_longer_does(
    evicting: EmbeddedRedis, caplog: pytest.LogCaptureFixture
) -> None:
    state = RedisState.from_url(evicting.url)
    try:
        for _ in range(3):
            with pytest.raises(ConfigurationError, match="maxmemory-policy allkeys-lru"):
                await state.check()
        said = [r for r in caplog.records if "maxmemory-policy allkeys-lru" in r.getMessage()]
        assert [r.levelno for r in said] == [logging.ERROR]  # once, not every round
        redis.Redis.from_url(evicting.url).config_set("maxmemory-policy", "noeviction")
        await state.check()
    finally:
        await state.close()


async def test_a_shard_count_lost_while_serving_is_recorded_again(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with EmbeddedRedis(tmp_path / "redis") as server:
        state = RedisState.from_url(server.url, shards=16)
        try:
            await state.check_layout()
            redis.Redis.from_url(server.url).flushall()
            await state.check()  # the health round
            assert [r for r in caplog.records if "no longer held the shard count" in r.getMessage()]
            other = RedisState.from_url(server.url, shards=8)
            try:
                with pytest.raises(ConfigurationError, match="laid out in 16 shards"):
                    await other.check_layout()
            finally:
                await other.close()
            # The reverse: the count lost again, another recorded first; this one's health says why.
            redis.Redis.from_url(server.url).set(state.keys.layout(), 8)
            with pytest.raises(ConfigurationError, match="laid out in 8 shards"):
                await state.check()
            said = [
                r
                for r in caplog.records
                if "laid out in 8 shards; SESAME_REDIS_SHARDS is 16" in r.getMessage()
            ]
            assert [r.levelno for r in said] == [logging.ERROR]
        finally:
            await state.close()


async def test_an_acl_refusing_a_command_the_scripts_call_fails_health(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Found from outside (AF1): with XADD revoked, a Start's step opened its challenge, then failed at the
    journal's XADD, leaving the challenge without its SMS. Such an ACL is refused at boot and by health."""
    with EmbeddedRedis(tmp_path / "redis") as server:
        admin = redis.Redis.from_url(server.url)
        state = RedisState.from_url(server.url)
        try:
            await state.check()
            admin.acl_setuser("default", enabled=True, nopass=True, commands=["-xadd", "-zrem"], reset=False)
            for _ in range(2):
                with pytest.raises(
                    ConfigurationError, match="refuses commands Sésame's scripts call: XADD, ZREM"
                ):
                    await state.check()
            assert len([r for r in caplog.records if "ACL refuses" in r.getMessage()]) == 1
            admin.acl_setuser("default", commands=["+xadd", "+zrem"], reset=False)
            await state.check()
        finally:
            await state.close()
            admin.close()


async def test_a_worker_that_finds_another_shard_count_refuses_every_call(
    live: Live, redis_client: aioredis.Redis
) -> None:
    """Found from outside (AH4): a worker whose health round found another count recorded (Redis emptied,
    then a boot with another SESAME_REDIS_SHARDS) went on serving with its own, writing where the other
    servers never read. It refuses every call INTERNAL, nothing done, until the count is its own again."""
    await enrolled(live)
    own = await redis_client.get(live.store.keys.layout())
    await redis_client.set(live.store.keys.layout(), int(own) * 2)
    with pytest.raises(ConfigurationError):
        await live.store.check()  # the health round
    before = await keys_written(redis_client)
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await live.auth.StartChallenge(
            auth_pb.StartChallengeRequest(user_id="alice", operation=transfer(), context=CONTEXT)
        )
    assert refused.value.code() is grpc.StatusCode.INTERNAL
    assert await keys_written(redis_client) == before
    await redis_client.set(live.store.keys.layout(), own)
    await live.store.check()
    assert (await started(live, "alice"))[0]
