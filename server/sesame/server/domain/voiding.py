"""Voiding a user's pending challenges: one atomic step per challenge, on the challenge's own slot.

Runs after the change of the user that calls for it (suspension, revocation, new secure number), so that a
crash in between leaves the change made, and the same request again voids what was not reached
(docs/decisions/0010). That late run, or a slow one, must not reach what the user opened after the change:
each step compares the challenge's opening with the change's counts (`Voiding.opened_before`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from sesame.server.domain.lifecycle import CLOCK_SKEW, Voiding, VoidOutcome

if TYPE_CHECKING:
    from sesame.server.domain.ports import State
    from sesame.server.domain.tally import Tally


async def void_pending(store: State, voiding: Voiding, *, tally: Tally) -> int:
    """Cancel every challenge of the user still open that the change calls for; how many this call voided."""
    voided = 0
    for challenge_id in await store.challenges.pending_challenges(voiding.user_id, voiding.at - CLOCK_SKEW):
        if await store.challenges.void_challenge(challenge_id, voiding) is VoidOutcome.VOIDED:
            voided += 1
            tally.voided(voiding.reason)
    return voided
