"""Risk rules: the vocabulary (decisions, reasons, assessments), the rules and their pure evaluator.

A rule set is data, read from a versioned file (`risk_rules`); each rule is an id, a description a customer
can be told, a condition (every clause must hold) over named signals (`risk_signals`), a decision and a
reason code. The assessment of an operation is the strongest decision of the rules that match, with every
matching rule's reason, and the rules' version: the evidence of why (RTS Art. 2; docs/risk.md).
"""

from __future__ import annotations

import enum
import operator
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime

SignalValue = bool | int | float | str
"""A signal's value: a flag, a count, a duration in hours, an amount in major units, a name."""

Signals = Mapping[str, SignalValue]
"""The signals of one operation by name; a signal that is unknown is absent (a clause over it never holds)."""


class RiskDecision(enum.IntEnum):
    """What the rules decide, weakest first: the strongest of the matching rules' decisions wins."""

    ALLOW = 1  # send the code
    WARN = 2  # send the code with the strongest warning wording
    HOLD = 3  # send it, and flag the proof so that the payment system holds the transfer for a call-back
    DENY = 4  # send nothing: FAILED_PRECONDITION RISK_DENIED


@dataclass(frozen=True, slots=True)
class RiskReason:
    """Why: a stable code (`NEW_PAYEE`, ...) and the matching rule's description, as a customer is told."""

    code: str
    description: str


@dataclass(frozen=True, slots=True)
class RiskAssessment:
    """The decision on one operation, every reason for it, and the version of the rules that decided."""

    decision: RiskDecision
    reasons: tuple[RiskReason, ...]
    rules_version: str
    rules: tuple[str, ...] = ()  # the ids of the rules that matched, for the journal and the metrics
    # When the transfer's payee was added (a verified AddBeneficiary in the last 72 hours), for a WARN or
    # HOLD only: its SMS then names the payee as new (decision 0032).
    payee_added_at: datetime | None = None

    @property
    def codes(self) -> tuple[str, ...]:
        """The reason codes, in rule order."""
        return tuple(reason.code for reason in self.reasons)

    def journal_fields(self) -> dict[str, str]:
        """The assessment as journal fields of the challenge it was made for (the evidence of why)."""
        return {
            "risk_decision": self.decision.name.lower(),
            "risk_reasons": ",".join(self.codes),
            "risk_rules": ",".join(self.rules),
            "risk_rules_version": self.rules_version,
        }


def _member(value: SignalValue, options: object) -> bool:
    return isinstance(options, tuple) and value in options


def _ordered(compare: Callable[[float, float], bool]) -> Callable[[SignalValue, object], bool]:
    """A numeric comparison; false for a flag or a name (rules are checked for that at boot)."""

    def holds(value: SignalValue, bound: object) -> bool:
        if isinstance(value, bool | str) or not isinstance(bound, int | float) or isinstance(bound, bool):
            return False
        return compare(value, bound)

    return holds


OPERATORS: Mapping[str, Callable[[SignalValue, object], bool]] = {
    "<": _ordered(operator.lt),
    "<=": _ordered(operator.le),
    ">": _ordered(operator.gt),
    ">=": _ordered(operator.ge),
    "==": operator.eq,
    "!=": operator.ne,
    "in": _member,
}


@dataclass(frozen=True, slots=True)
class Clause:
    """`signal op value`: holds only when the signal is known and the comparison is true."""

    signal: str
    op: str
    value: SignalValue | tuple[SignalValue, ...]

    def holds(self, signals: Signals) -> bool:
        """Whether the clause holds for these signals (an unknown signal: never)."""
        if self.signal not in signals:
            return False
        return OPERATORS[self.op](signals[self.signal], self.value)


@dataclass(frozen=True, slots=True)
class Rule:
    """When every clause holds: `decision`, for `reason` (a stable code), explained by `description`."""

    rule_id: str
    description: str
    when: tuple[Clause, ...]
    decision: RiskDecision
    reason: str

    def matches(self, signals: Signals) -> bool:
        """Whether every clause holds."""
        return all(clause.holds(signals) for clause in self.when)

    def may_match(self, operation: str) -> bool:
        """Whether the rule can hold for this operation (`login`, ...): no `operation` clause refuses it."""
        named = {"operation": operation}
        return all(clause.holds(named) for clause in self.when if clause.signal == "operation")


@dataclass(frozen=True, slots=True)
class RuleSet:
    """The rules in file order, and the version that names them in every assessment."""

    version: str
    rules: tuple[Rule, ...]

    def may_match(self, operation: str) -> bool:
        """Whether some rule can hold for this operation; if none can, its decision is ALLOW, unread."""
        return any(rule.may_match(operation) for rule in self.rules)

    def described(self, kept: RiskAssessment) -> RiskAssessment:
        """A kept assessment (codes and rule ids, no descriptions) with its reasons told as when it was made:
        each matched rule's description, by these rules if they are the ones that decided (else the codes)."""
        if kept.rules_version != self.version:
            return kept
        by_id = {rule.rule_id: rule for rule in self.rules}
        reasons: dict[str, RiskReason] = {}
        for rule_id in kept.rules:
            rule = by_id.get(rule_id)
            if rule is not None:
                reasons.setdefault(rule.reason, RiskReason(rule.reason, rule.description))
        told = tuple(reasons.get(reason.code, reason) for reason in kept.reasons)
        return RiskAssessment(kept.decision, told, kept.rules_version, kept.rules, kept.payee_added_at)

    def assess(self, signals: Signals) -> RiskAssessment:
        """The strongest decision among the matching rules (ALLOW when none), with each one's reason."""
        matched = [rule for rule in self.rules if rule.matches(signals)]
        decision = max((rule.decision for rule in matched), default=RiskDecision.ALLOW)
        reasons: dict[str, RiskReason] = {}
        for rule in matched:
            reasons.setdefault(rule.reason, RiskReason(rule.reason, rule.description))
        return RiskAssessment(
            decision=decision,
            reasons=tuple(reasons.values()),
            rules_version=self.version,
            rules=tuple(rule.rule_id for rule in matched),
        )
