"""Risk metrics (docs/risk.md): decisions by operation, reasons and rules by decision, SIM-swap answers.

Labels are the operation's kind, the decision, the rules file's reason codes and rule ids (a bounded set,
fixed at boot) and the SIM-swap state: never a user, a number or a payee.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter

from sesame.server.domain.operation import OperationType
from sesame.server.domain.ports import RiskMeter
from sesame.server.domain.risk import RiskAssessment, RiskDecision

# What the operator's SIM-swap check can answer (sesame.server.domain.risk_signals), and `off` without one.
SIM_SWAP_STATES = ("swapped", "not_swapped", "unavailable", "off")


class RiskMetrics:
    """The RiskMeter on Prometheus counters, in the service's registry."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.decisions = Counter(
            "sesame_risk_decisions",
            "Risk assessments at StartChallenge, by operation and decision (allow, warn, hold, deny).",
            ["operation", "decision"],
            registry=registry,
        )
        self.reasons = Counter(
            "sesame_risk_reasons",
            "Reasons given with risk decisions, by reason code and the assessment's decision.",
            ["reason", "decision"],
            registry=registry,
        )
        self.rules = Counter(
            "sesame_risk_rules",
            "Risk rules that matched, by rule id and the rule's own decision.",
            ["rule", "decision"],
            registry=registry,
        )
        self.sim_swaps = Counter(
            "sesame_sim_swap_checks",
            "SIM-swap answers for sensitive operations, by state (swapped, not_swapped, unavailable, off).",
            ["state"],
            registry=registry,
        )
        # From 0, so that the first denial or swap is an increase (decision 0119); reasons and rules are the
        # rules file's, born at their first match.
        for operation in OperationType:
            for decision in RiskDecision:
                self.decisions.labels(operation.name.lower(), decision.name.lower()).inc(0)
        for state in SIM_SWAP_STATES:
            self.sim_swaps.labels(state).inc(0)

    def decided(self, operation: str, assessment: RiskAssessment) -> None:
        """Count one assessment, each of its reasons and each rule that matched."""
        decision = assessment.decision.name.lower()
        self.decisions.labels(operation, decision).inc()
        for code in assessment.codes:
            self.reasons.labels(code, decision).inc()
        for rule in assessment.rules:
            self.rules.labels(rule, decision).inc()

    def sim_swap(self, state: str) -> None:
        """Count one operator answer."""
        self.sim_swaps.labels(state).inc()


_: type[RiskMeter] = RiskMetrics
