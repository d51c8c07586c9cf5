"""What our unary interceptors share: re-wrapping a handler's unary-unary behaviour."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, cast

import grpc

Behavior = Callable[[Any, grpc.aio.ServicerContext[Any, Any]], Awaitable[Any]]
Continuation = Callable[[grpc.HandlerCallDetails], Awaitable["grpc.RpcMethodHandler[Any, Any] | None"]]


def wrap_unary(
    handler: grpc.RpcMethodHandler[Any, Any] | None, wrap: Callable[[Behavior], Behavior]
) -> grpc.RpcMethodHandler[Any, Any] | None:
    """`handler` with its unary-unary behaviour passed through `wrap`; other shapes and None unchanged."""
    if handler is None or handler.unary_unary is None:
        return handler
    return grpc.unary_unary_rpc_method_handler(
        # Under grpc.aio the behaviour is a coroutine function; the typing stubs describe the sync API.
        wrap(cast("Behavior", handler.unary_unary)),
        request_deserializer=handler.request_deserializer,
        response_serializer=handler.response_serializer,
    )
