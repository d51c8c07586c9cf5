"""grpc's health servicer with a bound on the Watch streams it keeps open, on every port it serves.

Health answers every caller (probes and balancers hold no grant) and is never shed, so Watch was the one
call any client could hold open without end: each stream kept about 45 KiB of a worker's memory (measured:
1,900 streams from one client took a worker from 87 to 180 MB, and the allocator kept most of it after they
left). Beyond MAX_WATCHERS streams a Watch is refused at once with RESOURCE_EXHAUSTED; Check, which probes
poll, is never refused. Each listener has its own bound: the health-only listener (SESAME_HEALTH_ADDR) takes
no certificate, and 2,000 streams opened there refused every Watch of the callers on the gRPC port, whose
client-side health checking then reads the server as unhealthy (an outside audit; decision 0159). A refusal
is a WARNING once a minute per listener, the next counting those held back (a line each was 750 a second).

grpc's servicer leaves List (added to grpc.health.v1 later) unimplemented: any caller's List answered
INTERNAL and logged an ERROR with a traceback, each call (decision 0057). It answers here what Check answers,
for every service at once.
"""

from __future__ import annotations

import logging
from typing import Any, Final

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from sesame.server.domain.log_quota import LogQuota

_log = logging.getLogger("sesame.health")

# Client-side health checking keeps one stream per channel and server: a thousand client processes per
# worker is well beyond a bank's callers, and about 45 MB at most.
MAX_WATCHERS: Final = 1000
REFUSALS_EVERY_SECONDS: Final = 60.0  # one WARNING of refused Watch streams per listener in this many seconds
# The typing stubs of grpc_health predate List: its answer is read from the generated module as it is.
_LIST_RESPONSE: Any = health_pb2.HealthListResponse  # type: ignore[attr-defined]


class _Watchers:
    """The Watch streams one listener holds open, and its rate-limited refusals."""

    def __init__(self, listener: str) -> None:
        self.listener = listener
        self.open = 0
        self.refusals: LogQuota[None] = LogQuota(REFUSALS_EVERY_SECONDS)


class BoundedHealthServicer(health.aio.HealthServicer):
    """The health servicer of the gRPC port, refusing a Watch while MAX_WATCHERS streams are open on it;
    `apart()` serves the same statuses on another listener, within a bound of its own."""

    def __init__(self) -> None:
        super().__init__()
        self._watchers = _Watchers("the gRPC port")
        self._services: set[str] = {""}  # every service whose status was set: what List answers

    async def Watch(  # noqa: N802 (the RPC's name)
        self, request: health_pb2.HealthCheckRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> None:
        """The stream of statuses of `request.service`, unless too many are open on this port already."""
        await self.watch_within(self._watchers, request, context)

    async def watch_within(
        self,
        watchers: _Watchers,
        request: health_pb2.HealthCheckRequest,
        context: grpc.aio.ServicerContext[Any, Any],
    ) -> None:
        """Watch, counted among `watchers` (one listener's)."""
        if watchers.open >= MAX_WATCHERS:
            held_back = watchers.refusals.admit(None)
            if held_back is not None:
                more = watchers.refusals.held_back(held_back, "such refusals")
                _log.warning(
                    "health Watch refused on %s: %d streams open already%s",
                    watchers.listener,
                    watchers.open,
                    more,
                )
            await context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED, "too many Watch streams: poll Check")
        watchers.open += 1
        try:
            await super().Watch(request, context)
        finally:
            watchers.open -= 1

    def apart(self, listener: str) -> HealthApart:
        """This servicer's statuses for another listener, whose Watch streams are bounded apart."""
        return HealthApart(self, _Watchers(listener))

    async def set(self, service: str, status: int) -> None:
        """Set `service`'s status, and remember its name for List."""
        self._services.add(service)
        await super().set(service, status)

    async def List(  # noqa: N802 (the RPC's name)
        self,
        request: Any,  # noqa: ARG002 (it asks nothing)
        context: grpc.aio.ServicerContext[Any, Any],
    ) -> Any:  # the stubs predate List: see _LIST_RESPONSE
        """The status of every service set, as Check answers each (a handful: no bound needed)."""
        return _LIST_RESPONSE(
            statuses={
                service: await self.Check(health_pb2.HealthCheckRequest(service=service), context)
                for service in sorted(self._services)
            }
        )


class HealthApart(health_pb2_grpc.HealthServicer):
    """The shared servicer's Check, Watch and List on a listener of its own: its Watch streams are its own."""

    def __init__(self, shared: BoundedHealthServicer, watchers: _Watchers) -> None:
        self._shared = shared
        self._watchers = watchers

    async def Check(  # noqa: N802 (the RPC's name)
        self, request: health_pb2.HealthCheckRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> health_pb2.HealthCheckResponse:
        """What the shared servicer answers."""
        return await self._shared.Check(request, context)

    async def Watch(  # noqa: N802 (the RPC's name)
        self, request: health_pb2.HealthCheckRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> None:
        """The shared servicer's stream, within this listener's bound."""
        await self._shared.watch_within(self._watchers, request, context)

    async def List(  # noqa: N802 (the RPC's name)
        self, request: Any, context: grpc.aio.ServicerContext[Any, Any]
    ) -> Any:
        """What the shared servicer answers."""
        return await self._shared.List(request, context)
