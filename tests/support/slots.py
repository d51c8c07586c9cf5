"""Which hash slots each call to Redis touches, as Redis itself saw it (MONITOR), for Redis Cluster's rule:
one slot per call (docs/decisions/0044).

MONITOR shows every command a client sends and, right after a script's EVALSHA, each command the script ran
(`[0 lua]`), with the keys it really touched, declared or not. The keys of each command are asked of Redis
(COMMAND GETKEYS) and their slots computed as a cluster would (CRC16 of the hash tag).
"""

from __future__ import annotations

import asyncio
import contextlib
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import redis.asyncio as aioredis
from redis.crc import key_slot
from redis.exceptions import ResponseError

_LINE = re.compile(r"^\d+\.\d+ \[\d+ ([^\]]+)\] (.*)$", re.DOTALL)
_ARG = re.compile(r'"((?:[^"\\]|\\.)*)"')
_ESCAPE = re.compile(rb"\\(x[0-9a-fA-F]{2}|.)", re.DOTALL)
_SIMPLE = {b"n": b"\n", b"r": b"\r", b"t": b"\t", b"a": b"\a", b"b": b"\b"}


def _unescaped(text: str) -> bytes:
    def one(match: re.Match[bytes]) -> bytes:
        code = match.group(1)
        if code.startswith(b"x") and len(code) == 3:
            return bytes([int(code[1:], 16)])
        return _SIMPLE.get(code, code)

    return _ESCAPE.sub(one, text.encode("latin-1", "backslashreplace"))


@dataclass
class Call:
    """One command a client sent and, for a script, the commands it ran."""

    command: list[bytes]
    inner: list[list[bytes]] = field(default_factory=list)

    @property
    def name(self) -> str:
        """The command's name; a script's is `script:<sha>` until named by its source."""
        return self.command[0].decode().lower()


@dataclass
class Watched:
    """What MONITOR saw, in order."""

    calls: list[Call] = field(default_factory=list)


@contextlib.asynccontextmanager
async def monitored(url: str) -> AsyncIterator[Watched]:
    """Watch every command sent to the Redis at `url` while the block runs."""
    watched = Watched()
    client = aioredis.Redis.from_url(url)
    connection = await client.connection_pool.get_connection()
    await connection.send_command("MONITOR")
    assert await connection.read_response() in {b"OK", "OK"}

    async def read() -> None:
        while True:
            line = await connection.read_response()
            text = line.decode("latin-1") if isinstance(line, bytes) else str(line)
            match = _LINE.match(text)
            if match is None:
                continue
            args = [_unescaped(arg) for arg in _ARG.findall(match.group(2))]
            if not args:
                continue
            if match.group(1) == "lua":
                if watched.calls:
                    watched.calls[-1].inner.append(args)
            else:
                watched.calls.append(Call(args))

    reader = asyncio.create_task(read())
    try:
        yield watched
        await asyncio.sleep(0.2)  # the last lines
    finally:
        reader.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await reader
        await connection.disconnect()
        await client.connection_pool.disconnect()
        await client.aclose()


async def keys_of(client: aioredis.Redis, command: list[bytes]) -> list[bytes]:
    """The keys of one command, as Redis finds them (none for a command without keys)."""
    try:
        found = await client.execute_command("COMMAND GETKEYS", *command)
    except ResponseError:
        return []
    return [key if isinstance(key, bytes) else str(key).encode() for key in found]


async def slots_of(client: aioredis.Redis, call: Call) -> dict[int, str]:
    """Every slot the call touched, its own keys (a script's declared ones) and its script's commands', each
    with the hash tag (or key) that put a key there."""
    keys = await keys_of(client, call.command)
    for inner in call.inner:
        keys += await keys_of(client, inner)
    return {key_slot(key): _tag(key) for key in keys}


def _tag(key: bytes) -> str:
    start = key.find(b"{")
    end = key.find(b"}", start + 1)
    return key[start : end + 1].decode() if start >= 0 and end > start + 1 else key.decode()
