"""`Lane`: one connection on which a worker's scripts are pipelined, each reply matched to its call in order
(decision 0063).

redis-py's asyncio client sends a command by taking a connection from its pool, writing, awaiting the reply
through its parser and giving the connection back: about 0.25 ms of a worker's CPU per command, as much as a
whole gRPC call (measured: a bare grpc.aio server doing one EVALSHA per call through redis-py costs 0.57 ms
per call against 0.29 without; through a lane, 0.38). A lane writes each call at once on one connection and a
single reader task hands the replies out in order (Redis answers the commands of a connection in the order
they came): no pool, no lock, one read for as many replies as arrived together.

The connection is made by redis-py itself (the pool's connection class and settings: TLS, AUTH, SELECT, the
client's name and CLIENT SETINFO), then only its socket streams are used. Only commands that answer at once go
on a lane (scripts: Redis runs them one at a time anyway); a blocking read would hold up every call behind it.

Failures are redis-py's exceptions, as from a pool, so the store's funnel translates them as before: an error
reply is its `ResponseError` (NOSCRIPT its `NoScriptError`); a connection closed, cut or silent beyond the
socket timeout is `ConnectionError` or `TimeoutError` for every call waiting on it (whether Redis ran them is
unknown, as with a pool's connection), and the next call connects again. Nothing is sent twice.
"""

from __future__ import annotations

import asyncio
import contextlib
import weakref
from collections import deque
from collections.abc import Sequence
from typing import Any, Final, cast

import hiredis
import redis.asyncio as aioredis
from redis._parsers import _AsyncHiredisParser
from redis.asyncio.connection import AbstractConnection
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import InvalidResponse
from redis.exceptions import TimeoutError as RedisTimeoutError

READ_SIZE: Final = 65536
Arg = str | bytes | int | float | memoryview
Command = Sequence[Arg]


class _Waiting:
    """A call's place in the line: how many replies it waits for (None: one, not in a list), those in, and
    when it was queued (the loop's clock)."""

    __slots__ = ("future", "queued_at", "replies", "wanted")

    def __init__(self, future: asyncio.Future[Any], wanted: int | None, queued_at: float) -> None:
        self.future = future
        self.wanted = wanted
        self.queued_at = queued_at
        self.replies: list[Any] = []


class _Link:
    """One connected connection, its reader task and the calls waiting for their replies, oldest first.

    One timer watches the oldest call, not one per call (a timer per call was 2-3 % of a worker's CPU): when
    the oldest has waited `timeout` (the client's socket timeout), Redis is silent beyond it and the link is
    given up, every call waiting failing with TimeoutError, as redis-py gives a read up.
    """

    def __init__(self, connection: AbstractConnection, timeout: float | None) -> None:
        self.loop = asyncio.get_running_loop()
        self._timeout = timeout
        self._watch: asyncio.TimerHandle | None = None
        self.connection = connection
        self._reader: asyncio.StreamReader = connection._reader  # type: ignore[assignment]  # noqa: SLF001
        self._writer: asyncio.StreamWriter = connection._writer  # type: ignore[assignment]  # noqa: SLF001
        self.waiting: deque[_Waiting] = deque()
        self.failure: Exception | None = None
        self._out: list[bytes] = []
        self._task = self.loop.create_task(self._read(), name="redis-lane-reader")

    def send(self, packed: bytes, wanted: int | None) -> asyncio.Future[Any]:
        """Queue one call; its future settles with its reply (`wanted` None) or the list of `wanted` ones.
        The calls queued in one turn of the loop leave in one write, once the turn's tasks ran."""
        future = self.loop.create_future()
        now = self.loop.time()
        self.waiting.append(_Waiting(future, wanted, now))
        if self._watch is None and self._timeout is not None:
            self._watch = self.loop.call_at(now + self._timeout, self._watched)
        if not self._out:
            self.loop.call_soon(self._flush)
        self._out.append(packed)
        return future

    def _watched(self) -> None:
        """The oldest call's time is up, or the watch moves on to the call that is oldest now."""
        self._watch = None
        if not self.waiting or self.failure is not None or self._timeout is None:
            return
        due = self.waiting[0].queued_at + self._timeout
        if self.loop.time() >= due:
            self.fail(RedisTimeoutError("Timeout reading from Redis"))
        else:
            self._watch = self.loop.call_at(due, self._watched)

    def _flush(self) -> None:
        out, self._out = self._out, []
        if self.failure is None:
            try:
                self._writer.write(b"".join(out))
            except Exception as exc:  # noqa: BLE001 (uvloop: RuntimeError on a transport it saw closed)
                self.fail(_lost(exc))

    async def _read(self) -> None:
        parser = hiredis.Reader(protocolError=InvalidResponse, replyError=_AsyncHiredisParser.parse_error)
        try:
            while data := await self._reader.read(READ_SIZE):
                parser.feed(data)
                while (reply := parser.gets()) is not False:
                    self._hand_out(reply)
            self.fail(RedisConnectionError("Connection closed by server."))
        except asyncio.CancelledError:
            self.fail(RedisConnectionError("Connection closed."))
            raise
        except Exception as exc:  # noqa: BLE001 (whatever broke the link fails every call waiting on it)
            self.fail(exc if isinstance(exc, RedisConnectionError | InvalidResponse) else _lost(exc))

    def _hand_out(self, reply: Any) -> None:
        if not self.waiting:
            raise InvalidResponse("a reply no call waits for")
        head = self.waiting[0]
        if head.wanted is None:
            self.waiting.popleft()
            if not head.future.done():
                head.future.set_result(reply)
            return
        head.replies.append(reply)
        if len(head.replies) == head.wanted:
            self.waiting.popleft()
            if not head.future.done():
                head.future.set_result(head.replies)

    def fail(self, failure: Exception) -> None:
        """Close the connection; every call waiting gets `failure`. Idempotent."""
        if self.failure is not None:
            return
        self.failure = failure
        if self._watch is not None:
            self._watch.cancel()
            self._watch = None
        while self.waiting:
            future = self.waiting.popleft().future
            if not future.done():
                future.set_exception(failure)
        with contextlib.suppress(Exception):
            self._writer.close()

    async def close(self) -> None:
        self.fail(RedisConnectionError("Lane closed."))
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await self._task


class Lane:
    """The pipelined connection of one client's pool (see the module's doc)."""

    def __init__(self, client: aioredis.Redis) -> None:
        """Connect as `client`'s pool does (lazily, at the first call)."""
        self._pool = client.connection_pool
        self._timeout: float | None = self._pool.connection_kwargs.get("socket_timeout")
        self._link: _Link | None = None
        self._connecting: asyncio.Task[_Link] | None = None

    async def call(self, *command: Arg) -> Any:
        """One command's reply; an error reply raised as redis-py's exception for it."""
        link = self._link
        if link is None or link.failure is not None or link.loop is not asyncio.get_running_loop():
            link = await self._connected()
        reply = await link.send(_packed(command), None)
        if isinstance(reply, Exception):
            raise reply
        return reply

    async def pipeline(self, commands: Sequence[Command]) -> list[Any]:
        """The replies of `commands`, written at once, in order; an error reply is its exception, in place."""
        if not commands:
            return []
        link = self._link
        if link is None or link.failure is not None or link.loop is not asyncio.get_running_loop():
            link = await self._connected()
        packed = b"".join(_packed(command) for command in commands)
        replies: list[Any] = await link.send(packed, len(commands))
        return replies

    async def close(self) -> None:
        """Close the connection (calls waiting fail); the next call connects again."""
        connecting = self._connecting
        if connecting is not None and connecting.get_loop() is asyncio.get_running_loop():
            with contextlib.suppress(Exception):  # its failure is its callers'; a link it made closes below
                await asyncio.shield(connecting)
        link, self._link = self._link, None
        if link is not None:
            await link.close()

    async def _connected(self) -> _Link:
        """The link, connecting once for every call that finds none: calls that come while a connection is
        being made wait for that one attempt and share its outcome. Each making its own in turn behind a
        lock, calls to a Redis that accepts connections and never answers (hung, stopped) waited one socket
        timeout per call before theirs: the k-th call of a burst was refused after k timeouts."""
        loop = asyncio.get_running_loop()
        connecting = self._connecting
        if connecting is None or connecting.get_loop() is not loop:
            link = self._link
            if link is not None and link.failure is None and link.loop is loop:
                return link
            connecting = self._connecting = loop.create_task(self._connect(link), name="redis-lane-connect")
            connecting.add_done_callback(self._connect_done)
        # Shielded: a call cancelled (its caller gone) does not cancel the attempt the others wait for.
        return await asyncio.shield(connecting)

    def _connect_done(self, connecting: asyncio.Task[_Link]) -> None:
        if self._connecting is connecting:
            self._connecting = None
        if not connecting.cancelled():
            connecting.exception()  # retrieved here too: every call waiting on it may have been cancelled

    async def _connect(self, old: _Link | None) -> _Link:
        if old is not None:
            await old.close()
        # RESP2, whatever the URL asked: the scripts' replies as they were written for, and no push
        # message (RESP3) that would be taken for the reply of the call at the head of the line.
        connection = self._pool.connection_class(**{**self._pool.connection_kwargs, "protocol": 2})
        await connection.connect()  # type: ignore[no-untyped-call]
        self._link = _Link(connection, self._timeout)
        return self._link


def _packed(command: Command) -> bytes:
    """The command as Redis reads it (hiredis's C packer, as the pool's connections use: decision 0049)."""
    packed: bytes = hiredis.pack_command(cast("Any", tuple(command)))
    return packed


def _lost(exc: Exception) -> RedisConnectionError:
    """A socket's failure (reset, TLS closed...) as the connection error redis-py would raise for it."""
    lost = RedisConnectionError(f"Error while reading from Redis: {type(exc).__name__}")
    lost.__cause__ = exc
    return lost


_LANES: weakref.WeakKeyDictionary[aioredis.Redis, Lane] = weakref.WeakKeyDictionary()


def lane_of(client: aioredis.Redis) -> Lane:
    """The lane of `client` (one per client, whoever runs scripts on it), made at the first ask."""
    lane = _LANES.get(client)
    if lane is None:
        lane = _LANES[client] = Lane(client)
    return lane


async def close_lane(client: object) -> None:
    """Close the lane of `client`, if it has one (with the client: its connection is not in the pool)."""
    lane = _LANES.get(client) if isinstance(client, aioredis.Redis) else None
    if lane is not None:
        await lane.close()
