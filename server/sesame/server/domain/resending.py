"""What a Resend's step answers, and the request id a retried Resend is answered by (decision 0065)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from sesame.server.domain.model import Challenge


@dataclass(frozen=True, slots=True)
class ResendClaim:
    """A Resend's idempotency key, claimed for the challenge's user in the step that takes the resend (as
    Start's is): the same key for another challenge of the user is INVALID_ARGUMENT on `request_id`."""

    user_id: str
    request_id: str


@dataclass(frozen=True, slots=True)
class Resent:
    """The challenge after the resend the step took; or, for a request id an earlier call claimed on it,
    after that call's resend (`earlier_hold` names that resend's hold: nothing was taken or queued now).
    `queued`: the resend's SMS is still in the outbox."""

    challenge: Challenge
    earlier_hold: str = ""
    queued: bool = True

    @property
    def earlier(self) -> bool:
        """Whether this answers an earlier call's resend (a retry: no second resend, no second SMS)."""
        return bool(self.earlier_hold)
