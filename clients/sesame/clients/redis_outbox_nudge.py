"""`OutboxNudge`: told by the step that queued an SMS which shard's outbox it queued in (decision 0060).

A `sesame serve` worker's own steps queue most of what its dispatchers send (Start, Resend, a Verify's notice,
a number change's notice). The adapter that ran such a step knows from the script's answer that it queued,
and from the keyspace in which shard; it tells the nudge, which marks that shard on the worker's outbox bell:
its dispatchers take at once, with no Redis round trip to hear of it, and the worker holds no blocking read
per shard. What another process queued is found by the bell's sweep of every shard (`redis_outbox_bell`).
The shard is Redis's layout, not the domain's: this seam lives among the Redis adapters, not in the ports.
"""

from __future__ import annotations

from typing import Final, Protocol


class OutboxNudge(Protocol):
    """Where a queuing step says it queued."""

    def queued(self, shard: int) -> None:
        """An entry was just added to shard `shard`'s outbox (its step's script answered so)."""


class NoNudge:
    """A process whose steps wake no dispatcher of its own (none runs, or it only dispatches)."""

    def queued(self, shard: int) -> None:
        """Nothing to wake: another process's bell or sweep finds the entry."""


NO_NUDGE: Final[OutboxNudge] = NoNudge()
