"""The evidence index in Redis (docs/decisions/0036): one sorted set per user, in the user's slot.

`<prefix>:{s:<n>}:evidence:<user>`: member `<challenge id> <transaction id>`, score the opening time (unix
ms). The sealer writes it once the `challenge.opened` entries are sealed and archived; each write drops the
user's members older than the evidence retention and sets the key to expire after it, so the set holds one
member per challenge of the last 13 months at most (a listpack of ~60 bytes a member up to 128 members).
Each new member is also journaled in the user's openings journal (`index_openings.lua`, decision 0042), which
is sealed: the index finds, the openings journal proves the list complete.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import cast

from sesame.clients import redis_records as rec
from sesame.clients.redis_connect import RedisClient
from sesame.clients.redis_keys import Keyspace
from sesame.clients.redis_scripts import Scripts, translated
from sesame.server.domain.evidence_index import EvidenceMatch, IndexedOpening

USERS_AT_ONCE = 64  # users indexed per round trip (one script each, pipelined: Redis runs them in a row)


class RedisEvidenceIndex:
    """The users' evidence indexes (the EvidenceIndex port)."""

    def __init__(self, client: RedisClient, keys: Keyspace, scripts: Scripts) -> None:
        self._client = client
        self._keys = keys
        self._scripts = scripts

    async def index(self, openings: Sequence[IndexedOpening], now: datetime, retention: timedelta) -> None:
        """Keep `openings`, journal the new ones in their user's openings journal (decision 0042), and trim
        each touched user's set and journal to the retention: one script per user, pipelined (0048)."""
        oldest, keep = rec.to_ms(now - retention), int(retention.total_seconds() * 1000)
        by_user: dict[str, list[IndexedOpening]] = {}
        for opening in openings:
            by_user.setdefault(opening.user_id, []).append(opening)
        users = sorted(by_user)
        for start in range(0, len(users), USERS_AT_ONCE):
            calls: list[tuple[list[str], list[rec.Field]]] = []
            for user_id in users[start : start + USERS_AT_ONCE]:
                args: list[rec.Field] = [oldest, keep]
                for o in sorted(by_user[user_id], key=lambda o: o.match.opened_at):
                    args += [_member(o.match), rec.to_ms(o.match.opened_at), rec.iso(o.match.opened_at)]
                calls.append(([self._keys.user_evidence(user_id), self._keys.user_openings(user_id)], args))
            await self._scripts.run_all("index_openings", calls)

    async def find(
        self, user_id: str, since: datetime | None, until: datetime | None, transaction_id: str = ""
    ) -> list[EvidenceMatch]:
        """The user's challenges opened in [since, until), oldest first; of `transaction_id` when given."""
        low = rec.to_ms(since) if since else "-inf"
        high = f"({rec.to_ms(until)}" if until else "+inf"
        with translated():
            raw = await self._client.zrangebyscore(
                self._keys.user_evidence(user_id), low, high, withscores=True
            )
        found = []
        for member, score in cast("list[tuple[bytes, float]]", raw):
            challenge_id, _, tx = member.decode().partition(" ")
            if not transaction_id or tx == transaction_id:
                found.append(EvidenceMatch(challenge_id, rec.from_ms(int(score)), tx))
        return found

    async def find_page(
        self, user_id: str, since: datetime | None, until: datetime | None, offset: int, count: int
    ) -> list[EvidenceMatch]:
        """ZRANGEBYSCORE with LIMIT: Redis steps over `offset` members and answers `count` at most, so a page
        of the index costs the page, not the index (decision 0054)."""
        low = rec.to_ms(since) if since else "-inf"
        high = f"({rec.to_ms(until)}" if until else "+inf"
        with translated():
            raw = await self._client.zrangebyscore(
                self._keys.user_evidence(user_id), low, high, start=offset, num=count, withscores=True
            )
        return [_match(member, score) for member, score in cast("list[tuple[bytes, float]]", raw)]

    async def held(self, user_id: str, matches: Sequence[EvidenceMatch]) -> set[str]:
        """ZMSCORE of the matches' members: one number each."""
        if not matches:
            return set()
        with translated():
            scores = await self._client.zmscore(
                self._keys.user_evidence(user_id), [_member(m) for m in matches]
            )
        return {m.challenge_id for m, score in zip(matches, scores, strict=True) if score is not None}


def _match(member: bytes, score: float) -> EvidenceMatch:
    challenge_id, _, tx = member.decode().partition(" ")
    return EvidenceMatch(challenge_id, rec.from_ms(int(score)), tx)


def _member(match: EvidenceMatch) -> str:
    return f"{match.challenge_id} {match.transaction_id}"
