"""`OutboxBell`: which shards' outboxes had an entry added, heard without taking anything (decision 0044).

A dispatcher takes entries with one script per shard (`take_outbox.lua`, one slot each), which cannot block.
To wait for new entries on every shard without reading each shard's stream all the time, one watcher per
shard blocks in XREAD (no consumer group: it claims nothing, so a watcher cancelled or killed mid-read
leaves no entry pending with nobody) after the last id it saw, and rings: it marks its shard and wakes the
dispatch loops, which then take from the marked shards only. A blocking read is one command on one key, as
Redis Cluster wants; on one Redis as on a cluster each shard costs one connection of the outbox's pool.

A watcher first reads its stream's last entry, then blocks after it: an entry added before that read is
found by the dispatcher's first take, which sweeps every shard (`start` returns once every watcher has its
starting id); one added after it wakes the watcher. A watcher whose read fails marks every shard (its own
may have had entries added while it was away) and starts again a second later.
"""

from __future__ import annotations

import asyncio
import contextlib
from datetime import timedelta
from typing import Final, cast

from sesame.clients.redis_connect import RedisClient
from sesame.clients.redis_scripts import translated
from sesame.server.domain.errors import StoreUnavailable

STOP_SECONDS: Final = 2.0


class OutboxBell:
    """The shards marked since the last `rung`, and an event the dispatch loops wait on."""

    def __init__(self, client: RedisClient, streams: list[str]) -> None:
        """Watch `streams` (one per shard, in shard order) with connections of `client`'s pool."""
        self._client = client
        self._streams = streams
        self._marked: set[int] = set(range(len(streams)))  # the first take sweeps every shard
        self._event = asyncio.Event()
        self._event.set()
        self._watchers: list[asyncio.Task[None]] = []
        self._starting = asyncio.Lock()
        self._closed = False

    async def start(self, block: timedelta) -> None:
        """Start the watchers, once; return when each knows where its stream stands. StoreUnavailable (the
        next call tries again)."""
        async with self._starting:
            if self._watchers:
                return
            with translated():
                async with self._client.pipeline(transaction=False) as pipe:
                    for stream in self._streams:
                        pipe.xrevrange(stream, count=1)
                    lasts = await pipe.execute()
            ms = max(1, block // timedelta(milliseconds=1))
            self._watchers = [
                asyncio.create_task(self._watch(shard, _last_id(last), ms))
                for shard, last in enumerate(lasts)
            ]

    def rung(self) -> set[int]:
        """The shards marked since the last call (cleared)."""
        marked, self._marked = self._marked, set()
        self._event.clear()
        return marked

    def mark(self, shards: set[int]) -> None:
        """Mark shards to take from again (one whose take was full may hold more)."""
        if shards:
            self._marked |= shards
            self._event.set()

    async def wait(self, wait: timedelta) -> bool:
        """Wait at most `wait` for a mark; whether one came."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(wait.total_seconds()):
                await self._event.wait()
        return self._event.is_set()

    async def close(self) -> None:
        """Stop the watchers (bounded: redis-py may turn a cancelled read into a connection error)."""
        self._closed = True
        for watcher in self._watchers:
            watcher.cancel()
        if self._watchers:
            await asyncio.wait(self._watchers, timeout=STOP_SECONDS)
        self._watchers = []

    async def _watch(self, shard: int, last: str, block_ms: int) -> None:
        stream = self._streams[shard]
        while not self._closed and not _cancelling():
            try:
                with translated():
                    raw = await self._client.xread({stream: last}, block=block_ms, count=100)
            except StoreUnavailable:
                if self._closed or _cancelling():
                    return
                await asyncio.sleep(1)
                with contextlib.suppress(StoreUnavailable), translated():
                    last = _last_id(await self._client.xrevrange(stream, count=1))
                self.mark(set(range(len(self._streams))))
                continue
            entries = cast("list[tuple[bytes, list[tuple[bytes, object]]]]", raw or [])
            if entries and entries[0][1]:
                last = entries[0][1][-1][0].decode()
                self.mark({shard})


def _cancelling() -> bool:
    """Whether this task was asked to stop: redis-py (and asyncio.wait_for) may turn a blocking read's
    cancellation into a connection error, or swallow it, so the watcher looks before each read."""
    task = asyncio.current_task()
    return task is not None and task.cancelling() > 0


def _last_id(last: object) -> str:
    """The id a watcher starts after: its stream's last entry, or the start ('0-0') when it has none."""
    entries = cast("list[tuple[bytes, object]]", last or [])
    return entries[0][0].decode() if entries else "0-0"
