"""A pool that grows under a burst opens connections without reading the installed distributions (0052), and
grows as far as the calls in flight ask, past redis-py's default bound of 100 (0136)."""

from __future__ import annotations

import asyncio
from importlib import metadata

import pytest

from sesame.clients.redis_connect import beside, connect
from sesame.clients.redis_server import EmbeddedRedis

pytestmark = pytest.mark.integration

BURST = 150  # calls at once, each holding its connection: more than redis-py 8's default pool of 100


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


@pytest.mark.parametrize("pool", ["store", "beside"])
async def test_a_burst_beyond_a_hundred_calls_opens_a_connection_for_each(
    redis_server: EmbeddedRedis, pool: str
) -> None:
    """BURST blocking calls at once on the state's client (`connect`) and on a pool beside it (the outbox's,
    `beside`), each holding its connection for 0.3 s: every one answered, none refused by the pool. Before:
    redis-py 8's pool for one server holds 100 connections by default and fails the 101st call at once
    (MaxConnectionsError, which the store answers UNAVAILABLE): 43 of a burst of 1,000 GetUser calls on a
    loaded machine, where a worker's 100 calls in flight shared the pool with its own background calls."""
    store = connect(redis_server.url, timeout=5.0)
    client = store if pool == "store" else beside(store, timeout=5.0)
    try:
        calls = (client.blpop(["sesame-test:nothing"], timeout=0.3) for _ in range(BURST))
        answers = await asyncio.gather(*calls, return_exceptions=True)
    finally:
        await client.aclose()
        await store.aclose()
    refused = [repr(answer) for answer in answers if answer is not None]
    assert refused == [], f"{len(refused)} of {BURST} refused, e.g. {refused[0]}"


async def test_the_options_a_url_may_set_reach_the_connection(redis_server: EmbeddedRedis) -> None:
    """Every option of the allow-list (decision 0166's URL rules) is taken by a real connection: the name
    given is the one Redis lists, the database the one written to."""
    options = "client_name=sesame-probe&socket_keepalive=true&health_check_interval=5"
    url = f"{redis_server.url.removesuffix('/0')}/3?{options}"
    client = connect(url, timeout=5.0)
    try:
        await client.set("sesame-test:db", b"3")
        names = {entry["name"] for entry in await client.client_list()}
        assert await client.execute_command("CLIENT", "GETNAME") == b"sesame-probe"
        assert "sesame-probe" in names
        assert (await client.info("keyspace")).get("db3", {}).get("keys") == 1
        await client.delete("sesame-test:db")
    finally:
        await client.aclose()
