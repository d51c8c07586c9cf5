"""What each SMS provider did, told to the metrics and the watch: `ProviderMeter` (decision 0030).

The failover gateway reports every attempt and every change of a provider's circuit breaker here, and the
report routes (Kannel DLR, SMPP receipts) each delivery report once recorded; this counts the attempts by
provider and outcome and the reports by provider and state, sets the breaker gauge, and tells the watch,
which logs the change (rate-limited) and reads health from the breakers.
"""

from __future__ import annotations

from typing import get_args

from sesame.clients.sms_breaker import BreakerState
from sesame.clients.sms_failover import ProviderObserver
from sesame.server.domain.errors import DeliveryFailure
from sesame.server.domain.model import DeliveryState
from sesame.server.metrics import Metrics
from sesame.server.sms_watch import SmsWatch

# What a provider's delivery report can say (Kannel DLR bits, SMPP receipt states).
REPORTED = (DeliveryState.SENT, DeliveryState.DELIVERED, DeliveryState.FAILED, DeliveryState.EXPIRED)
# What one attempt at a provider comes to (sesame.clients.sms_failover): taken, queued, failed, or skipped.
ATTEMPTED = ("sent", "queued", *get_args(DeliveryFailure), "open")


class ProviderMeter:
    """The failover gateway's observer in a running server."""

    def __init__(self, metrics: Metrics, watch: SmsWatch, providers: tuple[str, ...]) -> None:
        """Every breaker of `providers` reads closed until it changes."""
        self._metrics = metrics
        self._watch = watch
        for provider in providers:
            metrics.sms_breaker_state.labels(provider).set(BreakerState.CLOSED.level)
            for state in REPORTED:  # a provider that reported nothing yet reads 0, not "no data"
                metrics.sms_reports.labels(provider, state.value).inc(0)
            for outcome in ATTEMPTED:  # and its first failure is an increase (decision 0119)
                metrics.sms_attempts.labels(provider, outcome).inc(0)

    def attempted(self, provider: str, outcome: str) -> None:
        """Count one attempt."""
        self._metrics.sms_attempts.labels(provider, outcome).inc()

    def breaker_changed(self, provider: str, state: BreakerState) -> None:
        """Set the gauge and tell the watch."""
        self._metrics.sms_breaker_state.labels(provider).set(state.level)
        self._watch.breaker_changed(provider, state)

    def reported(self, provider: str, state: DeliveryState) -> None:
        """Count one delivery report."""
        self._metrics.sms_reports.labels(provider, state.value).inc()

    def bind_changed(self, provider: str, bound: bool) -> None:  # noqa: FBT001 (the observer's event)
        """Tell the watch, which reads health from it."""
        self._watch.bind_changed(provider, bound)


_: type[ProviderObserver] = ProviderMeter
