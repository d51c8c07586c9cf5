"""An in-memory RiskMemory beside the Users fake, with the semantics of `RedisRiskMemory`."""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING

from sesame.server.domain.operation import digest
from sesame.server.domain.ports import RiskMemory
from sesame.server.domain.privacy import mask_phone
from sesame.server.domain.risk_signals import (
    RiskDenial,
    RiskHistory,
    RiskLimits,
    RiskObservation,
    UserRisk,
    remember,
)
from tests.fakes.journal_fields import context_fields, iso, ms

if TYPE_CHECKING:
    from tests.fakes.memory import Memory
    from tests.fakes.users import MemoryUsers


def learn(histories: dict[str, RiskHistory], seen: RiskObservation, limits: RiskLimits) -> None:
    """Feed one user's history (Redis keeps instants to the millisecond)."""
    history = histories.get(seen.user_id, RiskHistory())
    histories[seen.user_id] = remember(history, replace(seen, at=ms(seen.at)), limits)


class MemoryRiskMemory:
    """Each user's history in the store it stands beside (whose steps read and feed it too)."""

    def __init__(self, store: MemoryUsers) -> None:
        self._store = store
        self._histories = store.memory.risk_histories

    @property
    def histories(self) -> dict[str, RiskHistory]:
        """Each user's memory, as the fake store's right codes feed it (a test may seed it with `learn`)."""
        return self._histories

    async def user_and_history(self, user_id: str) -> UserRisk:
        user = await self._store.get_user(user_id)
        return UserRisk(user, self._histories.get(user_id, RiskHistory()))

    async def record_denial(self, denial: RiskDenial) -> None:
        journal_denial(self._store.memory, denial)

    async def denials(self, user_id: str) -> list[dict[str, str]]:
        journal = await self._store.user_journal(user_id)
        return [entry for entry in journal if entry.get("event") == "risk.denied"]


_: type[RiskMemory] = MemoryRiskMemory


def journal_denial(memory: Memory, denial: RiskDenial) -> None:
    """A DENY in the user's journal, as record_risk_denial.lua and open_challenge.lua write it (0042)."""
    memory._journal(
        denial.user_id,
        {
            "event": "risk.denied",
            "at": iso(denial.at),
            "user_id": denial.user_id,
            "op": denial.operation,
            **({} if denial.detail is None else {"op_digest": digest(denial.detail).hex()}),
            "phone": mask_phone(denial.phone) if denial.phone else "",
            "decision": "deny",
            "reasons": ",".join(denial.codes),
            "rules": ",".join(denial.rules),
            "rules_version": denial.rules_version,
            **context_fields(denial.context),
        },
    )
