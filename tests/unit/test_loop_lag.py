"""The event loop's lag: a loop held by synchronous work shows in sesame_event_loop_lag_seconds (0052)."""

from __future__ import annotations

import asyncio
import time

from sesame.server.loop_lag import LoopLagMonitor
from sesame.server.metrics import Metrics

HELD = 0.2  # seconds the test holds the loop: far above the 0.05 bucket whatever the machine's load


def _sample(metrics: Metrics, name: str, labels: dict[str, str] | None = None) -> float:
    return metrics.registry.get_sample_value(name, labels or {}) or 0.0


async def test_a_loop_held_by_synchronous_work_is_measured_as_lag() -> None:
    """A tick due while the loop is held fires late by about as long: it lands above the 0.1 s bucket, and the
    ticks of a free loop keep coming (the count grows)."""
    metrics = Metrics()
    monitor = LoopLagMonitor(metrics.event_loop_metrics(), interval=0.01)
    monitor.start()
    try:
        await asyncio.sleep(0.05)
        time.sleep(HELD)  # noqa: ASYNC251 (the stall under test: synchronous work on the loop)
        await asyncio.sleep(0.05)
    finally:
        await monitor.stop()
    count = _sample(metrics, "sesame_event_loop_lag_seconds_count")
    at_most_a_tenth = _sample(metrics, "sesame_event_loop_lag_seconds_bucket", {"le": "0.1"})
    assert count >= 2
    assert count - at_most_a_tenth >= 1  # the tick due during the stall
    assert _sample(metrics, "sesame_event_loop_lag_seconds_sum") >= HELD - 0.02


async def test_the_monitor_stops_and_measures_no_more() -> None:
    """After `stop` no tick is counted: the task is gone with the worker's runtime."""
    metrics = Metrics()
    monitor = LoopLagMonitor(metrics.event_loop_metrics(), interval=0.01)
    monitor.start()
    await asyncio.sleep(0.05)
    await monitor.stop()
    count = _sample(metrics, "sesame_event_loop_lag_seconds_count")
    await asyncio.sleep(0.05)
    assert _sample(metrics, "sesame_event_loop_lag_seconds_count") == count
