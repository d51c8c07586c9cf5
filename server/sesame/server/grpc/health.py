"""Readiness that tells the truth: each dependency is probed every interval and the health statuses follow.

A service whose Redis or HSM is gone answers every call UNAVAILABLE; reporting SERVING then would keep a
load balancer sending it traffic. The watcher sets every status ("" and each service) together, because
every RPC needs both dependencies, and logs each transition once.

Advisories are parts the service can serve without (the SMS gateway: verifications, reads and lifecycle
calls still work, and a failed send answers FAILED, to be resent). Each is published under its own name,
SERVING or NOT_SERVING, and never changes the server's own status: taking every replica out of the
balancer because a shared gateway is down would stop the codes already sent from being verified.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Final

from grpc_health.v1 import health, health_pb2

from sesame.server.domain.ports import Probe

if TYPE_CHECKING:
    from sesame.server.metrics import Metrics

_log = logging.getLogger("sesame.health")

# Told after each round what each dependency and advisory was found doing (name: works), to journal it
# (decision 0036: evidence shows the gateway and the HSM working at the time of an operation).
HealthNoting = Callable[[Mapping[str, bool]], Awaitable[None]]

SERVING: Final = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING: Final = health_pb2.HealthCheckResponse.NOT_SERVING

# A PING on loopback or a one-byte HSM random answers in milliseconds; a dependency slower than this
# would miss the callers' deadlines anyway. It also bounds a round when a dependency hangs.
PROBE_TIMEOUT_SECONDS: Final = 2.0


class HealthWatcher:
    """Probes every dependency each `interval` seconds and publishes SERVING or NOT_SERVING."""

    def __init__(  # noqa: PLR0913 (after the servicer and services, keyword-only: what is watched and how)
        self,
        servicer: health.aio.HealthServicer,
        services: Sequence[str],
        probes: Mapping[str, Probe],
        *,
        interval: float,
        timeout: float = PROBE_TIMEOUT_SECONDS,
        advisories: Mapping[str, Callable[[], bool]] | None = None,
        metrics: Metrics | None = None,
        notes: HealthNoting | None = None,
    ) -> None:
        """Watch `probes` (named for the logs) and publish to `services` of `servicer`.

        Each of `advisories` (health service name: whether that part works) is published under its name.
        With `metrics`, each probe's result and each published status are gauges too (alerts read them).
        """
        self._servicer = servicer
        self._services = tuple(services)
        self._probes = dict(probes)
        self._advisories = dict(advisories or {})
        self._advised: dict[str, bool] = {}
        self._interval = interval
        self._timeout = timeout
        self._healthy: bool | None = None
        self._draining = False
        self._task: asyncio.Task[None] | None = None
        self._metrics = metrics
        self._notes = notes

    @property
    def healthy(self) -> bool | None:
        """What the last round found (None before the first): whether every dependency answered."""
        return self._healthy

    async def check_now(self) -> bool:
        """Run one round of probes (concurrently), publish a change of state, return the new state."""
        results = await asyncio.gather(*(self._probe(name, probe) for name, probe in self._probes.items()))
        if self._metrics is not None:
            for name, failure in zip(self._probes, results, strict=True):
                self._metrics.health_probe_up.labels(name).set(failure is None)
        failures = [failure for failure in results if failure is not None]
        healthy = not failures
        if healthy != self._healthy:
            if not healthy:
                _log.warning("health NOT_SERVING: %s", ", ".join(failures))
            elif self._healthy is not None:
                _log.info("health SERVING: every dependency answers again")
            await self._publish(SERVING if healthy else NOT_SERVING)
            self._healthy = healthy
        await self._advise()
        if self._notes is not None:
            seen = {name: failure is None for name, failure in zip(self._probes, results, strict=True)}
            await self._notes({**seen, **self._advised})
        return healthy

    async def _advise(self) -> None:
        """Publish each advisory that changed; a part that fails is a WARNING (degraded), not NOT_SERVING."""
        for name, works in self._advisories.items():
            working = works()
            if working == self._advised.get(name):
                continue
            if not working:
                _log.warning("health degraded: %s failing (the server itself stays SERVING)", name)
            elif name in self._advised:
                _log.info("health: %s works again", name)
            self._advised[name] = working
            if not self._draining:
                await self._set(name, SERVING if working else NOT_SERVING)

    def start(self) -> None:
        """Probe in the background until `stop()`."""
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="sesame-health-watcher")

    async def enter_graceful_shutdown(self) -> None:
        """Report NOT_SERVING for good: a recovery seen while draining must not invite new traffic."""
        self._draining = True
        await self._servicer.enter_graceful_shutdown()
        if self._metrics is not None:
            for service in (*self._services, *self._advised):
                self._metrics.health_serving.labels(service).set(0)

    async def stop(self) -> None:
        """Cancel the background task and wait for it to end. Idempotent."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            # `wait` rather than `await task`: the task's CancelledError is its own, not ours.
            await asyncio.wait([task])

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self._interval)
            await self.check_now()

    async def _probe(self, name: str, probe: Probe) -> str | None:
        """None when the dependency answered, else `<name> (<error class>)` for the log."""
        try:
            async with asyncio.timeout(self._timeout):
                await probe.check()
        # Any failure means the dependency cannot serve, and the watcher must outlive it to report the
        # recovery. Only the class name is kept: messages of library errors may carry addresses or data.
        except Exception as exc:  # noqa: BLE001
            return f"{name} ({type(exc).__name__})"
        return None

    async def _publish(self, status: int) -> None:
        # The servicer also ignores `set` once draining; checking here keeps that rule ours, not a detail of
        # the library.
        if self._draining:
            return
        for service in self._services:
            await self._set(service, status)

    async def _set(self, service: str, status: int) -> None:
        await self._servicer.set(service, status)
        if self._metrics is not None:
            self._metrics.health_serving.labels(service).set(status == SERVING)
