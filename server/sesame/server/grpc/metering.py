"""Each call counted and timed by method and status code (the call interceptor, sesame.server.grpc.calls)."""

from __future__ import annotations

import asyncio
import functools
import inspect
import time
from collections.abc import AsyncIterator, Callable
from typing import Any, TypeAlias

import grpc

from sesame.server.domain.to_the_end import DEADLINE_MARGIN
from sesame.server.grpc.unary import Behavior, Continuation, Handler, rewrapped
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
        self._seconds: Any = None  # made at the first answer: a stream's meter (`ended`) makes none
        self._counted: dict[grpc.StatusCode, Any] = {}

    def answered(self, code: grpc.StatusCode, seconds: float) -> None:
        """Count one call answered `code` after `seconds`."""
        self.ended(code, seconds)
        if self._seconds is None:
            self._seconds = self._metrics.rpc_seconds.labels(self._name)
        self._seconds.observe(seconds)

    def ended(self, code: grpc.StatusCode, _seconds: float) -> None:
        """Count one stream ended with `code`, not timed: a Watch lasts as long as its caller holds it, which
        says nothing of the time to answer."""
        counter = self._counted.get(code)
        if counter is None:
            counter = self._counted[code] = self._metrics.rpc_requests.labels(self._name, code.name)
        counter.inc()
        self._metrics.worker_rpcs.inc()


Context = grpc.aio.ServicerContext[Any, Any]
_HEALTH = "/grpc.health.v1.Health/"


class ListenerMeter(grpc.aio.ServerInterceptor):
    """Counts each call of the health-only listener in sesame_health_listener_requests_total, by method and
    code: outermost, so an undecodable request counts as the INVALID_ARGUMENT it is answered. The method is
    health's (Check, Watch, List) or "unknown": the label stays bounded whatever a peer sends."""

    def __init__(self, metrics: Metrics) -> None:
        self._counter = metrics.health_listener_requests
        # Read 0 from the listener's start (decision 0119): the first probe and the first refusal are counted.
        self._counter.labels("Check", grpc.StatusCode.OK.name).inc(0)
        self._counter.labels(UNKNOWN_METHOD, grpc.StatusCode.UNIMPLEMENTED.name).inc(0)

    async def intercept_service(
        self, continuation: Continuation, handler_call_details: grpc.HandlerCallDetails
    ) -> Handler | None:
        handler = await continuation(handler_call_details)
        method = handler_call_details.method
        if handler is None:  # gRPC answers UNIMPLEMENTED, whatever the name a peer sent (0113)
            self._counter.labels(UNKNOWN_METHOD, grpc.StatusCode.UNIMPLEMENTED.name).inc()
            return None
        name = method.removeprefix(_HEALTH) if method.startswith(_HEALTH) else UNKNOWN_METHOD
        count = functools.partial(_count, self._counter, name)
        if handler.unary_unary is not None:
            return _metered_unary(handler, count)
        if handler.unary_stream is not None:
            return metered_stream(handler, count)
        return handler


# What a metered call is answered with: its status code and how long it took, in seconds.
Answered: TypeAlias = Callable[[grpc.StatusCode, float], None]


def _count(counter: Any, method: str, code: grpc.StatusCode, _seconds: float) -> None:
    counter.labels(method, code.name).inc()


def ended(context: Context) -> grpc.StatusCode:
    """The code a call ended with: the one its context set; else, its caller gone (`given_up`); else OK."""
    code = context.code()
    if code is not None:
        return code
    return given_up(context) if context.cancelled() else grpc.StatusCode.OK


def given_up(context: Context) -> grpc.StatusCode:
    """The status of a call ended under its servicer: DEADLINE_EXCEEDED when its deadline has passed."""
    left = context.time_remaining()
    passed = left is not None and left <= DEADLINE_MARGIN  # read on gRPC's clock: see DEADLINE_MARGIN
    return grpc.StatusCode.DEADLINE_EXCEEDED if passed else grpc.StatusCode.CANCELLED


def metered(behavior: Behavior, answered: Answered) -> Behavior:
    """A coroutine behaviour (health's Check and List; a Watch that writes through its context), its code and
    seconds given to `answered`: the code its context set, OK when none, CANCELLED when its caller left."""

    async def called(request: Any, context: Context) -> Any:
        start = time.perf_counter()
        code = grpc.StatusCode.UNKNOWN
        try:
            response = await behavior(request, context)
            code = ended(context)
        except asyncio.CancelledError:
            code = grpc.StatusCode.CANCELLED
            raise
        except grpc.aio.AbortError:
            code = context.code() or grpc.StatusCode.UNKNOWN
            raise
        finally:
            answered(code, time.perf_counter() - start)
        return response

    return called


def _metered_unary(handler: Handler, count: Answered) -> Handler:
    """`handler` (a unary call: Check, List), counted by the code it answered."""
    unary: Any = handler.unary_unary  # a coroutine function under grpc.aio; the stubs type the sync API
    return rewrapped(handler, metered(unary, count))


def metered_stream(handler: Handler, count: Answered) -> Handler:
    """`handler` (a streaming call: health's Watch, reflection's ServerReflectionInfo), counted by the code
    it ended with (CANCELLED: its caller left). Its behaviour is an async generator, or a coroutine writing
    through its context (the decoding interceptor's)."""
    # Under grpc.aio behaviours are coroutine or async-generator functions; the stubs type the sync API.
    stream: Any = handler.unary_stream or handler.stream_unary or handler.stream_stream

    async def streamed(request: Any, context: Context) -> AsyncIterator[Any]:
        start = time.perf_counter()
        code = grpc.StatusCode.UNKNOWN
        try:
            async for response in stream(request, context):
                yield response
            code = ended(context)
        except (asyncio.CancelledError, GeneratorExit):
            code = grpc.StatusCode.CANCELLED
            raise
        except grpc.aio.AbortError:
            code = context.code() or grpc.StatusCode.UNKNOWN
            raise
        finally:
            count(code, time.perf_counter() - start)

    return rewrapped(handler, streamed if inspect.isasyncgenfunction(stream) else metered(stream, count))
