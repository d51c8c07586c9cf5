"""The load loop: a fixed number of operations in flight, bounded in count and in time, and their latencies.

An operation is what a caller does at once (one echo pair, one Start, one Verify, one Start+Verify flow);
each RPC inside it is timed on its own, so a flow reports Start and Verify separately.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

import grpc

T = TypeVar("T")


class Exhausted(Exception):
    """The operation has nothing left to work on (Verify alone ran out of opened challenges)."""


@dataclass(frozen=True, slots=True)
class Latency:
    """Count and percentiles (nearest rank) of one RPC's latencies, in milliseconds."""

    count: int
    rate_per_s: float
    p50_ms: float
    p90_ms: float
    p99_ms: float
    max_ms: float

    @staticmethod
    def of(samples: list[float], seconds: float) -> Latency:
        """Summarise `samples` (seconds each) measured over `seconds` of wall time."""
        ordered = sorted(samples) or [0.0]

        def rank(q: float) -> float:
            return round(ordered[max(0, min(len(ordered) - 1, math.ceil(len(ordered) * q) - 1))] * 1000, 3)

        return Latency(
            count=len(samples),
            rate_per_s=round(len(samples) / seconds, 1) if seconds > 0 else 0.0,
            p50_ms=rank(0.50),
            p90_ms=rank(0.90),
            p99_ms=rank(0.99),
            max_ms=round(ordered[-1] * 1000, 3),
        )


class Recorder:
    """Latencies per RPC name and errors per status code, for one phase."""

    def __init__(self) -> None:
        """Empty."""
        self.samples: dict[str, list[float]] = {}
        self.errors: Counter[str] = Counter()

    async def timed(self, name: str, call: Awaitable[T]) -> T:
        """Await `call`, keep its latency under `name`; an RPC error is counted by code and raised."""
        begin = time.perf_counter()
        try:
            result = await call
        except grpc.RpcError as exc:
            code = exc.code() if isinstance(exc, grpc.aio.AioRpcError) else None
            self.errors[f"{name}:{code.name if code else 'UNKNOWN'}"] += 1
            raise
        self.samples.setdefault(name, []).append(time.perf_counter() - begin)
        return result

    def keep(self, name: str, seconds: float) -> None:
        """Keep a duration measured elsewhere (a whole flow, an SMS delay) under `name`."""
        self.samples.setdefault(name, []).append(seconds)

    def fail(self, reason: str) -> None:
        """Count a failure that is not an RPC status (a wrong result, an SMS that never came)."""
        self.errors[reason] += 1


@dataclass(frozen=True, slots=True)
class Run:
    """How a phase ended: operations done, failed, wall time, what stopped it, arrivals skipped (paced)."""

    ops: int
    failed: int
    seconds: float
    stopped_by: str
    skipped: int = 0


async def drive(
    operation: Callable[[int], Awaitable[None]], concurrency: int, duration: float, max_ops: int
) -> Run:
    """Run `operation(worker)` from `concurrency` workers until `duration`, `max_ops` or exhaustion.

    An operation that raises an RPC error, a TimeoutError or an AssertionError counts as failed (its
    cause is counted by the operation's Recorder) and the worker goes on.
    """
    done = failed = 0
    stopped: set[str] = set()
    started = time.perf_counter()
    deadline = started + duration

    async def worker(index: int) -> None:
        nonlocal done, failed
        while True:
            if time.perf_counter() >= deadline:
                stopped.add("duration")
                return
            if done + failed >= max_ops:
                stopped.add("max_ops")
                return
            try:
                await operation(index)
            except Exhausted:
                stopped.add("exhausted")
                return
            except (grpc.RpcError, TimeoutError, AssertionError):
                failed += 1
                continue
            done += 1

    await asyncio.gather(*(worker(i) for i in range(concurrency)))
    seconds = time.perf_counter() - started
    return Run(ops=done, failed=failed, seconds=round(seconds, 3), stopped_by=",".join(sorted(stopped)))


async def pace(
    operation: Callable[[int], Awaitable[None]],
    rate: float,
    duration: float,
    max_ops: int,
    max_in_flight: int,
) -> Run:
    """Start `operation` `rate` times a second on a fixed schedule (open loop) until `duration` or `max_ops`.

    A closed loop at full speed measures latency under saturation; a schedule at a given rate measures it
    the way callers see it below saturation. An arrival finding `max_in_flight` operations still running is
    skipped and counted as such (the server fell behind the schedule), so the loop stays bounded.
    """
    done = failed = skipped = 0
    running: set[asyncio.Task[None]] = set()
    started = time.perf_counter()
    deadline = started + duration

    async def one(index: int) -> None:
        nonlocal done, failed
        try:
            await operation(index)
        except (grpc.RpcError, TimeoutError, AssertionError):
            failed += 1
        else:
            done += 1

    arrivals = 0
    stopped = "duration"
    while (now := time.perf_counter()) < deadline:
        if arrivals >= max_ops:
            stopped = "max_ops"
            break
        due = started + arrivals / rate
        if due > now:
            await asyncio.sleep(due - now)
            continue
        if len(running) >= max_in_flight:
            skipped += 1
        else:
            task = asyncio.create_task(one(arrivals))
            running.add(task)
            task.add_done_callback(running.discard)
        arrivals += 1
    # The rate is the schedule's: the time the last operations take to finish is not part of it.
    seconds = time.perf_counter() - started
    if running:
        await asyncio.wait(running)
    return Run(ops=done, failed=failed, seconds=round(seconds, 3), stopped_by=stopped, skipped=skipped)
