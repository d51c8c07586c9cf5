"""What each SMS provider did, told to the metrics and the watch: `ProviderMeter` (decision 0030).

The failover gateway reports every attempt and every change of a provider's circuit breaker here; this
counts the attempts by provider and outcome, sets the breaker gauge, and tells the watch, which logs the
change (rate-limited) and reads health from the breakers.
"""

from __future__ import annotations

from sesame.clients.sms_breaker import BreakerState
from sesame.clients.sms_failover import ProviderObserver
from sesame.server.metrics import Metrics
from sesame.server.sms_watch import SmsWatch


class ProviderMeter:
    """The failover gateway's observer in a running server."""

    def __init__(self, metrics: Metrics, watch: SmsWatch, providers: tuple[str, ...]) -> None:
        """Every breaker of `providers` reads closed until it changes."""
        self._metrics = metrics
        self._watch = watch
        for provider in providers:
            metrics.sms_breaker_state.labels(provider).set(BreakerState.CLOSED.level)

    def attempted(self, provider: str, outcome: str) -> None:
        """Count one attempt."""
        self._metrics.sms_attempts.labels(provider, outcome).inc()

    def breaker_changed(self, provider: str, state: BreakerState) -> None:
        """Set the gauge and tell the watch."""
        self._metrics.sms_breaker_state.labels(provider).set(state.level)
        self._watch.breaker_changed(provider, state)


_: type[ProviderObserver] = ProviderMeter
