"""How late the event loop runs what is due: what every call on a worker waits behind (decision 0052).

A worker serves every call on one asyncio loop. Anything that holds the loop (a batch handled in one go, a
garbage collection over a large heap, a call into C that keeps the GIL) delays every call in flight by as
much, whatever the load: at half the maximum rate the tail of the RPC latencies is such stalls, not queues.
A timer due every `interval` that fires late by `lag` says the loop was held that long; the histogram of
those lags is what an operator compares with the RPCs' p99 (sesame_event_loop_lag_seconds).
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Protocol

INTERVAL_SECONDS = 0.05  # 20 samples a second: cheap, and a stall of a few ms shows in the seconds after


class LagMeter(Protocol):
    """Where each measured lag goes."""

    def observe(self, seconds: float) -> None:
        """One timer fired `seconds` after it was due."""
        ...


class LoopLagMonitor:
    """Schedules itself every `interval` on the running loop and tells `meter` how late each tick came."""

    def __init__(self, meter: LagMeter, interval: float = INTERVAL_SECONDS) -> None:
        """Not running before `start()`."""
        self._meter = meter
        self._interval = interval
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        """Begin measuring on the running loop."""
        self._task = asyncio.get_running_loop().create_task(self._run(), name="sesame-loop-lag")

    async def stop(self) -> None:
        """Stop measuring."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            due = loop.time() + self._interval
            await asyncio.sleep(self._interval)
            # uvloop's clock has millisecond timers: a lag under one is noise, and reads as 0.
            self._meter.observe(max(0.0, loop.time() - due))
