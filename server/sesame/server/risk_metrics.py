"""Risk metrics (docs/risk.md): decisions by operation, reasons and rules by decision, SIM-swap answers.

Labels are the operation's kind, the decision, the rules file's reason codes and rule ids (a bounded set,
fixed at boot) and the SIM-swap state: never a user, a number or a payee.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, Counter

from sesame.server.domain.ports import RiskMemory, RiskMeter
from sesame.server.domain.risk import RiskAssessment
from sesame.server.domain.risk_signals import RiskDenial, RiskLimits, RiskObservation, UserRisk

if TYPE_CHECKING:
    from sesame.server.metrics import Metrics


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


class MeteredRiskMemory:
    """The risk memory's scripts timed and counted as the store's other calls are (dependency `store`)."""

    def __init__(self, inner: RiskMemory, metrics: Metrics) -> None:
        self._inner = inner
        self._metrics = metrics

    async def user_and_history(self, user_id: str) -> UserRisk:
        return await self._metrics.timed("store", "read_user_risk", self._inner.user_and_history(user_id))

    async def remember(self, seen: RiskObservation, limits: RiskLimits) -> None:
        await self._metrics.timed("store", "remember_risk", self._inner.remember(seen, limits))

    async def record_denial(self, denial: RiskDenial, limits: RiskLimits) -> None:
        await self._metrics.timed("store", "record_risk_denial", self._inner.record_denial(denial, limits))

    async def denials(self, user_id: str) -> list[dict[str, str]]:
        return await self._metrics.timed("store", "risk_denials", self._inner.denials(user_id))


_: type[RiskMeter] = RiskMetrics
__: type[RiskMemory] = MeteredRiskMemory
