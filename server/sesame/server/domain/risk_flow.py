"""The risk flow: decided in Start's one step; a VERIFIED code teaches the memory in its own (docs/risk.md).

`question` is what Start hands its one step (decision 0045): the rules, and the signals only the caller
knows (the operator's SIM answer for a sensitive operation, the bank's forwarded summary); the step reads the
memory, computes the other signals and applies the rules (`_risk_rules.lua`; the fake store: `assess`, the
Python evaluator), keeps the decision with the challenge or refuses a DENY with its denial journaled
in the user's sealed journal (decision 0042).
`assess` is the same evaluation in Python (the fake store's step, held equal to the Lua one by
tests/contracts/test_risk_rules_lua.py).
`lesson` is what a VERIFIED challenge teaches the memory, in record_verification's own step (decision 0032).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from sesame.server.domain.errors import RiskDenied, SimSwapUnavailable
from sesame.server.domain.opening import RiskQuestion
from sesame.server.domain.operation import CreditTransfer, OperationType, kind
from sesame.server.domain.risk import RiskAssessment, RiskDecision, RiskReason, RuleSet
from sesame.server.domain.risk_recall import DEFAULT_USERS, RiskRecall
from sesame.server.domain.risk_signals import (
    SIM_SWAP_OFF,
    RiskLesson,
    RiskLimits,
    SimSwapStatus,
    UserRisk,
    caller_signals,
    fingerprint,
    lesson,
    signals,
)

if TYPE_CHECKING:
    from collections.abc import Sequence

    from sesame.server.domain.challenges import StartRequest, VerifyRequest
    from sesame.server.domain.model import Challenge, RequestContext, User
    from sesame.server.domain.operation import Operation
    from sesame.server.domain.ports import Clock, RiskMeter, SimSwapCheck
    from sesame.server.domain.risk_signals import InFlight, RiskHistory

_log = logging.getLogger("sesame.risk")
# The operations whose code moves money or changes who can move it: the operator is asked about the SIM.
SENSITIVE = frozenset(
    {OperationType.CREDIT_TRANSFER, OperationType.ADD_BENEFICIARY, OperationType.CHANGE_PHONE}
)
NOT_ASKED = SimSwapStatus("not_asked")  # a login: the operator is not asked
SIM_SWAP = "SIM_SWAP"  # the default rules' reason for a recent SIM change (docs/risk.md)
FLAGGED = frozenset({RiskDecision.WARN, RiskDecision.HOLD})  # a code is sent, with the strongest wording
NEW_PAYEE_WINDOW = timedelta(hours=72)  # a payee added this recently is "new" in a flagged transfer's SMS


class _Unmetered:
    def decided(self, operation: str, assessment: RiskAssessment) -> None:
        pass

    def sim_swap(self, state: str) -> None:
        pass


@dataclass(frozen=True, slots=True)
class RiskPolicy:
    """The rules and how much is remembered."""

    rules: RuleSet
    limits: RiskLimits = field(default_factory=RiskLimits)
    recall_users: int = DEFAULT_USERS  # users whose secure number each worker keeps (decision 0045); 0: none


def _new_payee(
    assessment: RiskAssessment, operation: Operation, found: UserRisk, now: datetime
) -> datetime | None:
    """When a flagged transfer's payee was added, if in the last NEW_PAYEE_WINDOW (its SMS says so)."""
    if assessment.decision not in FLAGGED or not isinstance(operation, CreditTransfer):
        return None
    added = found.history.payees_added.get(fingerprint("iban", operation.payee.iban))
    return added if added is not None and now - added < NEW_PAYEE_WINDOW else None


class RiskFlows:
    """Decide at Start, remember after a verified code."""

    def __init__(
        self,
        *,
        clock: Clock,
        policy: RiskPolicy,
        sim_swap: SimSwapCheck | None = None,
        meter: RiskMeter | None = None,
    ) -> None:
        self._recall = RiskRecall(policy.recall_users)
        self._clock = clock
        self._policy = policy
        self._sim_swap = sim_swap
        self._meter = meter or _Unmetered()

    async def question(self, request: StartRequest, number: str | None = None) -> RiskQuestion:
        """What Start's step asks the rules (decision 0045): the signals only the caller knows, and, for a
        sensitive operation with an operator configured, its answer about `number` (the secure number a
        step answered) or else about the number this worker last saw for the user, which the step confirms
        (none seen: the step answers it, and Start asks again)."""
        operation, now = request.operation, self._clock.now()
        sim, asked = NOT_ASKED, None
        if kind(operation) in SENSITIVE:
            if self._sim_swap is None:
                sim = SIM_SWAP_OFF
                self._meter.sim_swap(sim.state)
            else:
                asked = number if number is not None else self._recall.recalled(request.user_id) or ""
                sim = await self._sim_of(asked) if asked else SimSwapStatus("unavailable")
        given = caller_signals(operation, sim, now, request.forwarded, request.context.payee_verification)
        return RiskQuestion(self._policy.rules, given, asked)

    def saw(self, user_id: str, number: str) -> None:
        """Keep the user's secure number as a step answered it: the next Start asks the operator about it."""
        if self._sim_swap is not None:
            self._recall.keep(user_id, number)

    def denied(self, operation: Operation, refused: RiskDenied) -> None:
        """Count a DENY the step refused (its denial is journaled by the step)."""
        told = zip(refused.codes, refused.descriptions, strict=True)
        reasons = tuple(RiskReason(code, text) for code, text in told)
        self.count(
            operation, RiskAssessment(RiskDecision.DENY, reasons, refused.rules_version, refused.rules)
        )

    def described(self, kept: RiskAssessment | None) -> RiskAssessment | None:
        """A challenge's kept assessment with its reasons' descriptions (a retry by request id answers it)."""
        return None if kept is None else self._policy.rules.described(kept)

    def lesson(self, request: VerifyRequest, at: datetime) -> RiskLesson:
        """What a right code for this challenge will teach its user's memory, in the decision's step."""
        return lesson(request.challenge_id, request.operation, request.context, at, self._policy.limits)

    def reads(self, operation: Operation) -> bool:
        """Whether a rule can match this operation's kind: only then are the user and its memory read."""
        return self._policy.rules.may_match(kind(operation).name.lower())

    def unread(self) -> RiskAssessment:
        """The decision on an operation no rule can match (`reads` false): ALLOW, nothing read."""
        return RiskAssessment(RiskDecision.ALLOW, (), self._policy.rules.version)

    def count(self, operation: Operation, assessment: RiskAssessment) -> None:
        """Count the decision Start acts on (once per Start, whatever it read)."""
        self._meter.decided(kind(operation).name.lower(), assessment)

    async def check_resend(self, challenge: Challenge) -> None:
        """Refuse to send a sensitive operation's code again (RiskDenied `SIM_SWAP`) when the operator, asked
        afresh, reports a SIM change that Start's decision did not weigh: a thief who started the payment
        with stolen credentials, then had the number moved to his SIM, would get the code by a resend (an
        outside audit's; decision 0152). The operator unavailable, or a change Start's decision named: sent
        as before."""
        if self._sim_swap is None or kind(challenge.operation) not in SENSITIVE:
            return
        decided = challenge.risk
        if decided is not None and any(reason.code == SIM_SWAP for reason in decided.reasons):
            return
        if (await self._sim_of(challenge.phone, fresh=True)).state == "swapped":
            raise RiskDenied(
                challenge.user_id,
                (SIM_SWAP,),
                ("The SIM card of the secure number was changed since the code was sent",),
                decided.rules_version if decided is not None else self._policy.rules.version,
            )

    async def _sim_of(self, number: str, *, fresh: bool = False) -> SimSwapStatus:
        """The operator's answer about `number` (configured; `fresh`: asked now), counted; unavailable when
        it fails."""
        assert self._sim_swap is not None
        try:
            status = await self._sim_swap.status(number, fresh=fresh)
        except SimSwapUnavailable as exc:
            _log.warning("SIM swap check unavailable: %s", exc)
            status = SimSwapStatus("unavailable")
        self._meter.sim_swap(status.state)
        return status


def assess(  # noqa: PLR0913 (keyword-only: the step's inputs)
    *,
    asked: RiskQuestion,
    user: User,
    history: RiskHistory,
    operation: Operation,
    context: RequestContext,
    now: datetime,
    in_flight: Sequence[InFlight] = (),
) -> RiskAssessment:
    """What Start's step decides on the user's memory and open challenges, in Python (the fake store's step;
    the Lua step, _risk_rules.lua, is held equal to it by tests/contracts/test_risk_rules_lua.py)."""
    named = {
        **signals(
            operation=operation,
            user=user,
            history=history,
            context=context,
            sim=NOT_ASKED,
            now=now,
            in_flight=in_flight,
        ),
        **asked.given,  # the operator's answer and the bank's forwarded signals, as the step is given them
    }
    assessment = asked.rules.assess(named)
    return replace(assessment, payee_added_at=_new_payee(assessment, operation, UserRisk(user, history), now))
