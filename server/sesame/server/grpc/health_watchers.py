"""grpc's health servicer with a bound on the Watch streams it keeps open, on every port it serves.

Health answers every caller (probes and balancers hold no grant) and is never shed, so Watch was the one
call any client could hold open without end: each stream kept about 45 KiB of a worker's memory (measured:
1,900 streams from one client took a worker from 87 to 180 MB, and the allocator kept most of it after they
left). Beyond MAX_WATCHERS streams a Watch is refused at once with RESOURCE_EXHAUSTED; Check, which probes
poll, is never refused. The bound counts the streams of both listeners (the gRPC port and SESAME_HEALTH_ADDR
share this servicer).

grpc's servicer leaves List (added to grpc.health.v1 later) unimplemented: any caller's List answered
INTERNAL and logged an ERROR with a traceback, each call (decision 0057). It answers here what Check answers,
for every service at once.
"""

from __future__ import annotations

import logging
from typing import Any, Final

import grpc
from grpc_health.v1 import health, health_pb2

_log = logging.getLogger("sesame.health")

# Client-side health checking keeps one stream per channel and server: a thousand client processes per
# worker is well beyond a bank's callers, and about 45 MB at most.
MAX_WATCHERS: Final = 1000
# The typing stubs of grpc_health predate List: its answer is read from the generated module as it is.
_LIST_RESPONSE: Any = health_pb2.HealthListResponse  # type: ignore[attr-defined]


class BoundedHealthServicer(health.aio.HealthServicer):
    """The health servicer, refusing a Watch while MAX_WATCHERS streams are open."""

    def __init__(self) -> None:
        super().__init__()
        self._watching = 0
        self._services: set[str] = {""}  # every service whose status was set: what List answers

    async def Watch(  # noqa: N802 (the RPC's name)
        self, request: health_pb2.HealthCheckRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> None:
        """The stream of statuses of `request.service`, unless too many are open already."""
        if self._watching >= MAX_WATCHERS:
            _log.warning("health Watch refused: %d streams open already", self._watching)
            await context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED, "too many Watch streams: poll Check")
        self._watching += 1
        try:
            await super().Watch(request, context)
        finally:
            self._watching -= 1

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
