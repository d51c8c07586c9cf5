"""What gives each call its request id, its span and its log context, and logs its answer.

Outermost of all in the call interceptor (sesame.server.grpc.calls): every line logged while the call runs
(by the other concerns, the flows, the adapters) carries `request_id`, `rpc`, `caller` and, when the
request names them, the masked `user` and the `challenge`; the Redis and HSM spans opened under it are
children of its span. The request id is the caller's `x-request-id` when it sends a well-formed one (so a
bank's own id follows the call through our logs), else a fresh one; either way it is sent back as
`x-request-id` in the trailing metadata. Health is left alone: probes call it every second and would drown
the lines that matter.
"""

from __future__ import annotations

import itertools
import logging
import os
import re
import secrets
from collections.abc import Sequence
from typing import Any

import grpc
from opentelemetry import trace
from opentelemetry.trace import Status, StatusCode

from sesame.server.domain.privacy import mask_challenge, mask_user

_log = logging.getLogger("sesame.grpc")
tracer = trace.get_tracer("sesame.grpc")

REQUEST_ID_KEY = "x-request-id"
# What a caller's id may look like: short, printable, no separator a log parser would trip on.
_WELL_FORMED = re.compile(r"[A-Za-z0-9._:-]{1,64}")
# The ids a request names are logged before the request is checked: one that could not be an id (too long, a
# character no id has: a newline, a quote) is logged as MALFORMED, never as the caller wrote it.
_LOGGABLE = re.compile(r"[A-Za-z0-9._:@-]{1,128}")
MALFORMED = "(malformed)"
# Server-side codes that mean the server failed, not the caller (OpenTelemetry's gRPC conventions).
_SERVER_FAULTS = frozenset(
    {
        grpc.StatusCode.UNKNOWN,
        grpc.StatusCode.DEADLINE_EXCEEDED,
        grpc.StatusCode.UNIMPLEMENTED,
        grpc.StatusCode.INTERNAL,
        grpc.StatusCode.UNAVAILABLE,
        grpc.StatusCode.DATA_LOSS,
    }
)

Metadata = Sequence[tuple[str, str | bytes]]


class _FreshIds:
    """Fresh request ids: this process's random 64-bit prefix and a count (32 hex digits), unique across
    workers (drawn again in a forked child) and restarts without a getrandom call per RPC (1.4 % of a
    worker's samples under load, decision 0049). A name for logs, not a secret: a caller may already send
    any well-formed id it likes."""

    def __init__(self) -> None:
        self.reseed()

    def reseed(self) -> None:
        """A new prefix and a new starting count."""
        self.prefix = secrets.token_hex(8)
        self._count = itertools.count(secrets.randbelow(1 << 32))

    def next(self) -> str:
        """The next id."""
        return f"{self.prefix}{next(self._count) & 0xFFFF_FFFF_FFFF_FFFF:016x}"


fresh_ids = _FreshIds()
os.register_at_fork(after_in_child=fresh_ids.reseed)


def request_id(metadata: Metadata) -> str:
    """The caller's `x-request-id` when well formed, else a new one (32 hex digits)."""
    for key, value in metadata:
        if key == REQUEST_ID_KEY and isinstance(value, str) and _WELL_FORMED.fullmatch(value):
            return value
    return fresh_ids.next()


def subject(request: Any) -> dict[str, str]:
    """Whom and what the request names, as logs may show it: the user masked, the challenge id."""
    fields: dict[str, str] = {}
    user_id = getattr(request, "user_id", None)
    if isinstance(user_id, str) and user_id:
        fields["user"] = mask_user(user_id) if _LOGGABLE.fullmatch(user_id) else MALFORMED
    challenge_id = getattr(request, "challenge_id", None)
    if isinstance(challenge_id, str) and challenge_id:
        fields["challenge"] = mask_challenge(challenge_id) if _LOGGABLE.fullmatch(challenge_id) else MALFORMED
    return fields


def answered(span: trace.Span, name: str, code: grpc.StatusCode, seconds: float, response: Any) -> None:
    """Close the call's record: the status on the span, one line saying how the call was answered."""
    if span.is_recording():  # none is while tracing is off: no attribute built for nothing (decision 0053)
        span.set_attribute("rpc.grpc.status_code", code.value[0])
        if code in _SERVER_FAULTS:
            span.set_status(Status(StatusCode.ERROR, code.name))
    # A verification's result (VERIFIED, WRONG_CODE, ...) is the outcome an operator looks for.
    outcome = None
    result = getattr(response, "result", None)
    if isinstance(result, int) and hasattr(response, "DESCRIPTOR"):
        field = response.DESCRIPTOR.fields_by_name["result"]
        if field.enum_type is not None:
            outcome = field.enum_type.values_by_number[result].name
    # A call that did what was asked (a challenge opened, a code VERIFIED) is DEBUG: one line per call at
    # INFO halved Start's and Verify's throughput (docs/benchmarks.md). A refusal, a wrong code and a fault
    # are INFO, with their reason.
    routine = code is grpc.StatusCode.OK and outcome in (None, "VERIFY_RESULT_VERIFIED")
    level = logging.DEBUG if routine else logging.INFO
    if not _log.isEnabledFor(level):  # the line's fields are built only for a line that is written (0053)
        return
    fields: dict[str, Any] = {"code": code.name, "duration_ms": round(seconds * 1000, 3)}
    if outcome is not None:
        fields["result"] = outcome
    _log.log(level, "rpc %s answered %s", name, code.name, extra=fields)
