"""The `store` fixture of the StateStore contract suites: every test runs on the fake and on Redis."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from sesame.clients.redis_store import RedisStateStore
from tests.fakes.state_store import MemoryStateStore


class WallClock:
    """The real UTC time, which is what Redis purges expired keys by."""

    def now(self) -> datetime:
        return datetime.now(UTC)


@pytest.fixture(params=["memory", pytest.param("redis", marks=pytest.mark.integration)])
def store(request: pytest.FixtureRequest) -> MemoryStateStore | RedisStateStore:
    """Each test runs once on the in-memory fake and once on Redis."""
    if request.param == "memory":
        return MemoryStateStore(purge_clock=WallClock())
    redis_store: RedisStateStore = request.getfixturevalue("redis_store")
    return redis_store
