"""Every Redis round trip of the store is timed where they funnel (`Scripts.call`), scripts and reads alike,
and one Redis could not answer is counted as failed (docs/decisions/0026)."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest
import redis.asyncio as aioredis

from sesame.clients.redis_server import EmbeddedRedis
from sesame.clients.redis_store import RedisState
from sesame.server.domain.errors import StoreUnavailable, UserNotFound
from sesame.server.metrics import DependencyMeter, Metrics
from tests.factories import a_user

pytestmark = pytest.mark.integration


def sample(metrics: Metrics, name: str, call: str) -> float:
    """One sample of the store's dependency metrics for `call`."""
    return metrics.registry.get_sample_value(name, {"dependency": "store", "call": call}) or 0.0


async def test_scripts_and_reads_are_timed_through_the_metered_view(redis_client: aioredis.Redis) -> None:
    """A script and two reads through the view are timed under their names; the bare store reports nothing."""
    metrics = Metrics()
    store = RedisState.on(redis_client)
    metered = store.metered(DependencyMeter(metrics, "store"))
    await metered.users.register_user(a_user(datetime.now(UTC)))
    await metered.users.get_user("u-1")
    with pytest.raises(UserNotFound):
        await metered.users.get_user("nobody")
    await store.users.get_user("u-1")  # the bare store: a health probe's side, not traffic
    assert sample(metrics, "sesame_dependency_duration_seconds_count", "register_user") == 1
    assert sample(metrics, "sesame_dependency_duration_seconds_count", "get_user") == 2
    assert sample(metrics, "sesame_dependency_failures_total", "get_user") == 0


async def test_a_stopped_redis_counts_as_a_failure(tmp_path: Path) -> None:
    """Once Redis is gone, a read and a script are timed and each counted failed (StoreUnavailable)."""
    server = EmbeddedRedis(tmp_path / "gone")
    server.start()
    metrics = Metrics()
    store = RedisState.from_url(server.url, timeout=0.5).metered(DependencyMeter(metrics, "store"))
    await store.users.register_user(a_user(datetime.now(UTC)))
    server.stop()
    try:
        with pytest.raises(StoreUnavailable):
            await store.users.get_user("u-1")
        with pytest.raises(StoreUnavailable):
            await store.users.register_user(a_user(datetime.now(UTC)))
    finally:
        await store.close()
    assert sample(metrics, "sesame_dependency_failures_total", "get_user") == 1
    assert sample(metrics, "sesame_dependency_failures_total", "register_user") == 1
    assert sample(metrics, "sesame_dependency_duration_seconds_count", "register_user") == 2


async def test_a_script_redis_forgot_is_loaded_again_and_timed_once(redis_client: aioredis.Redis) -> None:
    """After SCRIPT FLUSH (a restart, a failover to a replica that never loaded it), the next call loads the
    script and runs it: one call, timed once (`Scripts._evalsha`, decision 0049)."""
    metrics = Metrics()
    store = RedisState.on(redis_client).metered(DependencyMeter(metrics, "store"))
    now = datetime.now(UTC)
    await store.users.register_user(a_user(now))
    await redis_client.script_flush()
    await store.users.register_user(a_user(now, user_id="u-2"))
    assert (await store.users.get_user("u-2")).user_id == "u-2"
    assert sample(metrics, "sesame_dependency_duration_seconds_count", "register_user") == 2
    assert sample(metrics, "sesame_dependency_failures_total", "register_user") == 0
