"""What an operator sees of a running server besides metrics: log level and format, the trace exporter."""

from __future__ import annotations

from dataclasses import dataclass

from sesame.server.env_reader import EnvReader

LOG_LEVELS = ("INFO", "DEBUG", "WARNING", "ERROR")
LOG_FORMATS = ("json", "console")


@dataclass(frozen=True, slots=True)
class TelemetrySettings:
    """Logs (`json`: one JSON object a line; `console`: aligned text) and where spans go (None: nowhere)."""

    log_level: str = "INFO"
    log_format: str = "console"
    otlp_endpoint: str | None = None


def read_telemetry(reader: EnvReader, environment: str) -> TelemetrySettings:
    """SESAME_LOG_LEVEL, SESAME_LOG_FORMAT (JSON in production, for the log shipper), SESAME_OTLP_ENDPOINT."""
    reader.asked.setdefault("SESAME_LOG_FORMAT", "console in development, json in production")
    default_format = "json" if environment == "production" else "console"
    return TelemetrySettings(
        log_level=reader.choice("SESAME_LOG_LEVEL", "INFO", LOG_LEVELS),
        log_format=reader.choice("SESAME_LOG_FORMAT", default_format, LOG_FORMATS),
        # An OTLP/gRPC collector such as http://otel-collector:4317; unset, no span is recorded at all.
        otlp_endpoint=reader.url("SESAME_OTLP_ENDPOINT", "unset: no tracing"),
    )
