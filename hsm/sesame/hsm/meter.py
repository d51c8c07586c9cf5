"""What the key store reports about each HSM call, and to whom: one timing point for every call.

Every call of `Pkcs11KeyStore` funnels through its `_call`, which times it and reports it here under the
call's name (`mac`, `sign`, `random`, ...); the service plugs its Prometheus histogram in
(`sesame.server.metrics.DependencyMeter`), probes and ceremonies report nowhere.
"""

from __future__ import annotations

from typing import Protocol


class CallMeter(Protocol):
    """Receives the duration of every HSM call and the calls that failed because the HSM was unavailable."""

    def observe(self, call: str, seconds: float) -> None:
        """One call of `call` took `seconds` (failed or not)."""

    def failed(self, call: str) -> None:
        """One call of `call` failed with HsmUnavailable."""


class Unmetered:
    """A meter that keeps nothing: health probes are not traffic."""

    def observe(self, call: str, seconds: float) -> None:
        """Drop the duration."""

    def failed(self, call: str) -> None:
        """Drop the failure."""


UNMETERED: CallMeter = Unmetered()
