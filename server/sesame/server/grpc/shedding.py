"""The interceptor that sheds calls beyond a bound per worker instead of queueing them (decision 0021).

grpc.aio takes every call that arrives and runs it: past what a worker can answer, calls only wait longer,
each holding memory, until every caller's deadline is spent. Beyond `limit` calls in flight, a new call
is refused at once with Overloaded (UNAVAILABLE with RetryInfo, from the error table): nothing was done,
so a retry is safe, and a caller's retry may land on a worker with room. Health checks are never shed: a
busy worker is not a broken one, and a balancer must not take it out for being busy.

grpc's own `maximum_concurrent_rpcs` is not used (checked on grpcio 1.85): it answers RESOURCE_EXHAUSTED
"Concurrent RPC limit exceeded!" without details, where callers read RESOURCE_EXHAUSTED as a spent send
budget; it refuses health checks too; and the behaviour our metering wraps never runs, so nothing counts it.
"""

from __future__ import annotations

from typing import Any, Final

import grpc

from sesame.server.domain.errors import Overloaded
from sesame.server.grpc.unary import Behavior, Continuation, wrap_unary
from sesame.server.metrics import Metrics

HEALTH_METHODS: Final = "/grpc.health.v1.Health/"


class SheddingInterceptor(grpc.aio.ServerInterceptor):
    """Counts the calls in flight in this worker (one event loop: no lock) and sheds those beyond `limit`."""

    def __init__(self, limit: int, metrics: Metrics) -> None:
        self._limit = limit
        self._metrics = metrics
        self._in_flight = 0

    async def intercept_service(
        self, continuation: Continuation, handler_call_details: grpc.HandlerCallDetails
    ) -> grpc.RpcMethodHandler[Any, Any] | None:
        method = handler_call_details.method
        handler = await continuation(handler_call_details)
        if method.startswith(HEALTH_METHODS):
            return handler
        return wrap_unary(handler, lambda behavior: self._bounded(behavior, method.rsplit("/", 1)[-1]))

    def _bounded(self, behavior: Behavior, name: str) -> Behavior:
        async def bounded(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
            if self._in_flight >= self._limit:
                self._metrics.rpc_shed.labels(name).inc()
                raise Overloaded
            self._in_flight += 1
            try:
                return await behavior(request, context)
            finally:
                self._in_flight -= 1

        return bounded
