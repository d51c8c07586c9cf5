"""The lane (decision 0063): calls pipelined on one connection, each reply to its own call, on a real Redis.

What a pool gave for free and a lane must hold by itself: replies matched to their calls however many are in
flight, cancelled and mixed with pipelines; error replies as redis-py's exceptions, in place in a pipeline; a
connection lost failing every call waiting on it, and the next call connecting again; a silent Redis given up
after the socket timeout; the pool's settings (password, database) used to connect.
"""

from __future__ import annotations

import asyncio
import random
from pathlib import Path

import pytest
import redis.asyncio as aioredis
import uvloop
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import NoScriptError, ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

from sesame.clients.redis_lane import Lane, close_lane, lane_of
from sesame.clients.redis_server import EmbeddedRedis

pytestmark = pytest.mark.integration

ECHO = "return ARGV[1]"
FAIL = "return redis.error_reply('REFUSED ' .. ARGV[1])"


async def test_every_call_gets_its_own_reply_however_many_are_in_flight(redis_client: aioredis.Redis) -> None:
    """2,000 calls and pipelines in flight at once, some cancelled, some answered with an error: each that
    waits gets its own reply, in place."""
    lane = lane_of(redis_client)
    rng = random.Random(7)

    async def one(n: int) -> None:
        if n % 3 == 0:
            replies = await lane.pipeline([("EVAL", ECHO, 0, f"{n}-{i}") for i in range(rng.randint(1, 5))])
            assert replies == [f"{n}-{i}".encode() for i in range(len(replies))]
        elif n % 3 == 1:
            assert await lane.call("EVAL", ECHO, 0, str(n)) == str(n).encode()
        else:
            mixed = await lane.pipeline([("EVAL", ECHO, 0, n), ("EVAL", FAIL, 0, n), ("EVAL", ECHO, 0, -n)])
            assert (mixed[0], mixed[2]) == (str(n).encode(), str(-n).encode())
            assert isinstance(mixed[1], ResponseError)
            assert str(mixed[1]) == f"REFUSED {n}"

    async def cancelled(n: int) -> None:
        call = asyncio.ensure_future(lane.call("EVAL", ECHO, 0, f"gone {n}"))
        await asyncio.sleep(0)
        call.cancel()

    await asyncio.gather(*(one(n) if n % 10 else cancelled(n) for n in range(2000)))
    assert await lane.call("EVAL", ECHO, 0, "after") == b"after"


async def test_an_error_reply_is_redis_pys_exception(redis_client: aioredis.Redis) -> None:
    """NOSCRIPT is NoScriptError (the store loads the script again on it), other errors ResponseError; the
    connection serves on."""
    lane = lane_of(redis_client)
    with pytest.raises(NoScriptError):
        await lane.call("EVALSHA", "0" * 40, 0)
    with pytest.raises(ResponseError, match="REFUSED x"):
        await lane.call("EVAL", FAIL, 0, "x")
    assert await lane.call("EVAL", ECHO, 0, "on") == b"on"


async def test_a_lost_connection_fails_its_waiting_calls_and_the_next_call_connects_again(
    redis_client: aioredis.Redis,
) -> None:
    """Calls waiting when the connection is killed fail with ConnectionError (the store answers
    UNAVAILABLE); none is sent again; the next call gets a new connection."""
    lane = lane_of(redis_client)
    await lane.call("CLIENT", "SETNAME", "lane-under-test")
    # The lane's connection blocks in BLPOP; calls queue behind it; another client kills the connection.
    blocked = asyncio.ensure_future(lane.call("BLPOP", "lane:nothing", 5))
    behind = [asyncio.ensure_future(lane.call("INCR", "lane:count")) for _ in range(10)]
    await asyncio.sleep(0.2)
    [lane_id] = [c["id"] for c in await redis_client.client_list() if c["name"] == "lane-under-test"]
    await redis_client.client_kill_filter(_id=lane_id)
    failed = await asyncio.gather(blocked, *behind, return_exceptions=True)
    assert all(isinstance(f, RedisConnectionError) for f in failed), failed
    assert await redis_client.get("lane:count") is None  # none of the calls behind ran, none ran twice
    assert await lane.call("INCR", "lane:count") == 1
    assert not any(c["name"] == "lane-under-test" for c in await redis_client.client_list())


async def test_a_silent_redis_is_given_up_after_the_socket_timeout(redis_server: EmbeddedRedis) -> None:
    """A reply later than the client's socket timeout fails the call with TimeoutError and gives the
    connection up (its late replies would answer the wrong calls); the next call connects again."""
    client = aioredis.Redis.from_url(redis_server.url, socket_timeout=0.3)
    lane = Lane(client)
    try:
        with pytest.raises(RedisTimeoutError):
            await lane.call("BLPOP", "lane:silent", 2)
        assert await lane.call("EVAL", ECHO, 0, "fresh") == b"fresh"
    finally:
        await lane.close()
        await client.aclose()


async def test_calls_answered_in_time_never_time_out_however_long_the_lane_lives(
    redis_server: EmbeddedRedis,
) -> None:
    """One timer watches the oldest call, not one per call: calls answered at once, sent without pause for
    four socket timeouts, none fails; then a call Redis holds past the timeout, behind answered ones, does,
    and so does every call queued after it; the lane connects again."""
    client = aioredis.Redis.from_url(redis_server.url, socket_timeout=0.3)
    lane = Lane(client)
    try:
        until = asyncio.get_running_loop().time() + 1.2
        answered = 0
        while asyncio.get_running_loop().time() < until:
            replies = await asyncio.gather(*(lane.call("EVAL", ECHO, 0, str(n)) for n in range(20)))
            assert replies == [str(n).encode() for n in range(20)]
            answered += len(replies)
            await asyncio.sleep(0.01)
        assert answered > 200
        held = asyncio.gather(
            lane.call("BLPOP", "lane:held", 2), lane.call("EVAL", ECHO, 0, "behind"), return_exceptions=True
        )
        started = asyncio.get_running_loop().time()
        outcomes = await held
        assert [type(o) for o in outcomes] == [RedisTimeoutError, RedisTimeoutError]
        assert 0.25 < asyncio.get_running_loop().time() - started < 1.5
        assert await lane.call("EVAL", ECHO, 0, "again") == b"again"
    finally:
        await lane.close()
        await client.aclose()


async def test_the_pools_settings_connect_the_lane(tmp_path: Path) -> None:
    """A password and a database in the URL: the lane connects with them, as the pool's connections do."""
    with EmbeddedRedis(tmp_path) as server:
        admin = aioredis.Redis(port=server.port)
        await admin.config_set("requirepass", "s3same")
        await admin.aclose()
        client = aioredis.Redis.from_url(f"redis://:s3same@127.0.0.1:{server.port}/5")
        try:
            await lane_of(client).call("SET", "lane:db", "five")
            assert await client.get("lane:db") == b"five"
            refused = aioredis.Redis.from_url(f"redis://:wrong@127.0.0.1:{server.port}/5")
            with pytest.raises(RedisConnectionError):  # AUTH refused: redis-py's AuthenticationError
                await lane_of(refused).call("PING")
            await close_lane(refused)
            await refused.aclose()
        finally:
            await close_lane(client)
            await client.aclose()


async def test_a_closed_lane_connects_again_at_its_next_call(redis_client: aioredis.Redis) -> None:
    """Closing a lane fails nothing later: the next call connects again."""
    lane = lane_of(redis_client)
    assert await lane.call("EVAL", ECHO, 0, "one") == b"one"
    await lane.close()
    assert await lane.call("EVAL", ECHO, 0, "two") == b"two"


async def test_the_lane_speaks_resp2_whatever_the_url_asks(redis_server: EmbeddedRedis) -> None:
    """A URL asking for RESP3 (whose push messages would be taken for replies): the lane's connection is
    RESP2, its scripts' replies as they were written for."""
    client = aioredis.Redis.from_url(f"{redis_server.url}?protocol=3")
    try:
        lane = lane_of(client)
        assert await lane.call("EVAL", "return {1, 'a', redis.status_reply('OK')}", 0) == [1, b"a", b"OK"]
        hello = await lane.call("HELLO")
        assert hello[hello.index(b"proto") + 1] == 2
    finally:
        await close_lane(client)
        await client.aclose()


@pytest.mark.parametrize("loop", ["asyncio", "uvloop"])
def test_a_call_written_as_the_connection_closes_fails_instead_of_hanging(
    redis_server: EmbeddedRedis, loop: str
) -> None:
    """The connection closed under the lane just before a call is written (Redis gone, a reset): the call
    fails with ConnectionError at once, on asyncio's loop as on uvloop's (which `sesame serve` runs), and
    the next call connects again."""

    async def scenario() -> None:
        client = aioredis.Redis.from_url(redis_server.url, socket_timeout=30)
        lane = Lane(client)
        try:
            assert await lane.call("PING") == b"PONG"
            link = lane._link
            assert link is not None
            link.connection._writer.transport.abort()  # type: ignore[union-attr]
            async with asyncio.timeout(5):
                with pytest.raises(RedisConnectionError):
                    await lane.call("PING")
            assert await lane.call("PING") == b"PONG"
        finally:
            await lane.close()
            await client.aclose()

    if loop == "uvloop":
        uvloop.run(scenario())
    else:
        asyncio.run(scenario())
