"""A command written on a connection its peer already closed fails as redis-py's ConnectionError (0062).

redis-py turns a socket's OSError into its ConnectionError (the store's StoreUnavailable: UNAVAILABLE, retry).
The workers' uvloop does not raise OSError there: a write on a transport it has seen closed raises
RuntimeError ("unable to perform operation on <TCPTransport closed=True ...>; the handler is closed"). That
happens when Redis dies, or restarts, between a new connection's connect and its first command (HELLO): the
RuntimeError left the store untranslated and the call was answered INTERNAL. A Redis restart drill under load
answered 11 of ~25,000 calls so in 63 restarts; none since.
"""

from __future__ import annotations

import errno
from collections.abc import Iterable

from redis.asyncio.connection import AbstractConnection


class ClosedWrites(AbstractConnection):
    """A write on a closed transport is the OSError redis-py expects (put before the pool's connection
    class: see `sesame.clients.redis_packing.packed_class`)."""

    async def _send_packed_command(self, command: Iterable[bytes]) -> None:
        writer = self._writer
        try:
            await super()._send_packed_command(command)
        except RuntimeError as exc:
            if writer is None or not writer.transport.is_closing():
                raise  # not a closed connection: a fault of ours, answered INTERNAL and logged
            raise ConnectionResetError(errno.ECONNRESET, "the connection closed before the write") from exc
