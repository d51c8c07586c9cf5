"""What our unary interceptors share: re-wrapping a handler's unary-unary behaviour."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
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


@dataclass(slots=True)
class Answer:
    """How a call was answered, filled in by `answering` as it ends: the status code, the response if any."""

    code: grpc.StatusCode = grpc.StatusCode.UNKNOWN
    response: Any = None


async def answering(
    behavior: Behavior, request: Any, context: grpc.aio.ServicerContext[Any, Any], answer: Answer
) -> Any:
    """Run the behaviour and note in `answer` the status the caller gets, whether it returns, aborts or is
    cancelled; the interceptors that count or log a call read it in their `finally`."""
    try:
        answer.response = await behavior(request, context)
    except asyncio.CancelledError:
        answer.code = grpc.StatusCode.CANCELLED
        raise
    except BaseException:
        answer.code = context.code() or grpc.StatusCode.UNKNOWN
        raise
    answer.code = context.code() or grpc.StatusCode.OK
    return answer.response
