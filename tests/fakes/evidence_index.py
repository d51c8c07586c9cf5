"""In-memory evidence index and health notes (the EvidenceIndex and HealthNotes ports, decision 0036)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta

from sesame.server.domain.evidence_index import EvidenceMatch, IndexedOpening


class MemoryEvidenceIndex:
    """Each user's challenges by opening time; trimmed to the retention on each write."""

    def __init__(self) -> None:
        self._users: dict[str, dict[str, EvidenceMatch]] = {}

    async def index(self, openings: Sequence[IndexedOpening], now: datetime, retention: timedelta) -> None:
        for opening in openings:
            self._users.setdefault(opening.user_id, {})[opening.match.challenge_id] = opening.match
        for user_id in {opening.user_id for opening in openings}:
            kept = self._users[user_id]
            self._users[user_id] = {k: m for k, m in kept.items() if m.opened_at >= now - retention}

    async def find(
        self, user_id: str, since: datetime | None, until: datetime | None, transaction_id: str = ""
    ) -> list[EvidenceMatch]:
        return sorted(
            (
                m
                for m in self._users.get(user_id, {}).values()
                if (since is None or m.opened_at >= since)
                and (until is None or m.opened_at < until)
                and (not transaction_id or m.transaction_id == transaction_id)
            ),
            key=lambda m: (m.opened_at, m.challenge_id),
        )

    async def find_page(
        self, user_id: str, since: datetime | None, until: datetime | None, offset: int, count: int
    ) -> list[EvidenceMatch]:
        return (await self.find(user_id, since, until))[offset : offset + count]

    async def held(self, user_id: str, matches: Sequence[EvidenceMatch]) -> set[str]:
        kept = self._users.get(user_id, {})
        return {
            m.challenge_id
            for m in matches
            if (k := kept.get(m.challenge_id)) and k.transaction_id == m.transaction_id
        }


class MemoryHealthNotes:
    """Health notes in a list, ids from their time."""

    stream = "memory:{health}:journal"

    def __init__(self) -> None:
        self._notes: list[tuple[datetime, dict[str, str]]] = []

    async def note(self, at: datetime, worker: str, parts: Mapping[str, bool], retention: timedelta) -> None:
        fields = {"event": "health.note", "at": at.isoformat(), "worker": worker}
        fields |= {name: "up" if up else "down" for name, up in sorted(parts.items())}
        fields |= {"seq": str(len(self._notes) + 1)}
        self._notes = [(t, f) for t, f in self._notes if t >= at - retention] + [(at, fields)]

    async def notes(self, since: datetime | None, until: datetime | None) -> list[tuple[str, dict[str, str]]]:
        inside = [
            (t, f) for t, f in self._notes if (since is None or t >= since) and (until is None or t <= until)
        ]
        before = [(t, f) for t, f in self._notes if since is not None and t < since][-1:]
        return [(f"{int(t.timestamp() * 1000)}-0", f) for t, f in [*before, *inside]]
