"""Commands packed for the wire by hiredis's C packer instead of redis-py's Python loop (decision 0049).

redis-py's asyncio connection packs a command argument by argument in Python, joining the growing buffer
again for each one: open_challenge.lua's ~70 arguments cost more than 100 µs of a worker per call, a
tenth of the server's Redis client time per flow. hiredis (already installed: `redis[hiredis]`) packs the
same bytes in C. A command hiredis refuses (a type it does not take, a bytearray) is packed by redis-py as
before, which answers it or raises its own DataError: the bytes on the wire and the errors are unchanged.
"""

from __future__ import annotations

from typing import Any, TypeVar, cast

import hiredis
import redis.asyncio as aioredis
from redis.asyncio.connection import AbstractConnection

from sesame.clients.redis_closed_writes import ClosedWrites

_PACKED: dict[type[AbstractConnection], type[AbstractConnection]] = {}
C = TypeVar("C", bound=AbstractConnection)


class _CPacking(AbstractConnection):
    """The C packer in front of redis-py's (put before the pool's connection class: see `c_packed`)."""

    def pack_command(self, *args: Any) -> list[bytes]:
        command = args[0]
        # As redis-py does: a command name with spaces ('CONFIG GET') is sent as separate arguments.
        if isinstance(command, str):
            args = (*command.encode().split(), *args[1:])
        elif b" " in command:
            args = (*command.split(), *args[1:])
        try:
            return [hiredis.pack_command(args)]
        except TypeError:
            return super().pack_command(*args)


def c_packed(client: aioredis.Redis) -> aioredis.Redis:
    """`client`, its pool's connections (made from now on) packing commands in C, and failing a write on a
    closed connection as ConnectionError (`ClosedWrites`, decision 0062). Call it before the first command:
    connections already made keep packing in Python."""
    pool = client.connection_pool
    pool.connection_class = packed_class(pool.connection_class)
    return client


def packed_class(base: type[C]) -> type[C]:
    """`base` packing commands in C and failing a write on a closed connection as ConnectionError: the one
    connection class of every Sésame client, a pool's (`c_packed`) or a cluster's nodes' (decision 0066)."""
    if issubclass(base, _CPacking):
        return base
    packed = _PACKED.get(base)
    if packed is None:
        packed = _PACKED[base] = type(f"CPacked{base.__name__}", (_CPacking, ClosedWrites, base), {})
    return cast("type[C]", packed)
