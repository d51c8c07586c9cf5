"""`RedisRiskMemory`: the RiskMemory port on Redis, in each user's `{s:<n>}` place (docs/risk.md).

Sorted sets of fingerprints scored by their last instant (payees paid, beneficiaries added, IPs, devices,
verified operations), a list of the last amounts, and a capped stream of DENY decisions; each part is cut
to its newest entries and expires after the retention. `read_user_risk` reads the user with its memory and
their version (when a worker holds no recent copy: decision 0032), `remember_risk` and `record_risk_denial`
write; open_challenge and record_verification read and feed it in their own steps (`_risk_memory.lua`).
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
        return user_risk(reply[:7], reply[7])

    async def remember(self, seen: RiskObservation, limits: RiskLimits) -> None:
        """Add a verified operation's facts, each set cut to its newest entries, all expiring."""
        await self._scripts.run("remember_risk", self.parts(seen.user_id), lesson_args(seen, limits))

    async def record_denial(self, denial: RiskDenial, limits: RiskLimits) -> None:
        """Journal a DENY in the user's capped risk journal."""
        entry: list[rec.Field] = [
            "event", "risk.denied",
            "at", rec.iso(denial.at),
            "user_id", denial.user_id,
            "op", denial.operation,
            "decision", "deny",
            "reasons", ",".join(denial.codes),
            "rules", ",".join(denial.rules),
            "rules_version", denial.rules_version,
            *rec.context_fields(denial.context),
        ]  # fmt: skip
        key = self._keys.user_risk(denial.user_id, "denials")
        await self._scripts.run(
            "record_risk_denial", [key], [limits.denials, limits.retention // rec.MS, *entry]
        )

    async def denials(self, user_id: str) -> list[dict[str, str]]:
        """The user's risk journal, oldest first."""
        key = self._keys.user_risk(user_id, "denials")
        entries = cast(
            "list[tuple[bytes, dict[bytes, bytes]]]",
            await self._scripts.call("risk_denials", self._client.xrange(key)),
        )
        return [{k.decode(): v.decode() for k, v in fields.items()} for _, fields in entries]


def memory_parts(keys: Keyspace, user_id: str) -> list[str]:
    """The names of a user's memory parts, in _risk_memory.lua's order: the five sets, then the amounts."""
    return [*(keys.user_risk(user_id, part) for part in _SETS), keys.user_risk(user_id, "amounts")]


def user_risk(read: list[Any], version: bytes) -> UserRisk:
    """What `risk_read` (_risk_memory.lua) read: the user hash, the five sets, the amounts; its version."""
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
    return UserRisk(user, history, version.decode())


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
