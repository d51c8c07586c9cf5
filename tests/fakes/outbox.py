"""An in-memory Outbox with the semantics of `RedisOutbox` (the contract suite holds them together).

The fake store queues into it (as Start's and Resend's scripts append to the stream); settling records
the send on the store's challenge, as record_dispatch.lua does, and removes the entry.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from sesame.server.domain.dispatching import Backlog, QueuedSms
from sesame.server.domain.model import Challenge, DeliveryState
from sesame.server.domain.ports import Clock, Outbox
from sesame.server.domain.sent_text import SentText

if TYPE_CHECKING:
    from tests.fakes.challenges import MemoryChallenges


@dataclass(slots=True)
class _Pending:
    consumer: str
    since: datetime


class MemoryOutbox:
    """Entries in queue order; each given to one consumer and pending with it until settled."""

    def __init__(self, store: MemoryChallenges, clock: Clock) -> None:
        self._store = store
        self._clock = clock  # when an entry became pending: what `reclaim` compares `idle` with
        self._ids = itertools.count(1)
        self._entries: dict[str, QueuedSms] = {}  # in queue order (dicts keep insertion order)
        self._pending: dict[str, _Pending] = {}

    def queue(self, challenge_id: str, at: datetime) -> None:
        """Append an entry (what the store does in the step that opens or resends)."""
        entry_id = f"{next(self._ids)}-0"
        self._entries[entry_id] = QueuedSms(entry_id, challenge_id, at)

    async def take(self, consumer: str, count: int, wait: timedelta) -> list[QueuedSms]:
        fresh = [e for entry_id, e in self._entries.items() if entry_id not in self._pending][:count]
        for entry in fresh:
            self._pending[entry.entry_id] = _Pending(consumer, self._clock.now())
        return fresh

    async def reclaim(self, consumer: str, idle: timedelta, count: int) -> list[QueuedSms]:
        now = self._clock.now()
        idle_ids = [i for i, p in self._pending.items() if now - p.since >= idle][:count]
        for entry_id in idle_ids:
            self._pending[entry_id] = _Pending(consumer, now)
        return [self._entries[entry_id] for entry_id in idle_ids]

    async def challenge(self, queued: QueuedSms) -> Challenge:
        return await self._store.get_challenge(queued.challenge_id)

    async def settle(
        self,
        queued: QueuedSms,
        state: DeliveryState,
        provider_ref: str,
        at: datetime,
        text: SentText | None = None,
    ) -> None:
        self._entries.pop(queued.entry_id, None)
        self._pending.pop(queued.entry_id, None)
        await self._store.record_dispatch(queued, state, provider_ref, at, text)

    async def backlog(self) -> Backlog:
        oldest = next(iter(self._entries.values()), None)
        return Backlog(len(self._entries), None if oldest is None else oldest.queued_at)


_: type[Outbox] = MemoryOutbox
