"""The interceptor that counts and times every call by method and status code."""

from __future__ import annotations

import time
from typing import Any

import grpc

from sesame.server.grpc.unary import Answer, Behavior, Continuation, answering, wrap_unary
from sesame.server.metrics import Metrics


class MetricsInterceptor(grpc.aio.ServerInterceptor):
    """Outermost interceptor: it sees the status the error interceptor chose, including aborts."""

    def __init__(self, metrics: Metrics) -> None:
        self._metrics = metrics

    async def intercept_service(
        self, continuation: Continuation, handler_call_details: grpc.HandlerCallDetails
    ) -> grpc.RpcMethodHandler[Any, Any] | None:
        method = handler_call_details.method
        return wrap_unary(
            await continuation(handler_call_details), lambda behavior: self._metered(behavior, method)
        )

    def _metered(self, behavior: Behavior, method: str) -> Behavior:
        # Only our own methods, health and reflection reach here: the method label stays bounded.
        name = method.rsplit("/", 1)[-1]

        async def metered(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
            start = time.perf_counter()
            answer = Answer()
            try:
                return await answering(behavior, request, context, answer)
            finally:
                self._metrics.rpc_requests.labels(name, answer.code.name).inc()
                self._metrics.worker_rpcs.inc()
                self._metrics.rpc_seconds.labels(name).observe(time.perf_counter() - start)

        return metered
