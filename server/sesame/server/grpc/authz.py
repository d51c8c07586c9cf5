"""The interceptor that lets a call through only when the caller's policy grants its method.

It runs inside the error interceptor: a refused unary call raises CallerNotAllowed, which the one error
table turns into PERMISSION_DENIED with an ErrorInfo, and the metering interceptor, outermost, counts it.
Streaming calls (reflection) are outside the error interceptor's reach, so they are refused here, with the
same status. Health is never checked: probes and balancers hold no grant. Every other call runs with its
caller's identity set (`callers.current_caller`), whether or not a policy is in force.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import AsyncIterator, Callable
from typing import Any, cast

import grpc

from sesame.server.grpc.callers import CallerNotAllowed, caller_identity, calling_as
from sesame.server.grpc.catalogue import HEALTH_SERVICE
from sesame.server.grpc.policy import CallerPolicy
from sesame.server.grpc.status import abort_with, to_status
from sesame.server.grpc.unary import Behavior, Continuation, rewrapped

_log = logging.getLogger("sesame.grpc")

Context = grpc.aio.ServicerContext[Any, Any]
Streaming = Callable[[Any, Context], AsyncIterator[Any]]


class AuthorizationInterceptor(grpc.aio.ServerInterceptor):
    """Checks each call against `policy`; with no policy (development only) every caller is allowed."""

    def __init__(self, policy: CallerPolicy | None) -> None:
        self._policy = policy

    async def intercept_service(
        self, continuation: Continuation, handler_call_details: grpc.HandlerCallDetails
    ) -> grpc.RpcMethodHandler[Any, Any] | None:
        handler = await continuation(handler_call_details)
        # "/package.Service/Method" on the wire; the policy names "package.Service/Method".
        method = handler_call_details.method.removeprefix("/")
        if handler is None or method.startswith(f"{HEALTH_SERVICE}/"):
            return handler
        behavior = (
            handler.unary_unary or handler.unary_stream or handler.stream_unary or handler.stream_stream
        )
        # Under grpc.aio behaviours are coroutine or async-generator functions; the stubs type the sync API.
        checked: object
        if handler.unary_unary is not None:
            checked = self._unary(cast("Behavior", behavior), method)
        elif handler.response_streaming:
            checked = self._streaming(cast("Streaming", behavior), method)
        else:
            checked = self._client_streaming(cast("Behavior", behavior), method)
        # Every shape wrapped, so that none slips through unchecked: an RPC added later is refused until a
        # policy grants it.
        return rewrapped(handler, checked)

    def _admit(self, method: str, context: Context) -> str | None:
        """The caller's identity when the policy lets it call `method`; else CallerNotAllowed."""
        caller = caller_identity(context.auth_context())
        if self._policy is not None and not self._policy.allows(caller, method):
            raise CallerNotAllowed(method, caller)
        return caller

    def _unary(self, behavior: Behavior, method: str) -> Behavior:
        # A refusal propagates to the error interceptor, which answers it from the one table.
        async def checked(request: Any, context: Context) -> Any:
            with calling_as(self._admit(method, context)):
                return await behavior(request, context)

        return checked

    def _client_streaming(self, behavior: Behavior, method: str) -> Behavior:
        async def checked(requests: Any, context: Context) -> Any:
            with calling_as(await self._admit_or_refuse(method, context)):
                return await behavior(requests, context)

        return checked

    def _streaming(self, behavior: Streaming, method: str) -> Streaming | Behavior:
        # Of the behaviour's kind, as grpc.aio tells them apart: an async generator yields its responses, a
        # coroutine writes them with context.write (see decoding.py).
        if inspect.iscoroutinefunction(behavior):

            async def writing(request: Any, context: Context) -> Any:
                with calling_as(await self._admit_or_refuse(method, context)):
                    return await cast("Behavior", behavior)(request, context)

            return writing

        async def checked(request: Any, context: Context) -> AsyncIterator[Any]:
            with calling_as(await self._admit_or_refuse(method, context)):
                async for response in behavior(request, context):
                    yield response

        return checked

    async def _admit_or_refuse(self, method: str, context: Context) -> str | None:
        """`_admit`, for the streaming shapes the error interceptor does not wrap: a refusal answers here."""
        try:
            return self._admit(method, context)
        except CallerNotAllowed as error:
            _log.warning(
                "rpc /%s failed: CallerNotAllowed (caller %s)", method, error.caller or "unidentified"
            )
            await abort_with(context, to_status(error))
