"""What the Redis store reports about each round trip, and to whom: one timing point for every command.

Every script and every read of the store funnels through `Scripts.call` (`sesame.clients.redis_scripts`),
which times it and reports it here under the call's name (the script's, or the read's: `get_user`,
`get_challenge`, ...); the service plugs its Prometheus histogram in
(`sesame.server.metrics.DependencyMeter`), health probes and tests report nowhere. The same shape as
`sesame.hsm.meter.CallMeter`: the adapters do not import each other (import-linter).
"""

from __future__ import annotations

from typing import Protocol


class CallMeter(Protocol):
    """Receives the duration of every Redis round trip, and each that failed because Redis was unavailable."""

    def observe(self, call: str, seconds: float) -> None:
        """One call of `call` took `seconds` (failed or not)."""

    def failed(self, call: str) -> None:
        """One call of `call` failed with StoreUnavailable."""


class Unmetered:
    """A meter that keeps nothing."""

    def observe(self, call: str, seconds: float) -> None:
        """Drop the duration."""

    def failed(self, call: str) -> None:
        """Drop the failure."""


UNMETERED: CallMeter = Unmetered()
