"""`RedisChallengeJournal`: the ChallengeJournal port on Redis (docs/decisions/0038).

Reads only: a challenge's journal stream (whole, or a page from a token that is an entry's stream id) and
its refusal counts, which outlive the challenge.
"""

from __future__ import annotations

import re
from typing import Final, cast

from sesame.clients import redis_records as rec
from sesame.clients.redis_place import RedisPlace
from sesame.server.domain.errors import FieldViolation, InvalidRequest
from sesame.server.domain.model import JournalPage, RefusalCount
from sesame.server.domain.ports import ChallengeJournal

_STREAM_ID: Final = re.compile(r"[0-9]{1,20}-[0-9]{1,20}")  # what a page token is: a journal entry's id


class RedisChallengeJournal(RedisPlace):
    """The challenges' journals and refusal counts in Redis, read for evidence."""

    async def challenge_journal(self, challenge_id: str) -> list[dict[str, str]]:
        """The challenge's journal entries, oldest first (they outlive the challenge), as evidence reads them:
        with the chain's fields."""
        return await self._read_journal(
            "challenge_journal", self.keys.challenge_journal(challenge_id), chain=True
        )

    async def challenge_journal_page(self, challenge_id: str, after: str, limit: int) -> JournalPage:
        """A page of the challenge's journal (XRANGE from the entry after the token's, COUNT limit + 1)."""
        if after and _STREAM_ID.fullmatch(after) is None:
            raise InvalidRequest([FieldViolation("page_token", "is not a page token")])
        raw = await self._scripts.call(
            "challenge_journal_page",
            self._client.xrange(
                self.keys.challenge_journal(challenge_id), min=f"({after}" if after else "-", count=limit + 1
            ),
        )
        entries = cast("list[tuple[bytes, dict[bytes, bytes]]]", raw)
        page = entries[:limit]
        next_token = page[-1][0].decode() if len(entries) > limit else ""
        return JournalPage([rec.decoded(fields) for _, fields in page], next_token)

    async def challenge_refusals(self, challenge_id: str) -> list[RefusalCount]:
        """The refusal counts of the challenge, by event then outcome."""
        raw = cast(
            "dict[bytes, bytes]",
            await self._scripts.call(
                "challenge_refusals", self._client.hgetall(self.keys.challenge_refusals(challenge_id))
            ),
        )
        return rec.refusal_counts(raw)


_: type[ChallengeJournal] = RedisChallengeJournal
