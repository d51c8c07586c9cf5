"""This process's clock against the state store's: out of step, it serves no call, sends no SMS and seals
nothing (decision 0104).

Every instant a worker decides by is read on its own clock: a code's expiry at Verify, the end of a block,
the spacing of resends, the cooling after a change of number. Redis counts its expiries on its clock, the
other workers on theirs. A host whose clock drifted or was set wrong decided with it: 10 minutes behind, it
verified a code 12 minutes old; ahead, it lifted a block early by the gap (an outside audit).

Each health round reads Redis's TIME between two readings of the worker's clock. Off by more than TOLERANCE
either way, the round fails (health NOT_SERVING, a balancer takes the worker out) and every call but
health's is refused with ClockOff (UNAVAILABLE with RetryInfo: nothing was done, a retry lands on a worker
in step) until a round finds the clock in step again. Between two rounds (a second by default) a clock that
jumps is not seen: what a worker's instants expire in Redis is a duration, not an instant, so that such a
jump lifts no ceiling (decision 0103). The worker's dispatch loops (and `sesame dispatch`'s, which checks its
clock on its own) take nothing from the outbox while the clock is out of step; the sealer checks it at each
step, and seals nothing out of step.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Final

from sesame.server.domain.errors import ClockOff, StoreUnavailable
from sesame.server.domain.lifecycle import CLOCK_SKEW

if TYPE_CHECKING:
    from sesame.server.domain.ports import Clock, ReferenceClock
    from sesame.server.metrics import Metrics

_log = logging.getLogger("sesame.health")

# Two workers each within this of Redis are within CLOCK_SKEW of each other: what the index of open
# challenges keeps past an expiry, and what the voiding of a change covers.
TOLERANCE: Final = CLOCK_SKEW / 2


class SystemClock:
    """UTC wall clock."""

    def now(self) -> datetime:
        """The current instant, timezone-aware."""
        return datetime.now(UTC)


class ClockWatch:
    """A health probe (`check`) and the gate of every call (`admit`): the worker's clock against Redis's."""

    def __init__(
        self,
        clock: Clock,
        reference: ReferenceClock,
        metrics: Metrics | None = None,
        tolerance: timedelta = TOLERANCE,
    ) -> None:
        self._clock = clock
        self._reference = reference
        self._metrics = metrics
        self._tolerance = tolerance
        # In step until a round says otherwise: the first runs before the port opens.
        self._offset = timedelta()

    async def check(self) -> None:
        """Measure the offset; ClockOff when it is beyond the tolerance. StoreUnavailable (the offset as it
        was: a store that does not answer is the store probe's failure, not the clock's)."""
        before = self._clock.now()
        reference = await self._reference.reference_now()
        after = self._clock.now()
        # Redis read TIME between the two readings: the midpoint errs by half the round trip at most.
        offset = before + (after - before) / 2 - reference
        if self._metrics is not None:
            self._metrics.clock_offset.set(offset.total_seconds())
        was_in_step, self._offset = self.in_step, offset
        if was_in_step and not self.in_step:
            _log.warning(
                "clock %+.1f s off the state store's (tolerance %.0f s): out of service until back in step",
                offset.total_seconds(),
                self._tolerance.total_seconds(),
            )
        elif self.in_step and not was_in_step:
            _log.info("clock back in step with the state store's (%+.1f s)", offset.total_seconds())
        if not self.in_step:
            raise ClockOff(offset)

    @property
    def probe(self) -> ClockProbe:
        """The health probe of the clock alone (`ClockProbe`)."""
        return ClockProbe(self)

    async def watch(self, interval: float) -> None:
        """Check every `interval` seconds until cancelled: in a process without a health watcher (`sesame
        dispatch`), whose dispatch loops read `in_step`."""
        while True:
            await asyncio.sleep(interval)
            with contextlib.suppress(ClockOff, StoreUnavailable):
                await self.check()

    @property
    def in_step(self) -> bool:
        """Whether the last round found the clock within the tolerance of the store's."""
        return abs(self._offset) <= self._tolerance

    @property
    def offset(self) -> timedelta:
        """The worker's clock less the store's, as the last round measured it."""
        return self._offset

    def admit(self, method: str) -> None:
        """Return when a call of `method` (`package.Service/Method`) may run; ClockOff (counted) while the
        clock is out of step."""
        if not self.in_step:
            if self._metrics is not None:
                self._metrics.rpc_clock_refused.labels(method.rsplit("/", 1)[-1]).inc()
            raise ClockOff(self._offset)


class ClockProbe:
    """The clock's health probe: fails while the clock is out of step. A store that does not answer is the
    store probe's failure: the clock's verdict stays as the last round left it (health said `clock
    (TimeoutError)` beside `state store (TimeoutError)` in every Redis outage, and its gauge read 0: a page
    for the clock that was Redis's, an outside audit)."""

    def __init__(self, watch: ClockWatch) -> None:
        self._watch = watch

    async def check(self) -> None:
        """ClockOff while out of step; nothing else."""
        try:
            await self._watch.check()
        except StoreUnavailable:
            if not self._watch.in_step:
                raise ClockOff(self._watch.offset) from None
