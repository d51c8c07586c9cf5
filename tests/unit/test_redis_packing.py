"""Commands packed in C (sesame.clients.redis_packing, decision 0049): redis-py's bytes and errors."""

from __future__ import annotations

from typing import Any

import pytest
import redis.asyncio as aioredis
from redis.asyncio.cluster import RedisCluster
from redis.asyncio.connection import AbstractConnection, Connection, SSLConnection, UnixDomainSocketConnection
from redis.exceptions import DataError

from sesame.clients.redis_closed_writes import ClosedWrites
from sesame.clients.redis_connect import beside, connect
from sesame.clients.redis_outbox import RedisOutbox
from sesame.clients.redis_packing import c_packed, packed_class
from sesame.clients.redis_store import RedisState

COMMANDS: list[tuple[Any, ...]] = [
    ("EVALSHA", "a" * 40, 2, "sesame:{u:0123456789abcdef}:c:x", "k2", 1_733_000_000_000, -1, "", b"\x00\xff"),
    ("HSET", "k", "é", "ü" * 300, "n", 2**70, "f", 1.5, "g", 0.1, "m", memoryview(b"ab")),
    ("CONFIG GET", "maxmemory"),
    (b"CLIENT SETNAME", b"x"),
    ("XADD", "s", "*", *(str(i) for i in range(200)), "big", "x" * 20_000),
    ("SET", "k", bytearray(b"redis-py packs it; hiredis does not")),
]


def _wire(connection: AbstractConnection, command: tuple[Any, ...]) -> bytes:
    return b"".join(bytes(chunk) for chunk in connection.pack_command(*command))


@pytest.mark.parametrize("command", COMMANDS)
def test_a_command_is_packed_to_the_bytes_redis_py_sends(command: tuple[Any, ...]) -> None:
    client = c_packed(aioredis.Redis())
    packed = client.connection_pool.connection_class()
    assert type(packed).__name__ == "CPackedConnection"
    assert _wire(packed, command) == _wire(Connection(), command)


@pytest.mark.parametrize("value", [None, True, object()])
def test_a_value_redis_py_refuses_is_refused_alike(value: Any) -> None:
    packed = c_packed(aioredis.Redis()).connection_pool.connection_class()
    with pytest.raises(DataError):
        packed.pack_command("SET", "k", value)
    with pytest.raises(DataError):
        Connection().pack_command("SET", "k", value)


def test_the_pools_of_the_state_and_the_outbox_pack_in_c_whatever_the_url() -> None:
    state = RedisState.from_url("redis://127.0.0.1:1/0")
    assert type(state.place._client.connection_pool.connection_class()).__name__ == "CPackedConnection"
    beside = state.outbox()
    assert (
        beside._client.connection_pool.connection_class
        is state.place._client.connection_pool.connection_class
    )
    socket = RedisOutbox.from_url("unix:///tmp/no-such.sock")
    cls = socket._client.connection_pool.connection_class
    assert issubclass(cls, UnixDomainSocketConnection)
    assert cls.__name__ == "CPackedUnixDomainSocketConnection"
    assert c_packed(socket._client).connection_pool.connection_class is cls


@pytest.mark.parametrize(
    ("url", "base"),
    [("redis+cluster://127.0.0.1:1", Connection), ("rediss+cluster://127.0.0.1:1", SSLConnection)],
)
def test_a_clusters_nodes_have_the_same_connection_class_and_keep_their_tls(url: str, base: type) -> None:
    """Its seeds, the nodes it will learn (made from its connection kwargs) and the outbox's client beside it:
    C packing and closed writes as a ConnectionError (decision 0066), on TLS when the URL asks for it."""
    client = connect(url, timeout=1.0)
    assert isinstance(client, RedisCluster)
    for made in (client, beside(client, timeout=1.0)):
        assert isinstance(made, RedisCluster)
        classes = {node.connection_class for node in made.nodes_manager.startup_nodes.values()}
        classes.add(made.nodes_manager.connection_kwargs["connection_class"])
        assert classes == {packed_class(base)}
        assert issubclass(packed_class(base), ClosedWrites)
