"""Traces: a span per RPC, with a child per Redis script and per HSM call, exported over OTLP when asked.

Without SESAME_OTLP_ENDPOINT no tracer provider is installed: OpenTelemetry's API would hand out
non-recording spans, but even those cost about 3 % of a worker's CPU under load (four context managers
and a context switch per span, decision 0039): the RPC and HSM spans are then not opened (`recording`).
With it, spans are batched to the collector (OTLP/gRPC) off the event loop, on the SDK's own thread.

Spans carry no personal data: RPC, status, caller service, script and key labels, never a user id, a phone
number, a code or a challenge's operation.
"""

from __future__ import annotations

import os
from importlib import metadata

from opentelemetry import trace
from opentelemetry.environment_variables import OTEL_PYTHON_TRACER_PROVIDER
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor

SERVICE_NAME = "sesame"


def tracer_provider(processor: SpanProcessor) -> TracerProvider:
    """A provider naming this service and its version, whose spans go to `processor`."""
    try:
        version = metadata.version("sesame-otp")
    except metadata.PackageNotFoundError:  # pragma: no cover (a source tree without the package installed)
        version = "unknown"
    resource = Resource.create({"service.name": SERVICE_NAME, "service.version": version})
    provider = TracerProvider(resource=resource)
    provider.add_span_processor(processor)
    return provider


# Whether a provider may come from the environment (OpenTelemetry loads it at the first lookup): then the
# public lookup is the only way to know. Sésame never sets it.
_FROM_ENVIRONMENT = OTEL_PYTHON_TRACER_PROVIDER in os.environ or not hasattr(trace, "_TRACER_PROVIDER")


def recording() -> bool:
    """Whether spans are recorded: a tracer provider was installed (by `install_tracing`, or a test's).

    Asked at every RPC, script and HSM call. While none is installed, `get_tracer_provider` looks its
    variable up in `os.environ` at every call (3 % of a worker's samples under load, decision 0049): the
    global that `set_tracer_provider` fills (once, for good) is read instead.
    """
    if _FROM_ENVIRONMENT:
        return not isinstance(trace.get_tracer_provider(), trace.ProxyTracerProvider)
    return trace._TRACER_PROVIDER is not None  # noqa: SLF001 (OpenTelemetry's one global, read only)


def install_tracing(otlp_endpoint: str | None) -> TracerProvider | None:
    """Export spans to `otlp_endpoint` (OTLP/gRPC; plaintext for http://); None: record nothing, return None.

    The SDK flushes and shuts the provider down at exit.
    """
    if otlp_endpoint is None:
        return None
    # Imported only when used: the exporter pulls in its generated protobuf modules.
    from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter  # noqa: PLC0415

    exporter = OTLPSpanExporter(endpoint=otlp_endpoint, insecure=otlp_endpoint.startswith("http://"))
    provider = tracer_provider(BatchSpanProcessor(exporter))
    trace.set_tracer_provider(provider)
    return provider
