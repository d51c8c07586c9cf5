"""What our interceptors share: the shapes of a unary behaviour and of an interceptor's continuation, and the
one table of gRPC's handler factories by call shape."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, TypeAlias

import grpc

Behavior = Callable[[Any, grpc.aio.ServicerContext[Any, Any]], Awaitable[Any]]
Continuation = Callable[[grpc.HandlerCallDetails], Awaitable["grpc.RpcMethodHandler[Any, Any] | None"]]
Handler: TypeAlias = "grpc.RpcMethodHandler[Any, Any]"  # generic in the stubs only

# One handler factory per shape (request streaming, response streaming): an interceptor that wraps a handler
# makes the wrapped one of the same shape, so that no shape slips through unchecked.
FACTORIES: dict[tuple[bool, bool], Callable[..., Handler]] = {
    (False, False): grpc.unary_unary_rpc_method_handler,
    (False, True): grpc.unary_stream_rpc_method_handler,
    (True, False): grpc.stream_unary_rpc_method_handler,
    (True, True): grpc.stream_stream_rpc_method_handler,
}


def shape(handler: Handler) -> tuple[bool, bool]:
    """`handler`'s key in FACTORIES."""
    return (handler.request_streaming, handler.response_streaming)


def rewrapped(
    handler: Handler, behavior: object, deserializer: Callable[[bytes], Any] | None = None
) -> Handler:
    """A handler of `handler`'s shape and serializers running `behavior` (reading requests with
    `deserializer` where one is given)."""
    return FACTORIES[shape(handler)](
        behavior,
        request_deserializer=deserializer or handler.request_deserializer,
        response_serializer=handler.response_serializer,
    )
