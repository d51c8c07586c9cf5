"""An in-memory RiskMemory beside the Users fake, with the semantics of `RedisRiskMemory`."""

from __future__ import annotations

from dataclasses import replace

from sesame.server.domain.ports import RiskMemory, Users
from sesame.server.domain.risk_signals import (
    RiskDenial,
    RiskHistory,
    RiskLimits,
    RiskObservation,
    UserRisk,
    remember,
)
from tests.fakes.journal_fields import context_fields, iso, ms


class MemoryRiskMemory:
    """Each user's history in a dict; the user itself from the store it stands beside."""

    def __init__(self, store: Users) -> None:
        self._store = store
        self._histories: dict[str, RiskHistory] = {}
        self._denials: dict[str, list[dict[str, str]]] = {}

    async def user_and_history(self, user_id: str) -> UserRisk:
        user = await self._store.get_user(user_id)
        return UserRisk(user, self._histories.get(user_id, RiskHistory()))

    async def remember(self, seen: RiskObservation, limits: RiskLimits) -> None:
        history = self._histories.get(seen.user_id, RiskHistory())
        # Redis keeps instants to the millisecond.
        self._histories[seen.user_id] = remember(history, replace(seen, at=ms(seen.at)), limits)

    async def record_denial(self, denial: RiskDenial, limits: RiskLimits) -> None:
        entry = {
            "event": "risk.denied",
            "at": iso(denial.at),
            "user_id": denial.user_id,
            "op": denial.operation,
            "decision": "deny",
            "reasons": ",".join(denial.codes),
            "rules": ",".join(denial.rules),
            "rules_version": denial.rules_version,
            **context_fields(denial.context),
        }
        journal = self._denials.setdefault(denial.user_id, [])
        journal.append(entry)
        del journal[: max(len(journal) - limits.denials, 0)]

    async def denials(self, user_id: str) -> list[dict[str, str]]:
        return list(self._denials.get(user_id, []))


_: type[RiskMemory] = MemoryRiskMemory
