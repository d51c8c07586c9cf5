"""Each call counted and timed by method and status code (the call interceptor, sesame.server.grpc.calls)."""

from __future__ import annotations

from typing import Any

import grpc

from sesame.server.metrics import Metrics

# The `method` of every call to a method no handler answers (UNIMPLEMENTED): one label value, not the name a
# caller sent (decision 0113).
UNKNOWN_METHOD = "unknown"


class MethodMeter:
    """One method's counters and histogram, their label children looked up once, not at every call."""

    def __init__(self, metrics: Metrics, name: str) -> None:
        # Only our own methods, health and reflection are metered: the method label stays bounded.
        self._metrics = metrics
        self._name = name
        self._seconds = metrics.rpc_seconds.labels(name)
        self._counted: dict[grpc.StatusCode, Any] = {}

    def answered(self, code: grpc.StatusCode, seconds: float) -> None:
        """Count one call answered `code` after `seconds`."""
        counter = self._counted.get(code)
        if counter is None:
            counter = self._counted[code] = self._metrics.rpc_requests.labels(self._name, code.name)
        counter.inc()
        self._metrics.worker_rpcs.inc()
        self._seconds.observe(seconds)
