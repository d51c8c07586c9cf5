"""The fake store's risk memory, fed by its steps (tests/fakes/challenges.py) as _risk_memory.lua feeds
Redis's, and what the tests read of it and of the denials for their assertions (on Redis:
tests/support/risk_reads.py)."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

from sesame.server.domain.operation import digest
from sesame.server.domain.privacy import mask_phone
from sesame.server.domain.risk_signals import (
    RiskHistory,
    RiskLimits,
    RiskObservation,
    remember,
)
from tests.fakes.hourly import journaled_hourly
from tests.fakes.journal_fields import context_fields, iso, ms

if TYPE_CHECKING:
    from datetime import datetime

    from sesame.server.domain.model import RequestContext
    from sesame.server.domain.operation import Operation
    from tests.fakes.memory import Memory
    from tests.fakes.users import MemoryUsers


def learn(histories: dict[str, RiskHistory], seen: RiskObservation, limits: RiskLimits) -> None:
    """Feed one user's history (Redis keeps instants to the millisecond)."""
    history = histories.get(seen.user_id, RiskHistory())
    histories[seen.user_id] = remember(history, replace(seen, at=ms(seen.at)), limits)


class MemoryRiskMemory:
    """Each user's history in the fake store it stands beside (whose steps read and feed it)."""

    def __init__(self, store: MemoryUsers) -> None:
        self._store = store
        self._histories = store.memory.risk_histories

    @property
    def histories(self) -> dict[str, RiskHistory]:
        """Each user's memory, as the fake store's right codes feed it (a test may seed it with `learn`)."""
        return self._histories

    async def history(self, user_id: str) -> RiskHistory:
        """The user's memory (empty when it has none)."""
        return self._histories.get(user_id, RiskHistory())

    async def denials(self, user_id: str) -> list[dict[str, str]]:
        """The DENY entries of the user's journal, oldest first."""
        journal = await self._store.user_journal(user_id)
        return [entry for entry in journal if entry.get("event") == "risk.denied"]


@dataclass(frozen=True, slots=True)
class RiskDenial:
    """A DENY as the fake store's step journals it (Redis's: open_challenge.lua): which operation, why, by
    which rules, from where (decision 0042).

    `detail` is the operation refused (journaled as Start journals an opening: encoded, except a number
    change, whose encoding holds the new number); `phone` the user's secure number (journaled masked).
    """

    user_id: str
    at: datetime
    operation: str  # the operation's kind, lower case
    codes: tuple[str, ...]
    rules: tuple[str, ...]
    rules_version: str
    context: RequestContext
    detail: Operation | None = None
    phone: str = ""


# open_challenge.lua: the denials of a user's hour journaled; later ones counted (decision 0050).
MAX_JOURNALED_DENIALS = 20


def journal_denial(memory: Memory, denial: RiskDenial) -> bool:
    """A DENY in the user's journal, as open_challenge.lua writes it (decisions 0042, 0050): the first
    MAX_JOURNALED_DENIALS of the user's hour, the first after them with the count of those not journaled.
    Whether it was journaled."""
    before = journaled_hourly(memory._denials, denial.user_id, MAX_JOURNALED_DENIALS, denial.at)
    if before is None:
        return False
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
            **before,
        },
    )
    return True
