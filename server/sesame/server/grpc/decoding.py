"""The interceptor that answers an undecodable request INVALID_ARGUMENT instead of gRPC's UNKNOWN.

grpc.aio parses a request with the handler's deserializer before any behaviour runs, and treats a parse
error as a crash of the servicer: an ERROR traceback and UNKNOWN naming the exception class. Bad wire
format and invalid UTF-8 in a string field are the caller's error, so the deserializer is wrapped to hand
the behaviour an `Undecodable` marker instead of raising, and the behaviour answers it from the one error
table (BadRequest on `request`) with a WARNING line, at most one a minute per method. It runs innermost,
after authorization, so a caller the policy refuses learns nothing more than before; the metering
interceptor, outermost, counts the answer.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any, Final

import grpc
from google.protobuf.message import DecodeError

from sesame.server.domain import errors
from sesame.server.domain.log_quota import LogQuota
from sesame.server.grpc.status import abort_with, to_status
from sesame.server.grpc.unary import Continuation, rewrapped, shape

_log = logging.getLogger("sesame.grpc")

Context = grpc.aio.ServicerContext[Any, Any]
Deserializer = Callable[[bytes], Any]

_UNDECODABLE = errors.InvalidRequest([errors.FieldViolation("request", "could not be decoded")])


@dataclass(frozen=True, slots=True)
class Undecodable:
    """Stands for a request message the deserializer refused; `reason` is the error class only."""

    reason: str


class DecodingInterceptor(grpc.aio.ServerInterceptor):
    """Wraps every handler's deserializer and behaviour so that a request that does not parse is refused."""

    def __init__(self, log: UndecodableLog | None = None) -> None:
        """Refusals logged through `log` (one of its own unless given: the listener's)."""
        self._log = log or UndecodableLog()

    async def intercept_service(
        self, continuation: Continuation, handler_call_details: grpc.HandlerCallDetails
    ) -> grpc.RpcMethodHandler[Any, Any] | None:
        handler = await continuation(handler_call_details)
        if handler is None or handler.request_deserializer is None:
            return handler
        method = handler_call_details.method
        # Under grpc.aio behaviours are coroutine or async-generator functions; the stubs type the sync API.
        behavior: Any = (
            handler.unary_unary or handler.unary_stream or handler.stream_unary or handler.stream_stream
        )
        checked = _checked(shape(handler), behavior, method, self._log)
        return rewrapped(handler, checked, tolerant(handler.request_deserializer))


def tolerant(deserialize: Deserializer) -> Deserializer:
    """`deserialize`, answering `Undecodable` for bytes that do not parse instead of raising."""

    def parse(raw: bytes) -> Any:
        try:
            return deserialize(raw)
        # upb raises DecodeError for both bad wire format and invalid UTF-8 in a string field.
        except DecodeError as error:
            return Undecodable(type(error).__name__)

    return parse


async def refuse(request: Undecodable, method: str, context: Context, log: UndecodableLog) -> None:
    """Answer an undecodable request INVALID_ARGUMENT (abort_with: raises), told to `log`, which writes a
    WARNING at most once in UNDECODABLE_EVERY_SECONDS per method; the count is sesame_rpc_requests_total's."""
    log.refused(method, request.reason)
    await abort_with(context, to_status(_UNDECODABLE))


# One WARNING per method in this many seconds, the next counting those held back, as the delivery-report
# listener's refusals: a line per request let any peer of the health-only listener (no certificate needed)
# write a WARNING per call, 300 in 0.2 s.
UNDECODABLE_EVERY_SECONDS: Final = 60.0


class UndecodableLog:
    """The WARNING of an undecodable request, rate-limited per method (the methods a handler answers)."""

    def __init__(self, every: float = UNDECODABLE_EVERY_SECONDS) -> None:
        self._quota: LogQuota[str] = LogQuota(every)

    def refused(self, method: str, reason: str) -> None:
        """Log the refusal, unless one of `method` was logged less than `every` seconds ago."""
        held_back = self._quota.admit(method)
        if held_back is None:
            return
        # The class of problem only: the parser's message may quote bytes of the request.
        more = self._quota.held_back(held_back, "such requests")
        _log.warning("rpc %s refused: undecodable request (%s)%s", method, reason, more)


def _checked(  # noqa: C901 (one closure per shape)
    shape: tuple[bool, bool], behavior: Any, method: str, log: UndecodableLog
) -> Any:
    async def unary(request: Any, context: Context) -> Any:
        if isinstance(request, Undecodable):
            await refuse(request, method, context, log)
        return await behavior(request, context)

    async def server_streaming(request: Any, context: Context) -> AsyncIterator[Any]:
        if isinstance(request, Undecodable):
            await refuse(request, method, context, log)
        async for response in behavior(request, context):
            yield response

    async def server_writing(request: Any, context: Context) -> None:
        if isinstance(request, Undecodable):
            await refuse(request, method, context, log)
        await behavior(request, context)

    def screened(requests: AsyncIterator[Any], context: Context) -> AsyncIterator[Any]:
        async def each() -> AsyncIterator[Any]:
            async for request in requests:
                if isinstance(request, Undecodable):
                    await refuse(request, method, context, log)
                yield request

        return each()

    async def client_streaming(requests: AsyncIterator[Any], context: Context) -> Any:
        return await behavior(screened(requests, context), context)

    async def bidi(requests: AsyncIterator[Any], context: Context) -> AsyncIterator[Any]:
        async for response in behavior(screened(requests, context), context):
            yield response

    async def bidi_writing(requests: AsyncIterator[Any], context: Context) -> None:
        await behavior(screened(requests, context), context)

    # A streaming behaviour is an async generator (it yields its responses) or a coroutine that writes them
    # with context.write and returns None (grpc's own Health.Watch): grpc.aio tells them apart by the kind
    # of function, so the wrapper must be of the behaviour's kind, or grpc iterates a coroutine (TypeError).
    writes = inspect.iscoroutinefunction(behavior)
    return {
        (False, False): unary,
        (False, True): server_writing if writes else server_streaming,
        (True, False): client_streaming,
        (True, True): bidi_writing if writes else bidi,
    }[shape]
