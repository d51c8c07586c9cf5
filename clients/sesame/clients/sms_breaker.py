"""`CircuitBreaker`: stop asking a provider that keeps failing, and try it again now and then.

Closed, every attempt goes; `failures` provider faults in a row open it. Open, no attempt goes (the
message goes straight to the next provider) until `open_seconds` have passed; then half-open lets one
attempt through at a time: its success closes the breaker, its failure opens it for another period.
Only faults of the provider count (docs/decisions/0030): a refused number says nothing about its health.
"""

from __future__ import annotations

import enum
import time
from collections.abc import Callable
from dataclasses import dataclass

from sesame.server.domain.errors import DeliveryFailure


class BreakerState(enum.Enum):
    """Where a breaker stands; the metric's value is `level`."""

    CLOSED = "closed"
    HALF_OPEN = "half_open"
    OPEN = "open"

    @property
    def level(self) -> int:
        """0 closed, 1 half-open, 2 open: the worst worker's is the highest."""
        return {BreakerState.CLOSED: 0, BreakerState.HALF_OPEN: 1, BreakerState.OPEN: 2}[self]


@dataclass(frozen=True, slots=True)
class BreakerSettings:
    """How many provider faults in a row open a breaker, and how long it stays open before a trial."""

    failures: int = 5
    open_seconds: float = 30.0


OnChange = Callable[[str, BreakerState], None]  # the provider's name, its breaker's new state


class CircuitBreaker:
    """One provider's breaker, in one process (each worker judges from its own attempts)."""

    def __init__(
        self,
        name: str,
        settings: BreakerSettings,
        on_change: OnChange,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        """Closed; `on_change` hears of every change of state."""
        self._name = name
        self._settings = settings
        self._on_change = on_change
        self._monotonic = monotonic
        self._state = BreakerState.CLOSED
        self._failures = 0
        self._opened_at = 0.0
        self._trial = False  # half-open: an attempt is under way
        self.last_fault: DeliveryFailure = "error"  # what the provider last failed with

    @property
    def state(self) -> BreakerState:
        """The state now: an open breaker past its period is half-open, and says so when read (an outside
        audit: read only by the next attempt, a worker with nothing to send said the gateway down, and its
        breaker open, long after the period)."""
        open_for = self._monotonic() - self._opened_at
        if self._state is BreakerState.OPEN and open_for >= self._settings.open_seconds:
            self._become(BreakerState.HALF_OPEN)
        return self._state

    def allow(self) -> bool:
        """May an attempt go now? Half-open, the caller that gets True owns the one trial."""
        state = self.state
        if state is BreakerState.OPEN:
            return False
        if state is BreakerState.HALF_OPEN:
            if self._trial:
                return False
            self._trial = True
        return True

    def succeeded(self) -> None:
        """The provider took a message."""
        self._failures = 0
        self._trial = False
        if self._state is not BreakerState.CLOSED:
            self._become(BreakerState.CLOSED)

    def failed(self, reason: DeliveryFailure) -> None:
        """The provider failed in a way that is its own fault (unreachable, timeout, unavailable...)."""
        self.last_fault = reason
        self._trial = False
        self._failures += 1
        if self._state is BreakerState.HALF_OPEN or self._failures >= self._settings.failures:
            self._opened_at = self._monotonic()
            if self._state is not BreakerState.OPEN:
                self._become(BreakerState.OPEN)

    def released(self) -> None:
        """The attempt ended with no news of the provider's health (it refused this one message)."""
        self._trial = False

    def _become(self, state: BreakerState) -> None:
        self._state = state
        self._on_change(self._name, state)
