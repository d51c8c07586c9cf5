"""A call's headers are bounded whether or not its connection acknowledged our SETTINGS (decision 0092).

gRPC refuses a call whose headers exceed `grpc.absolute_max_metadata_size` only once the client has
acknowledged the SETTINGS frame that announced it; before, it applies HTTP/2's default (about 16 MiB) and
its own random soft limit. A client that never acknowledges had calls with megabytes of headers served, on
the health-only port too, and held hundreds of megabytes of a worker with them (an outside audit, AK1). The
same bound is applied here to every call that reaches the servicers, as gRPC applies it to acknowledged
connections: the call is refused RESOURCE_EXHAUSTED before anything runs, without trailers nor counting.
A connection that never acknowledges is closed after the SETTINGS timeout (`server.SETTINGS_TIMEOUT_MS`); the
headers gRPC keeps to itself (`:authority`, `grpc-*`) are not bounded here (operations.md: a proxy).
"""

from __future__ import annotations

from typing import Any

import grpc

from sesame.server.grpc.unary import FACTORIES, Continuation, Handler, shape

# A call's headers are refused above this size, always (docs/api.md's RESOURCE_EXHAUSTED row).
MAX_METADATA_BYTES = 8 * 1024
# HTTP/2 counts each header field as its name and value plus 32 octets; the metadata a servicer sees leaves
# out the pseudo-headers and gRPC's own (`:method`, `:scheme`, `:path`, `:authority`, `content-type`, `te`),
# counted here at their usual size (the path is the method's; an authority as `127.0.0.1:50051`). gRPC keeps
# `:authority` and its reserved `grpc-*` headers to itself, whatever their size: a Python interceptor cannot
# bound them (operations.md: a proxy that bounds headers, where untrusted peers reach the ports).
_FIELD_OVERHEAD = 32
_UNSEEN = (
    6 * _FIELD_OVERHEAD
    + len(":method:scheme:path:authoritycontent-typete")
    + len("POSThttpapplication/grpctrailers127.0.0.1:50051")
)
_MESSAGE = "call headers over 8 KiB"


def oversized(details: grpc.HandlerCallDetails) -> bool:
    """Whether a call's headers, counted as HTTP/2 counts them, exceed MAX_METADATA_BYTES."""
    size = _UNSEEN + len(details.method)
    for key, value in details.invocation_metadata or ():
        # A `-bin` value is given decoded; the wire, and gRPC's count, carry its base64 without padding.
        length = (4 * len(value) + 2) // 3 if key.endswith("-bin") else len(value)
        size += len(key) + length + _FIELD_OVERHEAD
    return size > MAX_METADATA_BYTES


def refusing(handler: Handler) -> Handler:
    """A handler of `handler`'s shape that refuses the call RESOURCE_EXHAUSTED before anything runs."""
    return FACTORIES[shape(handler)](_refused_stream if handler.response_streaming else _refused_unary)


async def _refused_unary(_: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
    await context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED, _MESSAGE)


async def _refused_stream(_: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
    await context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED, _MESSAGE)
    yield  # pragma: no cover (never reached: an async generator, as a streaming handler must be)


class HeaderBound(grpc.aio.ServerInterceptor):
    """The bound, for a listener without our CallInterceptor (the health-only port)."""

    async def intercept_service(
        self, continuation: Continuation, handler_call_details: grpc.HandlerCallDetails
    ) -> Handler | None:
        handler = await continuation(handler_call_details)
        if handler is not None and oversized(handler_call_details):
            return refusing(handler)
        return handler
