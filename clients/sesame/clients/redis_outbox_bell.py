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

That is how `sesame dispatch` hears (`Heard.WATCHING`): it queues nothing itself. A `sesame serve` worker
that dispatches (`Heard.OWN_STEPS`, decision 0060) runs no watcher: its own steps mark the shard they queued
in (`queued`, the `OutboxNudge` its Redis adapters are given) as soon as their script answered, so that
its dispatchers take at once; what another process queued (one killed between its step and its take, a
`sesame dispatch`'s peer, an operator's script) is found by a sweep of every shard at least once per wait
(`rung`), whether or not marks came meanwhile: the longest such an entry waits for a free dispatch loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import time
from datetime import timedelta
from typing import Final, cast

from sesame.clients.redis_connect import RedisClient
from sesame.clients.redis_scripts import translated
from sesame.server.domain.errors import StoreUnavailable

STOP_SECONDS: Final = 2.0


class Heard(enum.Enum):
    """How a process's dispatchers hear of new outbox entries."""

    WATCHING = "watching"  # a blocking XREAD per shard: `sesame dispatch`, which queues nothing itself
    OWN_STEPS = "own steps"  # its own steps' marks, and a sweep every wait: `sesame serve` (decision 0060)


class OutboxBell:
    """The shards marked since the last `rung`, and an event the dispatch loops wait on."""

    def __init__(self, client: RedisClient, streams: list[str], heard: Heard = Heard.WATCHING) -> None:
        """Hear of entries added to `streams` (one per shard, in shard order) as `heard` says, watching them
        with connections of `client`'s pool."""
        self._client = client
        self._streams = streams
        self._heard = heard
        self._marked: set[int] = set(range(len(streams)))  # the first take sweeps every shard
        self._event = asyncio.Event()
        self._event.set()
        self._watchers: list[asyncio.Task[None]] = []
        self._starting = asyncio.Lock()
        self._closed = False
        self._sweep_every = 0.0  # seconds; the take's wait, once started
        self._sweep_due = 0.0  # monotonic

    async def start(self, block: timedelta) -> None:
        """Start the watchers, once; return when each knows where its stream stands. StoreUnavailable (the
        next call tries again). Without watchers (`Heard.OWN_STEPS`): sweep every shard once per `block`."""
        self._sweep_every = block.total_seconds()
        if self._heard is Heard.OWN_STEPS:
            return
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
        """The shards marked since the last call (cleared); without watchers, every shard when the last
        sweep is a wait old, marks or none: what no mark told of is taken within a wait."""
        if self._heard is Heard.OWN_STEPS and time.monotonic() >= self._sweep_due:
            return self.swept()
        marked, self._marked = self._marked, set()
        self._event.clear()
        return marked

    def swept(self) -> set[int]:
        """Every shard, the marks cleared: a take from all of them is due."""
        self._marked = set()
        self._event.clear()
        self._sweep_due = time.monotonic() + self._sweep_every
        return set(range(len(self._streams)))

    def mark(self, shards: set[int]) -> None:
        """Mark shards to take from again (one whose take was full may hold more)."""
        if shards:
            self._marked |= shards
            self._event.set()

    def queued(self, shard: int) -> None:
        """This process's step queued an entry in `shard`'s outbox (the `OutboxNudge`, decision 0060)."""
        self._marked.add(shard)
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
