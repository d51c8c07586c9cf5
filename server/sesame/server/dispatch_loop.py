"""The dispatchers' loops: asyncio tasks that take SMS from the outbox and send them (docs/decisions/0025).

Every `sesame serve` worker runs `SESAME_DISPATCHERS` of them beside its gRPC server, and `sesame dispatch`
runs them alone. Each loop first claims the entries a dead dispatcher left pending longer than
`SESAME_OUTBOX_CLAIM_IDLE_SECONDS`, then takes new ones (blocking a moment when there are none), sends
them concurrently. One more task per process samples the backlog for the metrics every second, loops or
none: a worker with `SESAME_DISPATCHERS=0`, or whose loops are stuck, still shows the outbox backing up,
which is what the outbox alerts read (docs/decisions/0034). A stop lets each loop finish its batch, so that
a graceful stop never leaves a sent SMS unsettled; only a crash does, and then the entry is sent again.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import time
from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING

from opentelemetry import propagate, trace

from sesame.server.domain.dispatching import NOTICE_MAX_AGE_LIMIT
from sesame.server.domain.errors import HsmUnavailable, KeyNotFound, StoreUnavailable
from sesame.server.domain.log_quota import LogQuota
from sesame.server.tracing import recording

if TYPE_CHECKING:
    from sesame.server.clock_watch import ClockWatch
    from sesame.server.domain.dispatching import Dispatcher, QueuedSms
    from sesame.server.domain.ports import Clock, Outbox
    from sesame.server.env_reader import EnvReader
    from sesame.server.metrics import Metrics

_log = logging.getLogger("sesame.dispatch")
# While the outbox cannot be read, its loops say so once in this many seconds, with the count held back.
UNAVAILABLE_LOG_EVERY_SECONDS = 60.0
_tracer = trace.get_tracer("sesame.dispatch")


@dataclass(frozen=True, slots=True)
class DispatchSettings:
    """How many loops a process runs, and when a pending entry is taken from its dispatcher."""

    loops: int = 1  # per `sesame serve` worker; 0: this worker sends nothing (`sesame dispatch` does)
    claim_idle: timedelta = timedelta(seconds=30)  # an entry pending this long: its dispatcher died
    batch: int = 32  # entries taken at once
    wait: timedelta = timedelta(milliseconds=500)  # the longest a loop blocks on an empty outbox
    stop_grace: float = 10.0  # seconds a stopping loop has to finish its batch
    # An SMS given to dispatchers this many times without a provider taking it is dead-lettered; 1: the
    # failover's own retries (before acceptance, per provider) are all it gets (docs/decisions/0033).
    max_tries: int = 1
    # A notice not sent this long after the change it reports is dead-lettered, never sent late (0041).
    notice_max_age: timedelta = timedelta(days=1)


def read_dispatch(reader: EnvReader) -> DispatchSettings:
    """SESAME_DISPATCHERS, SESAME_OUTBOX_CLAIM_IDLE_SECONDS, SESAME_SMS_MAX_TRIES and
    SESAME_NOTICE_MAX_AGE_SECONDS (docs/operations.md)."""
    return DispatchSettings(
        loops=reader.integer("SESAME_DISPATCHERS", 1, 0, 64),
        claim_idle=timedelta(seconds=reader.integer("SESAME_OUTBOX_CLAIM_IDLE_SECONDS", 30, 1, 3600)),
        max_tries=reader.integer("SESAME_SMS_MAX_TRIES", 1, 1, 20),
        notice_max_age=timedelta(
            seconds=reader.integer(
                "SESAME_NOTICE_MAX_AGE_SECONDS", 86_400, 60, NOTICE_MAX_AGE_LIMIT // timedelta(seconds=1)
            )
        ),
    )


class DispatchLoops:
    """The dispatch loops of one process; `start` them, `stop` them (they finish their batch first)."""

    def __init__(  # noqa: PLR0913 (what the loops run on; the clock's watch keyword-only)
        self,
        dispatcher: Dispatcher,
        outbox: Outbox,
        metrics: Metrics,
        clock: Clock,
        settings: DispatchSettings,
        *,
        clock_watch: ClockWatch | None = None,
    ) -> None:
        """With `clock_watch`, the loops take nothing while it finds the clock out of step (decision 0104)."""
        self._dispatcher = dispatcher
        self._outbox = outbox
        self._metrics = metrics
        self._clock = clock
        self._settings = settings
        self._clock_watch = clock_watch
        self._stopping = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._unavailable: LogQuota[None] = LogQuota(UNAVAILABLE_LOG_EVERY_SECONDS)

    def start(self) -> None:
        """Start the loops, each a consumer of its own name (host, process, index)."""
        base = f"{socket.gethostname()}-{os.getpid()}"
        self._tasks = [
            asyncio.create_task(self._run(f"{base}-{i}"), name=f"dispatch-{i}")
            for i in range(self._settings.loops)
        ]
        self._tasks.append(asyncio.create_task(self._watch_backlog(), name="outbox-backlog"))

    async def stop(self) -> None:
        """Let each loop finish its batch, then end it."""
        self._stopping.set()
        if not self._tasks:
            return
        _, late = await asyncio.wait(self._tasks, timeout=self._settings.stop_grace)
        for task in late:
            task.cancel()
        for task in late:
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _run(self, consumer: str) -> None:
        settings = self._settings
        next_claim = 0.0
        while not self._stopping.is_set():
            if not self._in_step():
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stopping.wait(), 1.0)
                continue
            try:
                batch: list[QueuedSms] = []
                if time.monotonic() >= next_claim:
                    batch = await self._outbox.reclaim(consumer, settings.claim_idle, settings.batch)
                    next_claim = time.monotonic() + settings.claim_idle.total_seconds() / 2
                batch += await self._outbox.take(consumer, settings.batch, settings.wait)
                # Out of step while the take waited: the batch is left pending, claimed again once idle.
                if batch and self._in_step():
                    await self._send_batch(consumer, batch)
            except StoreUnavailable as exc:
                # One line a minute for all the loops (a line a second each while Redis refused: an audit).
                held = self._unavailable.admit(None)
                if held is not None:
                    _log.warning(
                        "outbox unavailable (%s); trying again every second%s",
                        exc,
                        self._unavailable.held_back(held, "such lines"),
                    )
                await asyncio.sleep(1)
            except Exception:  # noqa: BLE001 (a loop that ends loses no SMS but silently sends none)
                _log.exception("dispatch loop failed; going on in a second")
                await asyncio.sleep(1)

    def _in_step(self) -> bool:
        """Whether the clock may decide: out of step, a dispatcher's instants are wrong (ahead, every code
        read as expired and dead-lettered; behind, codes sent that no worker in step takes): the SMS wait in
        the outbox for a dispatcher in step (decision 0104)."""
        return self._clock_watch is None or self._clock_watch.in_step

    async def _send_batch(self, consumer: str, batch: list[QueuedSms]) -> None:
        """Send the batch concurrently; every third of the claim idle time its sends last, keep the entries
        still unsettled as this consumer's: a send slower than the claim idle time (a slow gateway, retries
        and failover, SMPP pacing a burst) was claimed by another dispatcher as a dead one's and the code went
        twice. A batch sent within that time costs no task and no Redis call more."""
        unsettled = {queued.entry_id: queued for queued in batch}

        async def one(queued: QueuedSms) -> None:
            try:
                await self._one(queued)
            finally:
                unsettled.pop(queued.entry_id, None)

        sends = asyncio.gather(*(one(queued) for queued in batch))
        every = self._settings.claim_idle.total_seconds() / 3
        try:
            while not (await asyncio.wait({sends}, timeout=every))[0]:
                try:
                    await self._outbox.keep(consumer, list(unsettled.values()))
                except StoreUnavailable as exc:
                    _log.warning("SMS in progress not kept as this dispatcher's (%s)", exc)
        except asyncio.CancelledError:
            sends.cancel()  # as `await sends` would have: the loop is stopping
            raise
        await sends

    async def _one(self, queued: QueuedSms) -> None:
        # A child of the Start that queued the SMS, whose trace context the entry carries (decision 0040):
        # the SMS's dispatch, its HSM call and its script show in the Start's trace, not in one of their own.
        if not recording():  # no span to open while tracing is off (decision 0039)
            await self._dispatched(queued, trace.INVALID_SPAN)
            return
        parent = propagate.extract({"traceparent": queued.trace}) if queued.trace else None
        with _tracer.start_as_current_span(
            "dispatch sms",
            context=parent,
            kind=trace.SpanKind.CONSUMER,
            attributes={"messaging.system": "redis", "messaging.operation.type": "process"},
        ) as span:
            await self._dispatched(queued, span)

    async def _dispatched(self, queued: QueuedSms, span: trace.Span) -> None:
        try:
            dispatched = await self._dispatcher.dispatch(queued)
        except (HsmUnavailable, KeyNotFound, StoreUnavailable) as exc:
            # Left pending: claimed again once idle past the timeout, by this loop or another.
            _log.warning("queued SMS not sent (%s); it stays in the outbox", type(exc).__name__)
            return
        span.set_attribute("sesame.dispatch.outcome", dispatched.outcome.value)
        metrics = self._metrics
        metrics.child(metrics.dispatches, dispatched.outcome.value).inc()
        if dispatched.reason:  # a bounded set (DEAD_LETTER_REASONS, WITHHELD_REASONS): a child per reason
            metrics.child(metrics.dead_letters, dispatched.reason).inc()
        if dispatched.handed_at is not None:
            waited = (dispatched.handed_at - queued.queued_at).total_seconds()
            self._metrics.sms_handed_seconds.observe(max(0.0, waited))

    async def _watch_backlog(self) -> None:
        """Sample the backlog every second until stopped; an unreachable Redis is health's to report."""
        while not self._stopping.is_set():
            with contextlib.suppress(StoreUnavailable):
                await self._sample()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), 1.0)

    async def _sample(self) -> None:
        """The backlog gauges."""
        backlog = await self._outbox.backlog()
        self._metrics.outbox_depth.set(backlog.depth)
        age = 0.0 if backlog.oldest is None else (self._clock.now() - backlog.oldest).total_seconds()
        self._metrics.outbox_oldest_seconds.set(max(0.0, age))
