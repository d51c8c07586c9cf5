"""The evidence index in Redis (docs/decisions/0036): one sorted set per user, in the user's slot.

`<prefix>:{s:<n>}:evidence:<user>`: member `<challenge id> <transaction id>`, score the opening time (unix
ms). The sealer writes it once the `challenge.opened` entries are sealed and archived; each write drops the
user's members older than the evidence retention and sets the key to expire after it, so the set holds one
member per challenge of the last 13 months at most (a listpack of ~60 bytes a member up to 128 members).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import cast

import redis.asyncio as aioredis

from sesame.clients import redis_records as rec
from sesame.clients.redis_keys import Keyspace
from sesame.clients.redis_scripts import translated
from sesame.server.domain.evidence_index import EvidenceMatch, IndexedOpening


class RedisEvidenceIndex:
    """The users' evidence indexes (the EvidenceIndex port)."""

    def __init__(self, client: aioredis.Redis, keys: Keyspace) -> None:
        self._client = client
        self._keys = keys

    async def index(self, openings: Sequence[IndexedOpening], now: datetime, retention: timedelta) -> None:
        """Keep `openings` and trim each touched user's set to the retention, in one MULTI/EXEC."""
        if not openings:
            return
        oldest = rec.to_ms(now - retention)
        with translated():
            async with self._client.pipeline(transaction=True) as pipe:
                for user_id in sorted({opening.user_id for opening in openings}):
                    key = self._keys.user_evidence(user_id)
                    members = {
                        _member(o.match): rec.to_ms(o.match.opened_at)
                        for o in openings
                        if o.user_id == user_id
                    }
                    pipe.zadd(key, members)
                    pipe.zremrangebyscore(key, "-inf", f"({oldest}")
                    pipe.pexpire(key, int(retention.total_seconds() * 1000))
                await pipe.execute()

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


def _member(match: EvidenceMatch) -> str:
    return f"{match.challenge_id} {match.transaction_id}"
