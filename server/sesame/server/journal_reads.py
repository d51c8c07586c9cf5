"""A challenge's journal read from Redis and the archive as one (docs/decisions/0037).

A closed challenge's journal leaves Redis once the archive holds all of it; its tail in Redis says up to which
entry (`through`). Its entries up to that one are read from the archive (found through its index), the newer
ones from the stream; with neither stream nor tail (the tail expires with the challenge hash), from the
archive alone. While nothing was dropped, Redis holds the whole stream and is read alone, as before: a
deletion or an edit there shows in the evidence's checks.
"""

from __future__ import annotations

import asyncio
import re
from typing import Final

from sesame.clients.redis_journal import RedisJournal
from sesame.server.domain.errors import FieldViolation, InvalidRequest
from sesame.server.domain.journal_seal import id_key
from sesame.server.domain.model import JournalPage, RefusalCount
from sesame.server.domain.ports import ChallengeJournal
from sesame.server.journal_archive import JournalArchive

_STREAM_ID: Final = re.compile(r"[0-9]{1,20}-[0-9]{1,20}")  # what a page token is: a journal entry's id
Entry = tuple[str, dict[str, str]]


class ArchivedJournals:
    """Journals whose older entries may have left Redis for the archive."""

    def __init__(self, journal: RedisJournal, archive: JournalArchive | None) -> None:
        self._journal = journal
        self._archive = archive

    async def entries(self, stream: str) -> list[Entry]:
        """The stream's entries, ids and fields as stored, oldest first."""
        live = await self._journal.live(stream)
        if self._archive is None or (live.through is None and live.entries):
            return live.entries
        archived = await asyncio.to_thread(self._archive.stream_entries, stream)
        if live.through is None:
            return [(e.id, dict(e.fields)) for e in archived]
        through = id_key(live.through)
        older = [(e.id, dict(e.fields)) for e in archived if id_key(e.id) <= through]
        return older + [(i, f) for i, f in live.entries if id_key(i) > through]


class ChallengeJournals:
    """The challenges' journals for the proof flows: Redis and the archive (the `ChallengeJournal` port)."""

    def __init__(self, journals: ArchivedJournals, journal: RedisJournal, refusals: ChallengeJournal) -> None:
        self._journals = journals
        self._keys = journal.keys
        self._refusals = refusals

    async def challenge_journal(self, challenge_id: str) -> list[dict[str, str]]:
        """The challenge's journal entries, oldest first, with the chain's fields."""
        return [
            fields for _, fields in await self._journals.entries(self._keys.challenge_journal(challenge_id))
        ]

    async def challenge_journal_page(self, challenge_id: str, after: str, limit: int) -> JournalPage:
        """At most `limit` entries after the entry whose id is `after` ("": from the first)."""
        if after and _STREAM_ID.fullmatch(after) is None:
            raise InvalidRequest([FieldViolation("page_token", "is not a page token")])
        entries = await self._journals.entries(self._keys.challenge_journal(challenge_id))
        if after:
            entries = [(i, f) for i, f in entries if id_key(i) > id_key(after)]
        page = entries[:limit]
        return JournalPage([f for _, f in page], page[-1][0] if len(entries) > limit else "")

    async def challenge_refusals(self, challenge_id: str) -> list[RefusalCount]:
        """The refusal counts (a hash in Redis, not journaled)."""
        return await self._refusals.challenge_refusals(challenge_id)


_: type[ChallengeJournal] = ChallengeJournals
