"""Voiding a user's pending challenges: one atomic step per challenge, on the challenge's own slot.

Runs after the change of the user that calls for it (suspension, revocation, new secure number), so that a
crash in between leaves the change made, and the same request again voids what was not reached
(docs/decisions/0010).
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING

from sesame.server.domain.lifecycle import CLOCK_SKEW, Provenance, Voiding, VoidOutcome, VoidReason

if TYPE_CHECKING:
    from sesame.server.domain.ports import State
    from sesame.server.domain.tally import Tally


async def void_pending(  # noqa: PLR0913 (the change's facts, and where to count what it voided)
    store: State, user_id: str, reason: VoidReason, at: datetime, provenance: Provenance, *, tally: Tally
) -> int:
    """Cancel every challenge of the user that may still be open; how many this call voided."""
    voided = 0
    for challenge_id in await store.challenges.pending_challenges(user_id, at - CLOCK_SKEW):
        outcome = await store.challenges.void_challenge(
            challenge_id, Voiding(user_id, reason, at, provenance)
        )
        if outcome is VoidOutcome.VOIDED:
            voided += 1
            tally.voided(reason)
    return voided
