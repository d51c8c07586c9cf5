"""The lifecycle half of `MeteredStateStore`: every registry transition timed, accepted changes counted.

Split from `sesame.server.metrics` as the Redis store is split (`redis_users`): one class per file would
pass 300 lines. Labels name the change, never the user.
"""

from __future__ import annotations

from collections.abc import Awaitable
from datetime import datetime
from typing import TYPE_CHECKING, TypeVar

from sesame.server.domain.lifecycle import (
    ClientTermination,
    Consumption,
    PhoneChange,
    PhoneChanged,
    PhoneChangeOutcome,
    Provenance,
    RevocationOutcome,
    StatusChange,
    Unblocked,
    Unblocking,
    UnblockOutcome,
    UserNotice,
    Voiding,
    VoidOutcome,
)
from sesame.server.domain.model import Challenge, User
from sesame.server.domain.ports import StateStore

if TYPE_CHECKING:
    from sesame.server.metrics import Metrics

T = TypeVar("T")


class MeteredRegistry:
    """Times the lifecycle transitions of an inner StateStore; counts changes and voided challenges."""

    def __init__(self, inner: StateStore, metrics: Metrics) -> None:
        self._inner = inner
        self._metrics = metrics

    async def pending_challenges(self, user_id: str, expiring_after: datetime) -> list[str]:
        """Read the user's pending challenges, timed."""
        return await self._timed(
            "pending_challenges", self._inner.pending_challenges(user_id, expiring_after)
        )

    async def void_challenge(self, challenge_id: str, voiding: Voiding) -> VoidOutcome:
        """Void a pending challenge, timed; a challenge actually voided is counted by reason."""
        outcome = await self._timed("void_challenge", self._inner.void_challenge(challenge_id, voiding))
        if outcome is VoidOutcome.VOIDED:
            self._metrics.challenges_voided.labels(voiding.reason.value).inc()
        return outcome

    async def consume_challenge(self, consumption: Consumption) -> Challenge:
        """Spend a verified challenge for a number change, timed."""
        return await self._timed("consume_challenge", self._inner.consume_challenge(consumption))

    async def change_user_status(self, change: StatusChange) -> User:
        """Suspend, reinstate or revoke, timed and counted by change."""
        user = await self._timed("change_user_status", self._inner.change_user_status(change))
        self._metrics.user_changes.labels(change.action.value).inc()
        return user

    async def revoke_client_user(
        self, client_id: str, user_id: str, at: datetime, provenance: Provenance
    ) -> RevocationOutcome:
        """Revoke a terminated client's user, timed; a revocation made now is counted."""
        outcome = await self._timed(
            "revoke_client_user", self._inner.revoke_client_user(client_id, user_id, at, provenance)
        )
        if outcome is RevocationOutcome.REVOKED:
            self._metrics.user_changes.labels("revoke").inc()
        return outcome

    async def unblock_user(self, unblocking: Unblocking) -> Unblocked:
        """Lift a block after wrong codes in a row, timed; an unblock made now is counted."""
        unblocked = await self._timed("unblock_user", self._inner.unblock_user(unblocking))
        if unblocked.outcome is UnblockOutcome.UNBLOCKED:
            self._metrics.user_changes.labels("unblock").inc()
        return unblocked

    async def change_secure_phone(self, change: PhoneChange) -> PhoneChanged:
        """Replace the secure number, timed; a change made now is counted."""
        changed = await self._timed("change_secure_phone", self._inner.change_secure_phone(change))
        if changed.outcome is PhoneChangeOutcome.CHANGED:
            self._metrics.user_changes.labels("change_phone").inc()
        return changed

    async def applied_change(self, user_id: str, request_id: str) -> str | None:
        """Look a request id up among the user's applied changes, timed."""
        return await self._timed("applied_change", self._inner.applied_change(user_id, request_id))

    async def record_user_notice(self, user_id: str, notice: UserNotice) -> None:
        """Journal a notice, timed."""
        await self._timed("record_user_notice", self._inner.record_user_notice(user_id, notice))

    async def enlist_user(self, client_id: str, user_id: str, at: datetime) -> None:
        """Add a user to its client's index, timed."""
        await self._timed("enlist_user", self._inner.enlist_user(client_id, user_id, at))

    async def client_users(self, client_id: str) -> list[str]:
        """Read a client's users, timed."""
        return await self._timed("client_users", self._inner.client_users(client_id))

    async def terminate_client(self, termination: ClientTermination) -> None:
        """Terminate a client, timed and counted."""
        await self._timed("terminate_client", self._inner.terminate_client(termination))
        self._metrics.user_changes.labels("terminate_client").inc()

    async def _timed(self, call: str, awaitable: Awaitable[T]) -> T:
        return await self._metrics.timed("store", call, awaitable)
