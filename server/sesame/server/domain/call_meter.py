"""The port through which an adapter reports each call to its dependency: one timing point per adapter.

Every Redis round trip funnels through `Scripts.call` (`sesame.clients.redis_scripts`) and every HSM call
through `Pkcs11KeyStore._call` (`sesame.hsm.pkcs11`); each times the call and reports it here under the
call's name (the script's or read's: `start_challenge`, `get_user`...; the HSM's: `mac`, `sign`,
`random`...). The service plugs its Prometheus histogram in (`sesame.server.metrics.DependencyMeter`);
health probes, ceremonies and tests report nowhere.
"""

from __future__ import annotations

from typing import Literal, Protocol

# Every call of the key store, as its funnel names it (`Pkcs11KeyStore._call`): the metrics count each one's
# failures from 0 at boot, so that the first failure is an increase an alert sees (decision 0119).
HsmCall = Literal[
    "mac", "random", "sign", "public_keys", "versions", "current_keys", "key_protection", "key_present"
]
# Every read of the state store, as its funnel names it (`Scripts.call` and `read_each`, beside the scripts,
# named by their `lua/*.lua` files): the metrics count each one's failures from 0 at boot too (0119).
StoreRead = Literal[
    "applied_change",
    "challenge_journal",
    "challenge_journal_page",
    "challenge_refusals",
    "client_journal",
    "client_users",
    "feed_entries",
    "get_challenge",
    "get_user",
    "pending_challenges",
    "start_claimed",
    "stored_proof",
    "user_journal",
]


class CallMeter(Protocol):
    """Receives the duration of every call, and each call that failed for want of the dependency."""

    def observe(self, call: str, seconds: float) -> None:
        """One call of `call` took `seconds` (failed or not)."""

    def failed(self, call: str) -> None:
        """One call of `call` failed with StoreUnavailable or HsmUnavailable."""


class Unmetered:
    """A meter that keeps nothing: probes and ceremonies are not traffic."""

    def observe(self, call: str, seconds: float) -> None:
        """Drop the duration."""

    def failed(self, call: str) -> None:
        """Drop the failure."""


UNMETERED: CallMeter = Unmetered()
