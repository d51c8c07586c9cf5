"""A command written on a cluster node's connection whose peer reset it is redis-py's ConnectionError, on the
workers' uvloop too, as on one server (decisions 0062, 0066). uvloop raises RuntimeError for a write on a
transport it saw closed: a node dying between a new connection's connect and its first command. redis-py's
cluster client passed it on untouched (it retries and reroutes only on its ConnectionError): the call was
answered INTERNAL. The reset is the loop's own: the transport aborted, as the loop does when the peer's RST
arrives."""

from __future__ import annotations

import asyncio

import pytest
import uvloop
from redis.asyncio.cluster import RedisCluster

from sesame.clients.redis_connect import beside, connect
from sesame.clients.redis_scripts import Scripts
from tests.support.redis_cluster import LoopbackCluster
from tests.support.write_outcome import write_outcome

pytestmark = pytest.mark.integration

LEASE = "journal_lease"  # a one-key script (the sealer's lease), run on a key of our choosing


async def _reset_connection(client: RedisCluster, key: str) -> None:
    """Connect to the primary of `key`'s slot and reset that connection under the client, left in its pool."""
    await client.initialize()
    node = client.get_node_from_key(key)
    connection = node.acquire_connection()
    await connection.connect()
    connection._writer.transport.abort()
    node.release(connection)
    await asyncio.sleep(0)


@pytest.mark.parametrize("made_by", ["connect", "beside"])
def test_a_write_on_a_node_connection_reset_under_it_is_a_connection_error(
    redis_cluster: LoopbackCluster, made_by: str
) -> None:
    """Both the store's cluster client and the one an outbox makes beside it (`beside`)."""

    async def written() -> str:
        first = connect(redis_cluster.url, timeout=2.0)  # as the state store opens it
        client = first if made_by == "connect" else beside(first, timeout=2.0)
        assert isinstance(client, RedisCluster)
        try:
            await client.initialize()
            node = client.get_primaries()[0]
            connection = node.acquire_connection()
            await connection.connect()
            connection._writer.transport.abort()
            await asyncio.sleep(0)
            return await write_outcome(connection.send_command("PING"))
        finally:
            await client.aclose()
            if client is not first:
                await first.aclose()

    assert uvloop.run(written()) == "ConnectionError"


def test_a_node_connection_closed_by_the_client_under_a_write_is_a_connection_error(
    redis_cluster: LoopbackCluster,
) -> None:
    """redis-py writes a command in a task of its own (its socket timeout's wait_for); a cluster client closes
    every node's connections, in use or not, when a node answers CLUSTERDOWN. A connection closed so between
    its command's start and its write (a new connection's HELLO, in the e2e drill) had no writer left: an
    AttributeError, answered INTERNAL."""

    async def written() -> str:
        client = connect(redis_cluster.url, timeout=2.0)
        assert isinstance(client, RedisCluster)
        try:
            await client.initialize()
            connection = client.get_primaries()[0].acquire_connection()
            await connection.connect()
            sending = asyncio.create_task(connection.send_command("PING"))
            await asyncio.sleep(0)  # the command started; its write waits in a task of its own
            await connection.disconnect(nowait=True)  # as the client's aclose() does to every connection
            return await write_outcome(sending)
        finally:
            await client.aclose()

    assert uvloop.run(written()) == "ConnectionError"
    assert asyncio.run(written()) == "ConnectionError"


def test_a_script_on_a_node_connection_reset_under_it_is_run_on_a_new_one(
    redis_cluster: LoopbackCluster,
) -> None:
    """Through the store's funnel, on a client with redis-py's default retry (as the outbox's own): the
    ConnectionError is one its cluster client retries on (the slots learnt again, a new connection), so the
    script answers where it was an INTERNAL. (The state store's client has no retry: UNAVAILABLE.)"""

    async def ran() -> object:
        client = connect(redis_cluster.url, timeout=2.0)
        assert isinstance(client, RedisCluster)
        scripts = Scripts(client)
        key = "test:lease:{reset}"
        try:
            await client.delete(key)
            await _reset_connection(client, key)
            return await scripts.run(LEASE, [key], ["sealer-1", 60_000])
        finally:
            await client.aclose()

    assert uvloop.run(ran()) == 1
