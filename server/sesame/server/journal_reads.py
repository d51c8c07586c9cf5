"""A challenge's journal read from Redis and the archive as one (docs/decisions/0037).

A closed challenge's journal leaves Redis once the archive holds all of it. The archive is the authority for
what it holds: a stream's entries it holds are read from it (found through its index), and Redis adds only
the entries after its last one. When Redis's tail and stream decided whether the archive was read, a Redis
writer took the tail's `through` out of a sealed, archived journal and wrote a copy with other unbound fields
back in its stream: GetProof signed the copy's claims under the decision's jti, and its bundle checked valid
with no sealed entry (an outside audit, AV3).
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
        live = await self._journal.stream_entries(stream)
        if self._archive is None:
            return live
        archived = await asyncio.to_thread(self._archive.stream_entries, stream)
        if not archived:
            return live
        last = id_key(archived[-1].id)
        return [(e.id, dict(e.fields)) for e in archived] + [(i, f) for i, f in live if id_key(i) > last]


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
