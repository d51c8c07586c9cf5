"""What became of one command written on a connection a test broke under it (decisions 0062, 0066)."""

from __future__ import annotations

from collections.abc import Awaitable

from redis.exceptions import ConnectionError as RedisConnectionError


async def write_outcome(sending: Awaitable[object]) -> str:
    """`ConnectionError` when the write failed as redis-py's ConnectionError (what the store answers
    UNAVAILABLE), the class name of any other exception (answered INTERNAL), `written` when it went."""
    try:
        await sending
    except RedisConnectionError:
        return "ConnectionError"
    except Exception as exc:
        return type(exc).__name__
    return "written"
