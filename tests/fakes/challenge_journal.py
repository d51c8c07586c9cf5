"""The ChallengeJournal fake: the challenges' journals and refusal counts in `Memory`, read as Redis reads
them."""

from __future__ import annotations

import re

from sesame.server.domain.errors import FieldViolation, InvalidRequest
from sesame.server.domain.model import JournalPage, RefusalCount
from sesame.server.domain.ports import ChallengeJournal
from tests.fakes.memory import Memory

_TOKEN = re.compile(r"[0-9]{1,20}-[0-9]{1,20}")


class MemoryChallengeJournal:
    """Reads of the shared memory's challenge journals."""

    def __init__(self, memory: Memory) -> None:
        self._m = memory

    async def challenge_journal(self, challenge_id: str) -> list[dict[str, str]]:
        return list(self._m._challenge_journals.get(challenge_id, []))

    async def challenge_journal_page(self, challenge_id: str, after: str, limit: int) -> JournalPage:
        # A page token is the position of the last entry given, written like a stream id (as Redis's).
        if after and _TOKEN.fullmatch(after) is None:
            raise InvalidRequest([FieldViolation("page_token", "is not a page token")])
        start = int(after.partition("-")[0]) if after else 0
        journal = self._m._challenge_journals.get(challenge_id, [])
        page = journal[start : start + limit]
        more = start + limit < len(journal)
        return JournalPage(list(page), f"{start + limit}-0" if more else "")

    async def challenge_refusals(self, challenge_id: str) -> list[RefusalCount]:
        counts = self._m._refusals.get(challenge_id, {})
        return [RefusalCount(e, o, n, at) for (e, o), (n, at) in sorted(counts.items())]


_: type[ChallengeJournal] = MemoryChallengeJournal
