"""A pool that grows under a burst opens connections without reading the installed distributions (0052)."""

from __future__ import annotations

import asyncio
from importlib import metadata

import pytest

from sesame.clients.redis_connect import connect
from sesame.clients.redis_server import EmbeddedRedis

pytestmark = pytest.mark.integration


async def test_new_connections_do_not_look_up_redis_pys_version(
    redis_server: EmbeddedRedis, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Eight blocking calls at once on a fresh client open eight connections, and none of them asks
    importlib.metadata for redis-py's version (a scan of sys.path on the event loop per connection)."""
    asked: list[str] = []
    version = metadata.version

    def watched(name: str) -> str:
        asked.append(name)
        return version(name)

    client = connect(redis_server.url, timeout=5.0)
    monkeypatch.setattr(metadata, "version", watched)
    try:
        await asyncio.gather(*(client.blpop(["sesame-test:nothing"], timeout=0.2) for _ in range(8)))
        clients = await client.client_list()
    finally:
        await client.aclose()
    assert asked == []
    assert len(clients) >= 8
