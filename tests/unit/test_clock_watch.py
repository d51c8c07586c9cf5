"""The clock watch (decision 0104): the worker's clock against the store's, each health round; out of step
beyond the tolerance either way, the round fails and every call is refused, until a round finds it back."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import datetime, timedelta

import pytest

from sesame.server.clock_watch import TOLERANCE, ClockWatch
from sesame.server.domain.errors import ClockOff, StoreUnavailable
from sesame.server.metrics import Metrics
from tests.fakes.clock import FixedClock


class StoreClock:
    """The store's clock, `offset` from the worker's; a round trip the worker's clock sees take `trip`."""

    def __init__(self, worker: FixedClock) -> None:
        self.worker = worker
        self.offset = timedelta()
        self.trip = timedelta()
        self.down = False

    async def reference_now(self) -> datetime:
        if self.down:
            raise StoreUnavailable("ConnectionError")
        self.worker.advance(self.trip / 2)
        at = self.worker.now() + self.offset
        self.worker.advance(self.trip / 2)
        return at


@pytest.fixture(name="store_clock")
def _store_clock() -> StoreClock:
    return StoreClock(FixedClock())


async def test_in_step_within_the_tolerance_either_way(store_clock: StoreClock) -> None:
    watch = ClockWatch(store_clock.worker, store_clock)
    for offset in (TOLERANCE, -TOLERANCE, timedelta()):
        store_clock.offset = offset
        await watch.check()
        watch.admit("sesame.v1.AuthenticationService/VerifyChallenge")


@pytest.mark.parametrize("ahead", [True, False])
async def test_beyond_the_tolerance_the_round_fails_and_calls_are_refused(
    store_clock: StoreClock,
    ahead: bool,  # noqa: FBT001 (a parameter)
) -> None:
    metrics = Metrics()
    watch = ClockWatch(store_clock.worker, store_clock, metrics)
    beyond = TOLERANCE + timedelta(milliseconds=1)
    store_clock.offset = -beyond if ahead else beyond  # the worker's clock less the store's: +beyond if ahead
    with pytest.raises(ClockOff) as failed:
        await watch.check()
    assert failed.value.offset == (beyond if ahead else -beyond)
    with pytest.raises(ClockOff):
        watch.admit("sesame.v1.AuthenticationService/VerifyChallenge")
    labels = {"method": "VerifyChallenge"}
    assert metrics.registry.get_sample_value("sesame_rpc_clock_refused_total", labels) == 1
    offset = metrics.registry.get_sample_value("sesame_clock_offset_seconds")
    assert offset == (beyond if ahead else -beyond).total_seconds()


async def test_a_round_in_step_again_lets_calls_through(store_clock: StoreClock) -> None:
    watch = ClockWatch(store_clock.worker, store_clock)
    store_clock.offset = timedelta(minutes=10)
    with pytest.raises(ClockOff):
        await watch.check()
    store_clock.offset = timedelta(seconds=1)
    await watch.check()
    watch.admit("sesame.v1.EnrollmentService/GetUser")
    assert watch.in_step


async def test_the_offset_is_read_at_the_middle_of_the_round_trip(store_clock: StoreClock) -> None:
    """A slow answer does not count as an offset: Redis read its TIME between the worker's two readings."""
    watch = ClockWatch(store_clock.worker, store_clock)
    store_clock.trip = TOLERANCE * 3  # far slower than the tolerance, the clocks equal
    await watch.check()
    assert watch.in_step


async def test_a_store_that_does_not_answer_leaves_the_verdict_as_it_was(store_clock: StoreClock) -> None:
    """The store probe reports the store down; the clock watch neither refuses nor admits on a guess."""
    watch = ClockWatch(store_clock.worker, store_clock)
    store_clock.down = True
    with pytest.raises(StoreUnavailable):
        await watch.check()
    assert watch.in_step
    store_clock.down, store_clock.offset = False, timedelta(minutes=5)
    with pytest.raises(ClockOff):
        await watch.check()
    store_clock.down = True
    with pytest.raises(StoreUnavailable):
        await watch.check()
    assert not watch.in_step


async def test_watching_checks_each_interval_and_outlives_a_failed_round(store_clock: StoreClock) -> None:
    """`sesame dispatch` has no health watcher: the watch checks on its own, through store faults."""
    watch = ClockWatch(store_clock.worker, store_clock)
    watching = asyncio.create_task(watch.watch(0.01))
    try:
        store_clock.offset = timedelta(minutes=5)
        await until(lambda: not watch.in_step)
        store_clock.down = True
        await asyncio.sleep(0.05)  # rounds that cannot read the store: the verdict stays
        assert not watch.in_step
        store_clock.down, store_clock.offset = False, timedelta()
        await until(lambda: watch.in_step)
    finally:
        watching.cancel()
        await asyncio.wait([watching])
    assert watching.cancelled()


async def until(condition: Callable[[], bool]) -> None:
    """Return once `condition` holds (within 2 s)."""
    for _ in range(400):
        if condition():
            return
        await asyncio.sleep(0.005)
    raise AssertionError("the watch never got there")


async def test_the_clocks_probe_leaves_a_store_away_to_the_stores_probe(store_clock: StoreClock) -> None:
    """Redis away: the clock's health probe passes while the clock was in step, fails while it was not (it
    failed in every Redis outage, a page for the clock: an outside audit)."""
    watch = ClockWatch(store_clock.worker, store_clock)
    store_clock.down = True
    await watch.probe.check()
    store_clock.down = False
    store_clock.offset = TOLERANCE * 3
    with pytest.raises(ClockOff):
        await watch.probe.check()
    store_clock.down = True
    with pytest.raises(ClockOff):
        await watch.probe.check()
