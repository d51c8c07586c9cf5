"""What follows a block after wrong codes in a row: the user's pending challenges voided.

The block itself is decided in the atomic step that counts the failure (docs/decisions/0013), and the same
step queues the payer's alert in the SMS outbox (RTS Art. 4(4); docs/decisions/0033), so that the alert is
not lost when the process dies after the block. While the block lasts no code of the user is evaluated,
whatever happens here: a failure to void is logged and never changes the verify answer (a challenge not
voided still answers USER_BLOCKED until the block ends).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING

from sesame.server.domain.errors import SesameError
from sesame.server.domain.lifecycle import Provenance, Voiding, VoidReason
from sesame.server.domain.tally import UNTALLIED, Tally
from sesame.server.domain.voiding import void_pending

if TYPE_CHECKING:
    from sesame.server.domain.model import Challenge
    from sesame.server.domain.ports import State

_log = logging.getLogger("sesame.blocking")


@dataclass(frozen=True, slots=True)
class Block:
    """A block that has just started: whose, until when, and the call whose wrong code started it."""

    user_id: str
    until: datetime
    at: datetime
    caller: str  # the calling service, journaled with each voiding
    # The user's change counts right after the block (its step counts one change of standing: decision 0013,
    # amended); None: whatever is still open (a challenge opened before the counts existed started it).
    counts: tuple[int, int] | None = None

    @classmethod
    def started_by(cls, challenge: Challenge, until: datetime, at: datetime, caller: str) -> Block:
        """The block the wrong code of `challenge` started. Decided WRONG_CODE, the challenge was not stale:
        the user's counts were the ones it opened under, and the block's step added one change of standing."""
        opened = challenge.opened_changes
        counts = None if opened is None else (opened[0] + 1, opened[1])
        return cls(challenge.user_id, until, at, caller, counts)


async def after_block(store: State, block: Block, *, tally: Tally = UNTALLIED) -> None:
    """Void the user's pending challenges; never raises (the alert was queued with the block)."""
    provenance = Provenance("sesame", "wrong codes in a row", "", block.caller)
    try:
        # What was open at the block: a challenge opened after an unblock that landed before this step has the
        # block's counts, and is left alone (an outside audit saw its code, sent, answer VOIDED).
        voiding = Voiding(block.user_id, VoidReason.USER_BLOCKED, block.at, provenance, block.counts)
        await void_pending(store, voiding, tally=tally)
    except SesameError as exc:
        _log.warning("pending challenges of a blocked user not voided (%s)", type(exc).__name__)
