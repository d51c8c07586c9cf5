"""Health notes in the journal (docs/decisions/0036): the dependencies' state, sealed like any entry.

`<prefix>:{s:0}:health:journal`, one entry per note: `health.note`, the time, the worker that saw it, and one
field per dependency (`up` or `down`). Written by each worker when what it sees changes, and at least
hourly; trimmed in Redis past the evidence retention.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import cast

from sesame.clients import redis_records as rec
from sesame.clients.redis_connect import RedisClient
from sesame.clients.redis_keys import Keyspace
from sesame.clients.redis_scripts import Scripts, translated

CLOCK_MARGIN = timedelta(hours=1)  # how far a note's time may be from its id's (the worker's clock)
READ_BATCH = 200


class RedisHealthNotes:
    """The health journal: write a note, read the notes of a period."""

    def __init__(self, client: RedisClient, keys: Keyspace, scripts: Scripts) -> None:
        self._client = client
        self._keys = keys
        self._scripts = scripts

    @property
    def stream(self) -> str:
        """The health journal's stream name (its entries' leaves name it)."""
        return self._keys.health_journal()

    async def note(self, at: datetime, worker: str, parts: Mapping[str, bool], retention: timedelta) -> None:
        """Journal what `worker` sees of each dependency at `at`."""
        fields: list[rec.Field] = ["event", "health.note", "at", rec.iso(at), "worker", worker]
        for name in sorted(parts):
            fields += [name, "up" if parts[name] else "down"]
        await self._scripts.run("record_health", [self.stream], [rec.to_ms(at - retention), *fields])

    async def notes(self, since: datetime | None, until: datetime | None) -> list[tuple[str, dict[str, str]]]:
        """The notes whose time is in [since, until], with the last one before `since`; ids and fields as
        stored, oldest first. Read backwards from `until` (the ids' time, give or take CLOCK_MARGIN: a note's
        time is its worker's clock) until a note older than `since`."""
        high = _highest_id(until)
        if high is None:
            return []
        found: list[tuple[str, dict[str, str]]] = []
        while True:
            with translated():
                raw = await self._client.xrevrange(self.stream, max=high, count=READ_BATCH)
            batch = cast("list[tuple[bytes, dict[bytes, bytes]]]", raw)
            for entry_id, fields in batch:
                note = (entry_id.decode(), rec.decoded(fields))
                at = _time(note[1])
                if until is not None and at is not None and at > until:
                    continue
                found.append(note)
                if since is not None and at is not None and at < since:
                    return found[::-1]
            if len(batch) < READ_BATCH:
                return found[::-1]
            high = f"({batch[-1][0].decode()}"


def _highest_id(until: datetime | None) -> str | None:
    """The highest stream id a note up to `until` may have ("+" for any), None when none can be (an instant
    before 1970 give or take the margin: Redis refuses a negative id, which read as the store failing).

    Any instant of a Timestamp is a valid `until`: 9999-12-31T23:59:59Z, a back-office tool's "no end", has no
    margin after it (an OverflowError answered INTERNAL; an outside audit).
    """
    if until is None or until > datetime.max.replace(tzinfo=until.tzinfo) - CLOCK_MARGIN:
        return "+"
    high = rec.to_ms(until + CLOCK_MARGIN)
    return str(high) if high >= 0 else None


def _time(fields: dict[str, str]) -> datetime | None:
    try:
        return datetime.fromisoformat(fields.get("at", ""))
    except ValueError:
        return None
