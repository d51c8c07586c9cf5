"""What StartChallenge asks the store to do in one atomic step, and what that step answers (decision 0025).

Start reads nothing before that step: the store reads the user (status, block, cooling, secure number,
locale, client), checks the destination, claims the request id, charges the send budgets, opens the
challenge, journals it and queues its SMS in the outbox, all at once. So the order carries what Start knows
without the user, and the answer carries what the store read.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sesame.server.domain.budgets import SendBudget
from sesame.server.domain.model import Challenge, RequestContext
from sesame.server.domain.operation import AddBeneficiary, CreditTransfer, Operation
from sesame.server.domain.risk import RiskAssessment, RuleSet, SignalValue


@dataclass(frozen=True, slots=True)
class RiskQuestion:
    """What Start's step needs to apply the rules itself, on the user's memory as it is then (decision 0045).

    The signals the memory gives are computed in the step; `given` holds those only the caller knows (the
    operator's SIM-swap answer, the bank's forwarded summary: `risk_program.GIVEN`). `sim_number` is the
    number the operator was asked about (None: not asked): the step refuses when it is not the stored one
    (SimNumberMoved), and Start asks again. A DENY is journaled in the user's sealed journal (decision 0042).
    """

    rules: RuleSet
    given: Mapping[str, SignalValue] = field(default_factory=dict)
    sim_number: str | None = None


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
    # The rules' decision made before the step (an operation no rule can match: ALLOW, nothing read),
    # journaled with the opening (docs/risk.md); None when the step decides (`question`) or no rules.
    risk: RiskAssessment | None = None
    # The rules the step applies (decision 0045): the decision is kept and journaled with the challenge, a
    # DENY refused (RiskDenied) with its denial journaled and nothing else written. None: no rules here.
    question: RiskQuestion | None = None
    # The HSM's witness of what a proof states of the opening (`proof.opening_stated`), journaled with it: a
    # proof signed later from the journal is signed only for an opening Sésame journaled (decision 0167).
    witness: str = ""

    @property
    def payee_verification(self) -> str:
        """The bank's Verification of Payee answer for the operation's payee, which its SMS states (decision
        0099); '' for an operation without a payee, or without an answer."""
        has_payee = isinstance(self.operation, CreditTransfer | AddBeneficiary)
        return self.context.payee_verification if has_payee else ""


@dataclass(frozen=True, slots=True)
class Opened:
    """The challenge Start answers: `queued` when this call opened it (its SMS is in the outbox), not when
    it is the one an earlier call with the same request id opened (no second SMS). Its `risk` is the
    decision it keeps (codes, no descriptions: `RuleSet.described` tells them)."""

    challenge: Challenge
    queued: bool
