"""A command written on a connection its peer already closed fails as redis-py's ConnectionError (0062).

redis-py turns a socket's OSError into its ConnectionError (the store's StoreUnavailable: UNAVAILABLE, retry).
The workers' uvloop does not raise OSError there: a write on a transport it has seen closed raises
RuntimeError ("unable to perform operation on <TCPTransport closed=True ...>; the handler is closed"). That
happens when Redis dies, or restarts, between a new connection's connect and its first command (HELLO): the
RuntimeError left the store untranslated and the call was answered INTERNAL. A Redis restart drill under load
answered 11 of ~25,000 calls so in 63 restarts; none since.

A Redis Cluster's client adds a second way (decision 0066): at a CLUSTERDOWN it closes every node's
connections, those in use by other calls too; a connection closed so between its command's start and its write
(redis-py writes in a task of its own) has no writer left, an AttributeError that was answered INTERNAL too.
"""

from __future__ import annotations

import errno
from collections.abc import Iterable

from redis.asyncio.connection import AbstractConnection


class ClosedWrites(AbstractConnection):
    """A write on a closed transport, or on a connection closed before it, is the OSError redis-py expects
    (put before the pool's connection class: see `sesame.clients.redis_packing.packed_class`)."""

    async def _send_packed_command(self, command: Iterable[bytes]) -> None:
        writer = self._writer
        if writer is None:
            # Closed by the client itself between the command's start and its write (redis-py runs the write
            # in a task of its own): a cluster client closes every node's connections, in use or not, at a
            # CLUSTERDOWN (decision 0066).
            raise ConnectionResetError(errno.ECONNRESET, "the connection was closed before the write")
        try:
            await super()._send_packed_command(command)
        except RuntimeError as exc:
            if not writer.transport.is_closing():
                raise  # not a closed connection: a fault of ours, answered INTERNAL and logged
            raise ConnectionResetError(errno.ECONNRESET, "the connection closed before the write") from exc
