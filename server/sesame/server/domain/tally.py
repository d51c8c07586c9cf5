"""What the flows did, counted for the operators: the outcomes only a flow knows, never for whom.

The flows tell a Tally what they decided (a challenge opened, a code judged, a resend taken or refused, a
challenge voided, a lifecycle change made); the service counts that in Prometheus
(`sesame.server.metrics.MetricsTally`), tests and tools pass `UNTALLIED`. Durations are not here: each
adapter times its own calls at its one funnel (Redis: `Scripts.call`; HSM: `Pkcs11KeyStore._call`), so no
wrapper sits between a flow and its ports (docs/decisions/0026).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

from sesame.server.domain.errors import ChallengeClosed, ResendRefused, UserBlocked

if TYPE_CHECKING:
    from sesame.server.domain.lifecycle import VoidReason
    from sesame.server.domain.model import VerificationOutcome
    from sesame.server.domain.operation import Operation


# What the flows tell a Tally, each a label value the metrics count from 0 at boot (decision 0119).
RESEND_OUTCOMES = ("resent", "too_soon", "exhausted", "closed", "user_blocked")
USER_CHANGES = ("suspend", "reinstate", "unblock", "revoke", "change_phone", "terminate_client")


class Tally(Protocol):
    """Receives the outcomes of the flows; labels name kinds and outcomes, never a user or a number."""

    def opened(self, operation: Operation) -> None:
        """A challenge was opened for an operation (counted by its type)."""

    def verified(self, outcome: VerificationOutcome) -> None:
        """A code was judged (counted by result), and a block it started."""

    def resend(self, outcome: str) -> None:
        """A resend was taken (`resent`) or refused (`too_soon`, `exhausted`, `closed`, `user_blocked`)."""

    def budget_refused(self, subject: str) -> None:
        """A send was refused because a send budget was spent (`user`, `phone`, `caller`, `global`)."""

    def voided(self, reason: VoidReason) -> None:
        """A pending challenge was voided by a change of its user."""

    def changed(self, change: str) -> None:
        """A lifecycle change made: suspend, reinstate, unblock, revoke, change_phone, terminate_client."""


class Untallied:
    """A tally that keeps nothing."""

    def opened(self, operation: Operation) -> None:
        """Drop it."""

    def verified(self, outcome: VerificationOutcome) -> None:
        """Drop it."""

    def resend(self, outcome: str) -> None:
        """Drop it."""

    def budget_refused(self, subject: str) -> None:
        """Drop it."""

    def voided(self, reason: VoidReason) -> None:
        """Drop it."""

    def changed(self, change: str) -> None:
        """Drop it."""


UNTALLIED: Tally = Untallied()


def resend_refusal(refusal: Exception) -> str | None:
    """The outcome a refused resend is counted under; None for a refusal that is no resend outcome."""
    if isinstance(refusal, ResendRefused):
        return "exhausted" if refusal.retry_after is None else "too_soon"
    if isinstance(refusal, ChallengeClosed):
        return "closed"
    if isinstance(refusal, UserBlocked):
        return "user_blocked"
    return None
