"""The `store` fixture of the State contract suites: every test runs on the fake and on Redis."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from sesame.clients.redis_store import RedisState
from tests.fakes.state import MemoryState, memory_state


class WallClock:
    """The real UTC time, which is what Redis purges expired keys by."""

    def now(self) -> datetime:
        return datetime.now(UTC)


@pytest.fixture(params=["memory", pytest.param("redis", marks=pytest.mark.integration)])
def store(request: pytest.FixtureRequest) -> MemoryState | RedisState:
    """Each test runs once on the in-memory fake and once on Redis."""
    if request.param == "memory":
        return memory_state(purge_clock=WallClock())
    redis_store: RedisState = request.getfixturevalue("redis_store")
    return redis_store
