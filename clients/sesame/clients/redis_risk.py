"""`RedisRiskMemory`: the RiskMemory port on Redis, in each user's `{u:<t>}` place (docs/risk.md).

Sorted sets of fingerprints scored by their last instant (payees paid, beneficiaries added, IPs, devices,
verified operations) and a list of the last amounts; each part is cut to its newest entries and expires after
the retention. `read_user_risk` reads the user with its memory (the Python evaluator's path: Start's own step
reads it, decision 0045); a DENY goes to the user's sealed journal (`record_risk_denial`, decision 0042;
Start's step journals the same entry); open_challenge and record_verification read and feed it in their own
steps (`_risk_memory.lua`).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, cast

import redis.asyncio as aioredis

from sesame.clients import redis_records as rec
from sesame.clients.redis_keys import Keyspace
from sesame.clients.redis_scripts import Scripts, stored_user
from sesame.server.domain.errors import UserNotFound
from sesame.server.domain.ports import RiskMemory
from sesame.server.domain.risk_signals import RiskDenial, RiskHistory, RiskLimits, RiskObservation, UserRisk

_SETS = ("payees", "added", "ips", "devices", "ops")


class RedisRiskMemory:
    """Each user's risk memory beside its user record."""

    def __init__(self, client: aioredis.Redis, keys: Keyspace, scripts: Scripts) -> None:
        self._client = client
        self._keys = keys
        self._scripts = scripts

    def parts(self, user_id: str) -> list[str]:
        """The names of the memory's parts the scripts read (_risk_memory.lua's order)."""
        return memory_parts(self._keys, user_id)

    async def user_and_history(self, user_id: str) -> UserRisk:
        """The user and its memory in one script. UserNotFound."""
        reply = await self._scripts.run(
            "read_user_risk", [self._keys.user(user_id), *self.parts(user_id)], []
        )
        if not reply:
            raise UserNotFound(user_id)
        return user_risk(reply)

    async def record_denial(self, denial: RiskDenial) -> None:
        """Journal a DENY in the user's journal: numbered, sealed, archived (decision 0042)."""
        await self._scripts.run(
            "record_risk_denial", [self._keys.user_journal(denial.user_id)], rec.denial_entry(denial)
        )

    async def denials(self, user_id: str) -> list[dict[str, str]]:
        """The DENY entries of the user's journal, oldest first."""
        key = self._keys.user_journal(user_id)
        entries = cast(
            "list[tuple[bytes, dict[bytes, bytes]]]",
            await self._scripts.call("risk_denials", self._client.xrange(key)),
        )
        found = [{k.decode(): v.decode() for k, v in fields.items()} for _, fields in entries]
        return [entry for entry in found if entry.get("event") == "risk.denied"]


def memory_parts(keys: Keyspace, user_id: str) -> list[str]:
    """The names of a user's memory parts, in _risk_memory.lua's order: the five sets, then the amounts."""
    return [*(keys.user_risk(user_id, part) for part in _SETS), keys.user_risk(user_id, "amounts")]


def user_risk(read: list[Any]) -> UserRisk:
    """What `risk_read` (_risk_memory.lua) read: the user hash, the five sets, the amounts."""
    user = stored_user(rec.pairs(read[0]))
    payees, added, ips, devices, ops = (_instants(flat) for flat in read[1:6])
    history = RiskHistory(
        payees_paid=payees,
        payees_added=added,
        amounts=tuple(_amount(raw) for raw in read[6]),
        ips=ips,
        devices=devices,
        operations=ops,
    )
    return UserRisk(user, history)


def lesson_args(seen: RiskObservation, limits: RiskLimits) -> list[rec.Field]:
    """`risk_remember`'s 14 arguments (_risk_memory.lua): the instant, retention, caps, members, amount."""
    amount = "" if seen.amount is None else f"{seen.amount[0]}:{seen.amount[1]}"
    return [
        rec.to_ms(seen.at),
        limits.retention // rec.MS,
        limits.payees,
        limits.added,
        limits.ips,
        limits.devices,
        limits.operations,
        limits.amounts,
        seen.payee_paid,
        seen.payee_added,
        seen.ip,
        seen.device,
        seen.operation_key,
        amount,
    ]


NO_LESSON: list[rec.Field] = ["", *([""] * 14)]  # record_verification's risk arguments when nothing is learnt


def _instants(flat: list[Any]) -> dict[str, datetime]:
    """A ZRANGE WITHSCORES reply (member, score, ...) as fingerprint -> instant."""
    return {
        member.decode(): rec.from_ms(int(float(score)))
        for member, score in zip(flat[::2], flat[1::2], strict=True)
    }


def _amount(raw: bytes) -> tuple[str, int]:
    currency, _, minor = raw.decode().partition(":")
    return currency, int(minor)


_: type[RiskMemory] = RedisRiskMemory
