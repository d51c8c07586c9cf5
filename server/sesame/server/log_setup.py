"""Where log lines go and how they read: structlog renders every stdlib record, as JSON or as console text.

Our modules log through the stdlib (`logging.getLogger("sesame.…")`), as do gRPC, redis-py and httpx; one
handler on the root logger formats them all with structlog's `ProcessorFormatter`. Each line gets the time,
the level, the logger, the context the RPC interceptor bound (request id, RPC, caller, masked user) and,
while a span is recording, its trace and span ids, so a line leads to its trace and a trace to its lines.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import MutableMapping
from typing import Any, TextIO

import structlog
from opentelemetry import trace

from sesame.server.telemetry_settings import TelemetrySettings

EventDict = MutableMapping[str, Any]


def add_trace_ids(_: Any, __: str, event: EventDict) -> EventDict:
    """The active span's trace and span ids (hex, as OTLP backends show them); nothing without a span."""
    context = trace.get_current_span().get_span_context()
    if context.is_valid:
        event["trace_id"] = format(context.trace_id, "032x")
        event["span_id"] = format(context.span_id, "016x")
    return event


def _without_message(_: Any, __: str, event: EventDict) -> EventDict:
    """`event` holds the formatted message already; the record's own `message` copy would double it."""
    event.pop("message", None)
    return event


def console_line(_: Any, __: str, event: EventDict) -> str:
    """`<time> <LEVEL> <logger> <message> key=value ...`: the layout of the plain-text logs before, with the
    call's fields after the message, and the traceback (if any) on the lines below.
    """
    head = " ".join(
        (
            str(event.pop("timestamp", "")),
            str(event.pop("level", "")).upper(),
            str(event.pop("logger", "")),
            str(event.pop("event", "")),
        )
    )
    traceback = event.pop("exception", None)
    fields = " ".join(f"{key}={value}" for key, value in sorted(event.items()))
    line = f"{head} {fields}" if fields else head
    return f"{line}\n{traceback}" if traceback else line


def formatter(log_format: str) -> logging.Formatter:
    """The formatter of every handler of ours: JSON objects one per line, or console text."""
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_logger_name,
        structlog.stdlib.add_log_level,
        # Fields given as `extra={...}` (the reason of a refusal, say) become keys of their own.
        structlog.stdlib.ExtraAdder(),
        _without_message,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        add_trace_ids,
    ]
    renderer: Any
    # Tracebacks never show local variables: a frame of a flow holds codes, numbers and user ids.
    if log_format == "json":
        # A traceback as structured data: one line per record, whatever the exception.
        shared.append(
            structlog.processors.ExceptionRenderer(
                structlog.tracebacks.ExceptionDictTransformer(show_locals=False)
            )
        )
        renderer = structlog.processors.JSONRenderer()
    else:
        # The stdlib's plain traceback: frames and the error, no locals (structlog's default is rich's).
        shared.append(structlog.processors.format_exc_info)
        renderer = console_line
    return structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=shared,
        processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, renderer],
    )


def configure_logging(settings: TelemetrySettings, stream: TextIO | None = None) -> logging.Handler | None:
    """Send every record at `settings.log_level` or above to `stream` (stderr), formatted as settings say.

    Like `logging.basicConfig`, it leaves a root logger that has handlers already alone (and returns None):
    the command is then run inside a program that logs its own way (the test runner, an embedding tool).
    """
    root = logging.getLogger()
    if root.handlers:
        return None
    # No line shows where it was logged from, nor the thread's or process's name or id: the stdlib's
    # documented switches spare each record looking them up (a fifth of an SMS's INFO line, decision 0072).
    logging._srcfile = None  # noqa: SLF001 (the Logging HOWTO's "Optimization": the caller is not looked up)
    logging.logThreads = False
    logging.logProcesses = False
    logging.logMultiprocessing = False
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(formatter(settings.log_format))
    root.addHandler(handler)
    root.setLevel(settings.log_level)
    return handler
