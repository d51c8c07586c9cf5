"""A command written on a connection whose peer reset it is redis-py's ConnectionError, on the workers' uvloop
too (decision 0062). uvloop raises RuntimeError for a write on a transport it saw closed: when Redis died
between a new connection's connect and its HELLO, the store let it through and the call answered INTERNAL
(a Redis restart drill: 11 calls in 63 restarts). The reset is the loop's own: the transport aborted, as the
loop does when the peer's RST arrives."""

from __future__ import annotations

import asyncio

import pytest
import uvloop

from sesame.clients.redis_connect import connect
from sesame.clients.redis_server import EmbeddedRedis
from tests.support.write_outcome import write_outcome

pytestmark = pytest.mark.integration


def test_a_write_on_a_connection_reset_under_it_is_a_connection_error(redis_server: EmbeddedRedis) -> None:
    async def written() -> str:
        client = connect(redis_server.url, timeout=2.0)  # as the state store opens it
        try:
            connection = await client.connection_pool.get_connection()
            connection._writer.transport.abort()
            await asyncio.sleep(0)
            return await write_outcome(connection.send_command("PING"))
        finally:
            await client.aclose()

    assert uvloop.run(written()) == "ConnectionError"
