"""The one interceptor of every call: its context, metering, error answer, shedding, rights, decoding.

Six interceptors each wrapped every RPC: each call ran through six `intercept_service` awaits, six new
method handlers and eight nested coroutines before reaching the servicer (decision 0039). This one builds
each method's handler once, the first time the method is called, and runs a unary call in two coroutines,
in the order the six had, outermost first:

1. the call's context (sesame.server.grpc.call_context): request id, span, log fields, one line per answer;
2. metering (every unary call, health's included): counted and timed with the status the caller got;
3. the error table (sesame.server.grpc.status): a domain error or a crash is answered from the one table;
4. shedding (sesame.server.grpc.shedding): beyond the bound of calls in flight, Overloaded; then the gate
   (sesame.server.clock_watch): a worker whose clock is out of step with Redis's refuses, ClockOff;
5. the caller's rights (sesame.server.grpc.authz): CallerNotAllowed unless the policy grants the method;
6. decoding (sesame.server.grpc.decoding): an undecodable request is INVALID_ARGUMENT.

Health is only metered, answered from the table and decoded: probes hold no grant, are never shed nor
gated (health itself says NOT_SERVING), and would drown the log. Streaming calls (reflection, health's
Watch) are rare: their rights and decoding are checked by the wrappers of authz and decoding, as before;
reflection's also get their request id.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import time
from collections.abc import AsyncIterator, Mapping
from contextlib import AbstractContextManager
from typing import Any, Protocol, cast

import grpc
import structlog
from opentelemetry import propagate, trace
from opentelemetry.trace import SpanKind

from sesame.server.domain import errors
from sesame.server.domain.to_the_end import answering_by, check_deadline
from sesame.server.grpc.authz import AuthorizationInterceptor
from sesame.server.grpc.call_context import (
    REQUEST_ID_KEY,
    Metadata,
    answered,
    request_id,
    subject,
    tracer,
)
from sesame.server.grpc.callers import CallerNotAllowed, caller_identity, calling_as
from sesame.server.grpc.catalogue import API_SERVICES, GOVERNED, HEALTH_SERVICE
from sesame.server.grpc.decoding import DecodingInterceptor, Undecodable, UndecodableLog, refuse, tolerant
from sesame.server.grpc.header_bound import oversized, refusing
from sesame.server.grpc.metering import (
    UNKNOWN_METHOD,
    MethodMeter,
    given_up,
    metered,
    metered_stream,
)
from sesame.server.grpc.policy import CallerPolicy
from sesame.server.grpc.shedding import InFlight
from sesame.server.grpc.status import answer_crash, answer_error
from sesame.server.grpc.unary import Behavior, Continuation, Handler, rewrapped
from sesame.server.metrics import Metrics
from sesame.server.tracing import recording

Context = grpc.aio.ServicerContext[Any, Any]


class Gate(Protocol):
    """What may refuse every governed call at once (the clock watch): a SesameError, counted, or None."""

    def admit(self, method: str) -> None: ...


class Gates:
    """Several gates, each asked in turn (the clock watch, the store's layout)."""

    def __init__(self, *gates: Gate) -> None:
        self._gates = gates

    def admit(self, method: str) -> None:
        """Return when every gate lets `method` run; the first refusal otherwise."""
        for gate in self._gates:
            gate.admit(method)


class CallInterceptor(grpc.aio.ServerInterceptor):
    """Every concern of a call in one pass; each method's handler built once (the handlers are static)."""

    def __init__(
        self,
        metrics: Metrics,
        policy: CallerPolicy | None,
        max_concurrent_rpcs: int,
        gate: Gate | None = None,
    ) -> None:
        self._metrics = metrics
        self._policy = policy
        self._in_flight = InFlight(max_concurrent_rpcs)
        for service in API_SERVICES:  # the first shed call is an increase a panel sees (decision 0119)
            for name in GOVERNED[service]:
                metrics.rpc_shed.labels(name).inc(0)
        self._gate = gate
        # Applied inside out, as the chain of interceptors was: decoding wraps the behaviour, rights wrap it.
        self._undecodable = UndecodableLog()  # one WARNING a minute per method (their count is the metrics')
        self._streaming = (DecodingInterceptor(self._undecodable), AuthorizationInterceptor(policy))
        # Only methods a handler answers are kept: a caller naming random methods adds nothing here.
        self._handlers: dict[str, Handler] = {}
        # A method no handler answers is counted under one name, whatever the caller named, from 0 (0113).
        self._unimplemented = metrics.rpc_requests.labels(UNKNOWN_METHOD, grpc.StatusCode.UNIMPLEMENTED.name)

    async def intercept_service(
        self, continuation: Continuation, handler_call_details: grpc.HandlerCallDetails
    ) -> Handler | None:
        method = handler_call_details.method
        handler = self._handlers.get(method)
        if handler is None:
            found = await continuation(handler_call_details)
            if found is None:  # gRPC answers UNIMPLEMENTED: counted, or a caller on a newer API goes unseen
                self._unimplemented.inc()
                return None
            handler = await self._wrap(found, handler_call_details)
            self._handlers[method] = handler
        if oversized(handler_call_details):  # from a client that never acknowledged our SETTINGS (AK1)
            return refusing(handler)
        return handler

    async def _wrap(self, handler: Handler, details: grpc.HandlerCallDetails) -> Handler:
        method = details.method
        if handler.unary_unary is None:
            for interceptor in self._streaming:

                async def given(_: grpc.HandlerCallDetails, found: Handler = handler) -> Handler:
                    return found

                handler = await interceptor.intercept_service(given, details) or handler
            # Counted by the code it ended with: Watch, and reflection, whose refusals by the caller policy
            # were counted nowhere (outside audits).
            counted = metered_stream(handler, MethodMeter(self._metrics, method.rsplit("/", 1)[-1]).ended)
            return counted if _is_health(method) else _identified(counted)
        # Under grpc.aio the behaviour is a coroutine function; the typing stubs describe the sync API.
        behavior: Behavior = handler.unary_unary  # type: ignore[assignment]
        wrapped = self._health(behavior, method) if _is_health(method) else self._governed(behavior, method)
        deserialize = handler.request_deserializer
        return rewrapped(handler, wrapped, None if deserialize is None else tolerant(deserialize))

    def _governed(self, behavior: Behavior, method: str) -> Behavior:
        """One of our methods (or reflection's): every concern, in the order above."""
        service, _, name = method.removeprefix("/").rpartition("/")
        full = f"{service}/{name}"
        meter = MethodMeter(self._metrics, name)

        async def called(request: Any, context: Context) -> Any:
            # A tuple of (key, value) pairs on the server side; the stubs name the client's Metadata class.
            metadata = cast("Metadata", context.invocation_metadata() or ())
            rid = request_id(metadata)
            caller = caller_identity(context.auth_context())
            named = caller or "unidentified"
            fields = {"request_id": rid, "rpc": name, "caller": named, **subject(request)}
            # Bound and reset by token: what `bound_contextvars` does, without a generator per call (0049).
            bound = structlog.contextvars.bind_contextvars(**fields)
            try:
                with _span(full, metadata, service, name, named) as span:
                    # In the trailers, sent with the answer and its status: initial metadata would be a
                    # batch of its own, ~13 % of a Verify's CPU (decision 0075); an abort keeps it.
                    context.set_trailing_metadata(((REQUEST_ID_KEY, rid),))
                    start = time.perf_counter()
                    code, response = grpc.StatusCode.UNKNOWN, None
                    try:
                        response = await self._answer(behavior, request, context, full, caller)
                    except asyncio.CancelledError:
                        # Ended by its deadline (the caller read DEADLINE_EXCEEDED) or by its caller.
                        code = given_up(context)
                        raise
                    except BaseException:
                        code = context.code() or grpc.StatusCode.UNKNOWN
                        raise
                    else:
                        code = context.code() or grpc.StatusCode.OK
                        return response
                    finally:
                        seconds = time.perf_counter() - start
                        meter.answered(code, seconds)
                        answered(span, name, code, seconds, response)
            finally:
                structlog.contextvars.reset_contextvars(**bound)

        return called

    async def _answer(
        self, behavior: Behavior, request: Any, context: Context, method: str, caller: str | None
    ) -> Any:
        """Shed, check the caller's rights and the request, run the behaviour; errors from the table."""
        try:
            self._in_flight.admit()
            if self._gate is not None:
                self._gate.admit(method)
            with self._in_flight, answering_by(context.time_remaining()):
                # A call whose deadline passed before it was read does nothing: an SMS sent for a caller told
                # DEADLINE_EXCEEDED (an outside audit). Later steps are refused alike as they begin.
                check_deadline()
                await self._admit(request, context, method, caller)
                with calling_as(caller):
                    return await behavior(request, context)
        except errors.SesameError as error:
            if isinstance(error, errors.Overloaded):  # beyond the calls in flight, or a method's own bound
                self._metrics.rpc_shed.labels(method.rsplit("/", 1)[-1]).inc()
            await answer_error(error, context, f"/{method}", caller)
        except grpc.aio.AbortError:
            # An abort inside (an undecodable request) has already set its status; answering it again
            # would fail with "Abort already called".
            raise
        except Exception:  # noqa: BLE001 (the last line of defence: log it, answer INTERNAL, leak nothing)
            await answer_crash(context, f"/{method}")
        raise AssertionError("unreachable: abort_with raises")  # pragma: no cover

    async def _admit(self, request: Any, context: Context, method: str, caller: str | None) -> None:
        """Refuse a caller the policy does not grant `method` (CallerNotAllowed), then a request that did not
        decode (answered here)."""
        if self._policy is not None and not self._policy.allows(caller, method):
            raise CallerNotAllowed(method, caller)
        if isinstance(request, Undecodable):
            await refuse(request, f"/{method}", context, self._undecodable)

    def _health(self, behavior: Behavior, method: str) -> Behavior:
        """Health's Check: metered, decoded, answered from the table (its own NOT_FOUND is an abort)."""

        async def checked(request: Any, context: Context) -> Any:
            if isinstance(request, Undecodable):
                await refuse(request, method, context, self._undecodable)
            try:
                return await behavior(request, context)
            except grpc.aio.AbortError:
                raise
            except Exception:  # noqa: BLE001 (as the error table's last line of defence: INTERNAL, metered so)
                await answer_crash(context, method)
            raise AssertionError("unreachable: abort_with raises")  # pragma: no cover

        return metered(checked, MethodMeter(self._metrics, method.rsplit("/", 1)[-1]).answered)


def _identified(handler: Handler) -> Handler:
    """A streaming call (reflection) with its request id in the trailers and on its log lines, as a unary call
    has them: a refusal by the caller policy or of an undecodable request keeps it beside its status."""
    behavior: Any = handler.unary_stream or handler.stream_unary or handler.stream_stream

    def bound(context: Context) -> Mapping[str, Any]:
        rid = request_id(cast("Metadata", context.invocation_metadata() or ()))
        context.set_trailing_metadata(((REQUEST_ID_KEY, rid),))
        return structlog.contextvars.bind_contextvars(request_id=rid)

    # Of the behaviour's kind, as grpc.aio tells them apart (see decoding.py): an async generator yields its
    # responses, a coroutine returns its answer or writes them with context.write. grpc.aio runs a call in a
    # task of its own, so what is bound here is the call's alone, and unbound in the same task (but for a
    # stream given up at a `yield`: below).
    if inspect.isasyncgenfunction(behavior):

        async def streaming(request: Any, context: Context) -> AsyncIterator[Any]:
            tokens = bound(context)
            try:
                async for response in behavior(request, context):
                    yield response
            finally:
                # Given up at the `yield` (its caller gone while the answer waited), the stream is closed by
                # asyncio's finalizer in another task and context: nothing of the call's to unbind there,
                # and the reset's ValueError was an ERROR with a traceback per stream (decision 0141).
                with contextlib.suppress(ValueError):
                    structlog.contextvars.reset_contextvars(**tokens)

        wrapped: object = streaming
    else:

        async def awaited(request: Any, context: Context) -> Any:
            tokens = bound(context)
            try:
                return await behavior(request, context)
            finally:
                structlog.contextvars.reset_contextvars(**tokens)

        wrapped = awaited
    return rewrapped(handler, wrapped)


def _span(
    name: str, metadata: Metadata, service: str, method: str, caller: str
) -> AbstractContextManager[trace.Span]:
    """The call's server span, a child of the caller's (W3C traceparent); none while tracing is off (and its
    attributes not even built: decision 0053)."""
    if not recording():
        return _NO_SPAN
    attributes = {"rpc.system": "grpc", "rpc.service": service, "rpc.method": method, "sesame.caller": caller}
    carrier = {key: value for key, value in metadata if isinstance(value, str)}
    return tracer.start_as_current_span(
        name,
        context=propagate.extract(carrier),
        kind=SpanKind.SERVER,
        attributes=attributes,
        # Our errors' messages may name a user: the span keeps the status code only.
        record_exception=False,
        set_status_on_exception=False,
    )


# One for every call while tracing is off: nullcontext holds no state of a call (decision 0053).
_NO_SPAN = contextlib.nullcontext(trace.INVALID_SPAN)


def _is_health(method: str) -> bool:
    return method.startswith(f"/{HEALTH_SERVICE}/")
