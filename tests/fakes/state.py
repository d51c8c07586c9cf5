"""The state fakes bundled as the flows are given them: one fake per aggregate over one shared `Memory`,
with the semantics of `RedisState` (the contract suites hold them together)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from sesame.server.domain.budgets import BudgetSubject
from sesame.server.domain.noops import NOOP_DEFAULTS, NoopLimits
from sesame.server.domain.ports import Clock, State
from tests.fakes.challenge_journal import MemoryChallengeJournal
from tests.fakes.challenges import MemoryChallenges
from tests.fakes.clients import MemoryClients
from tests.fakes.memory import Memory
from tests.fakes.outbox import MemoryOutbox
from tests.fakes.proofs import MemoryProofs
from tests.fakes.send_units import MemorySendUnits
from tests.fakes.users import MemoryUsers


@dataclass(frozen=True)
class MemoryState(State):
    """The aggregates' fakes over one `memory`."""

    users: MemoryUsers
    clients: MemoryClients
    challenges: MemoryChallenges
    proofs: MemoryProofs
    journal: MemoryChallengeJournal
    send_units: MemorySendUnits
    memory: Memory

    @property
    def outbox(self) -> MemoryOutbox:
        """What Start and Resend queued."""
        return self.challenges.outbox

    def units_taken(self, subject: BudgetSubject) -> int:
        """How many units of the subject's budget are held (as ZCARD of its sorted set)."""
        return self.challenges.units_taken(subject)


def memory_state(
    retention: timedelta = timedelta(hours=24),
    purge_clock: Clock | None = None,
    noops: NoopLimits = NOOP_DEFAULTS,
) -> MemoryState:
    """Fresh fakes: challenges kept `retention` past their expiry, purged by `purge_clock` (never without);
    back-office no-ops bounded by `noops`."""
    memory = Memory(retention, purge_clock, noops)
    return MemoryState(
        users=MemoryUsers(memory),
        clients=MemoryClients(noops),
        challenges=MemoryChallenges(memory),
        proofs=MemoryProofs(memory),
        journal=MemoryChallengeJournal(memory),
        send_units=MemorySendUnits(),
        memory=memory,
    )
