"""The ProviderIds contract: the in-memory fake and Redis alike (decision 0030)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
import redis.asyncio as aioredis

from sesame.clients.redis_provider_ids import RedisProviderIds
from sesame.server.domain.errors import ProviderIdUnknown
from sesame.server.domain.model import SentPart
from sesame.server.domain.ports import ProviderIds
from tests.contracts.conftest import WallClock
from tests.fakes.provider_ids import MemoryProviderIds

PART = SentPart("00ff.k1.d6", "smpp-abc", 2)


def _later() -> datetime:
    return datetime.now(UTC) + timedelta(hours=1)


@pytest.fixture(params=["memory", pytest.param("redis", marks=pytest.mark.integration)])
def ids(request: pytest.FixtureRequest) -> ProviderIds:
    """Each test runs on the fake and on Redis."""
    if request.param == "memory":
        return MemoryProviderIds(WallClock())
    client: aioredis.Redis = request.getfixturevalue("redis_client")
    return RedisProviderIds(client)


async def test_a_remembered_id_leads_back_to_its_message(ids: ProviderIds):
    """owner returns what remember stored."""
    await ids.remember("sim000001", PART, _later())
    assert await ids.owner("sim000001") == PART


async def test_an_unknown_id_raises(ids: ProviderIds):
    """An id never remembered raises ProviderIdUnknown."""
    with pytest.raises(ProviderIdUnknown):
        await ids.owner("sim-never")


async def test_an_id_past_its_time_is_forgotten(ids: ProviderIds):
    """An id remembered until an instant already past reads as unknown."""
    await ids.remember("sim000002", PART, datetime.now(UTC) - timedelta(seconds=1))
    with pytest.raises(ProviderIdUnknown):
        await ids.owner("sim000002")


async def test_each_delivered_part_counts_once(ids: ProviderIds):
    """Two receipts of one part and one of another: two parts delivered."""
    counts = [await ids.delivered_parts("smpp-abc", part, 2, _later()) for part in ("p1", "p1", "p2")]
    assert counts == [1, 1, 2]


async def test_no_more_parts_are_kept_than_the_message_has(ids: ProviderIds):
    """A message of two parts: a third id (a part sent again, a replay) is not counted, and the first two
    still count once each (decision 0111: the set is bounded by the part count)."""
    counts = [await ids.delivered_parts("smpp-two", part, 2, _later()) for part in ("p1", "p2", "p3", "p1")]
    assert counts == [1, 2, 2, 2]
