"""What a test reads of the server's logs and traces: its JSON log lines, the spans it recorded.

`json_logs` renders every record, at DEBUG, with the very formatter `sesame serve` uses. `spans` installs
the SDK's in-memory exporter as the process's tracer provider (OpenTelemetry allows one per process: it is
installed once and emptied before each test that asks for it).
"""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from sesame.server.log_setup import formatter
from sesame.server.tracing import tracer_provider


@dataclass(frozen=True)
class JsonLogs:
    """The lines the server logged as JSON while the test ran."""

    buffer: io.StringIO

    def text(self) -> str:
        """Everything written, as it would reach stderr."""
        return self.buffer.getvalue()

    def lines(self) -> list[dict[str, Any]]:
        """Every line, parsed (a line that is not one JSON object fails the test here)."""
        return [json.loads(line) for line in self.text().splitlines()]


@pytest.fixture
def json_logs() -> Iterator[JsonLogs]:
    """Every log record of the process, at DEBUG and above, as the JSON lines of SESAME_LOG_FORMAT=json."""
    buffer = io.StringIO()
    handler = logging.StreamHandler(buffer)
    handler.setFormatter(formatter("json"))
    root = logging.getLogger()
    level = root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    try:
        yield JsonLogs(buffer)
    finally:
        root.removeHandler(handler)
        root.setLevel(level)


class _Gate(SimpleSpanProcessor):
    """Keeps finished spans only while a test that asked for them runs (the provider outlives it)."""

    def __init__(self, exporter: InMemorySpanExporter) -> None:
        super().__init__(exporter)
        self.open = False

    def on_end(self, span: ReadableSpan) -> None:
        if self.open:
            super().on_end(span)


_EXPORTER = InMemorySpanExporter()
_GATE = _Gate(_EXPORTER)


@pytest.fixture
def spans() -> Iterator[InMemorySpanExporter]:
    """The in-memory exporter the spans of the process go to while this test runs, empty at its start."""
    if isinstance(trace.get_tracer_provider(), trace.ProxyTracerProvider):
        trace.set_tracer_provider(tracer_provider(_GATE))
    _EXPORTER.clear()
    _GATE.open = True
    try:
        yield _EXPORTER
    finally:
        _GATE.open = False
        _EXPORTER.clear()
