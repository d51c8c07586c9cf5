"""What the tests read of a user's risk memory and denials on Redis, for their assertions only: the server
reads neither (Start's step reads the memory and journals a DENY, decision 0045; a right code's step feeds
it, decision 0032). The fake's counterpart is tests/fakes/risk_memory.py."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Protocol

from sesame.clients import redis_records as rec
from sesame.clients.redis_risk import memory_parts
from sesame.server.domain.risk_signals import RiskHistory

if TYPE_CHECKING:
    import redis.asyncio as aioredis

    from sesame.clients.redis_store import RedisState


class RedisRiskReads:
    """A user's risk memory as `_risk_memory.lua` keeps it, and the DENY entries of its journal."""

    def __init__(self, client: aioredis.Redis, store: RedisState) -> None:
        self._client = client
        self._store = store

    async def history(self, user_id: str) -> RiskHistory:
        """The five sets and the amounts (newest first), read in one transaction."""
        *sets, amounts = memory_parts(self._store.keys, user_id)
        pipe = self._client.pipeline(transaction=True)
        for key in sets:
            pipe.zrange(key, 0, -1, withscores=True)
        pipe.lrange(amounts, 0, -1)
        *read, listed = await pipe.execute()
        payees, added, ips, devices, ops = (_instants(pairs) for pairs in read)
        return RiskHistory(
            payees_paid=payees,
            payees_added=added,
            amounts=tuple(_amount(raw) for raw in listed),
            ips=ips,
            devices=devices,
            operations=ops,
        )

    async def denials(self, user_id: str) -> list[dict[str, str]]:
        """The DENY entries of the user's journal, oldest first (the store's own journal reader)."""
        return denials_in(await self._store.users.user_journal(user_id))


def denials_in(journal: list[dict[str, str]]) -> list[dict[str, str]]:
    """The `risk.denied` entries of a user's journal."""
    return [entry for entry in journal if entry.get("event") == "risk.denied"]


def _instants(pairs: list[tuple[bytes, float]]) -> dict[str, datetime]:
    return {member.decode(): rec.from_ms(int(score)) for member, score in pairs}


def _amount(raw: bytes) -> tuple[str, int]:
    currency, _, minor = raw.decode().partition(":")
    return currency, int(minor)


class RiskReads(Protocol):
    """What a test reads of the memory and the denials, on the fake or on Redis alike."""

    async def history(self, user_id: str) -> RiskHistory:
        """The user's memory (empty when it has none)."""
        ...

    async def denials(self, user_id: str) -> list[dict[str, str]]:
        """The DENY entries of the user's journal, oldest first."""
        ...
