"""What StartChallenge asks the store to do in one atomic step, and what that step answers (decision 0025).

Start reads nothing before that step: the store reads the user (status, block, cooling, secure number,
locale, client), checks the destination, claims the request id, charges the send budgets, opens the
challenge, journals it and queues its SMS in the outbox, all at once. So the order carries what Start knows
without the user, and the answer carries what the store read.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sesame.server.domain.budgets import SendBudget
from sesame.server.domain.model import Challenge, RequestContext
from sesame.server.domain.operation import Operation
from sesame.server.domain.risk import RiskAssessment, RiskDecision


@dataclass(frozen=True, slots=True)
class Opening:
    """One Start: the challenge to open for `user_id`, if the user may be sent a code for it now."""

    challenge_id: str
    user_id: str
    operation: Operation
    nonce: bytes
    key_version: int
    digits: int
    created_at: datetime
    expires_at: datetime
    max_attempts: int
    max_resends: int
    resend_spacing: timedelta
    cooled: bool  # the operation moves money: refused while the user's number change cools (PhoneCooling)
    countries: frozenset[str]  # where a code may be sent (ISO 3166 regions, docs/decisions/0011)
    budget: SendBudget  # the units one SMS costs; the number's budget is found from the stored number
    context: RequestContext
    request_id: str = ""  # the caller's idempotency key; empty: every call opens a new challenge
    risk: RiskAssessment | None = None  # the rules' decision, journaled with the opening (docs/risk.md)
    # The version of the user's risk memory `risk` was decided on (`UserRisk.version`): the step opens only
    # if the memory is still that one, else raises RiskMemoryMoved with it as it is. None: nothing was read.
    memory_version: str | None = None

    @property
    def denied(self) -> bool:
        """The rules said DENY: the step answers a retried request id's challenge, else refuses (RiskDenied)
        with nothing written (a retry answers what its first call was answered, docs/api.md)."""
        return self.risk is not None and self.risk.decision is RiskDecision.DENY


@dataclass(frozen=True, slots=True)
class Opened:
    """The challenge Start answers: `queued` when this call opened it (its SMS is in the outbox), not when
    it is the one an earlier call with the same request id opened (no second SMS)."""

    challenge: Challenge
    queued: bool
