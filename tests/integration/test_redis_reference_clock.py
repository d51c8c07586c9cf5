"""Redis's clock, which each worker's is compared with (decision 0104): TIME on one server and on a
cluster's first primary, as an instant in UTC."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from redis.asyncio.cluster import RedisCluster

from sesame.clients.redis_store import RedisState

pytestmark = pytest.mark.integration

# The test's Redis runs on this machine: its clock is this process's, read a round trip apart.
NEAR = timedelta(seconds=1)


async def test_the_store_reads_redis_time(redis_store: RedisState) -> None:
    before = datetime.now(UTC)
    at = await redis_store.reference_now()
    after = datetime.now(UTC)
    assert at.tzinfo is UTC
    assert before - NEAR < at < after + NEAR


async def test_a_cluster_store_reads_a_primary_s_time(redis_cluster_client: RedisCluster) -> None:
    before = datetime.now(UTC)
    at = await RedisState.on(redis_cluster_client).reference_now()
    assert before - NEAR < at < datetime.now(UTC) + NEAR
