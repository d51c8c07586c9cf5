"""Provider ids in memory, forgotten at their `until` by the clock given."""

from __future__ import annotations

from datetime import datetime

from sesame.server.domain.errors import ProviderIdUnknown
from sesame.server.domain.model import SentPart
from sesame.server.domain.ports import Clock, ProviderIds


class MemoryProviderIds:
    """Dicts; an entry past its `until` reads as never written, as a Redis key past its TTL."""

    def __init__(self, clock: Clock) -> None:
        self._clock = clock
        self._owners: dict[str, tuple[SentPart, datetime]] = {}
        self._delivered: dict[str, tuple[set[str], datetime]] = {}

    async def remember(self, provider_id: str, part: SentPart, until: datetime) -> None:
        self._owners[provider_id] = (part, until)

    async def owner(self, provider_id: str) -> SentPart:
        found = self._owners.get(provider_id)
        if found is None or found[1] <= self._clock.now():
            raise ProviderIdUnknown(provider_id)
        return found[0]

    async def delivered_parts(self, provider_ref: str, provider_id: str, parts: int, until: datetime) -> int:
        ids, before = self._delivered.get(provider_ref, (set(), until))
        if before <= self._clock.now():
            ids = set()
        if provider_id not in ids and len(ids) < parts:
            ids.add(provider_id)
            self._delivered[provider_ref] = (ids, until)
        return len(ids)


_: type[ProviderIds] = MemoryProviderIds
