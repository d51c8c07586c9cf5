"""Log and trace settings: level, format (by environment), the OTLP endpoint; bad values stop the boot."""

from __future__ import annotations

import pytest

from sesame.server.config import Settings
from sesame.server.domain.errors import ConfigurationError
from sesame.server.env_reader import EnvReader
from sesame.server.telemetry_settings import TelemetrySettings, read_telemetry


def test_development_defaults_to_console_lines_at_info_and_no_tracing():
    """With no variable: INFO, console text, no OTLP endpoint."""
    assert Settings.from_env({}).telemetry == TelemetrySettings("INFO", "console", None)


def test_production_defaults_to_json_lines():
    """In production the default format is JSON, for the log shipper."""
    assert read_telemetry(EnvReader({}), "production").log_format == "json"


def test_the_settings_are_read():
    """Level, format and endpoint as given."""
    env = {
        "SESAME_LOG_LEVEL": "DEBUG",
        "SESAME_LOG_FORMAT": "json",
        "SESAME_OTLP_ENDPOINT": "http://otel-collector:4317/",
    }
    assert Settings.from_env(env).telemetry == TelemetrySettings(
        "DEBUG", "json", "http://otel-collector:4317"
    )


@pytest.mark.parametrize(
    "endpoint",
    [
        "http://otel_collector:4317",
        "https://[::1]:4317",
        "http://10.0.0.7:4317",
        "http://xn--bcher-kva.example",
    ],
)
def test_an_endpoint_host_may_be_a_name_or_an_address(endpoint: str):
    """Compose names (underscores), IPv6 in brackets, IPv4, an IDN in its xn-- form: accepted as given."""
    assert Settings.from_env({"SESAME_OTLP_ENDPOINT": endpoint}).telemetry.otlp_endpoint == endpoint


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("SESAME_LOG_LEVEL", "verbose"),
        ("SESAME_LOG_FORMAT", "xml"),
        ("SESAME_OTLP_ENDPOINT", "collector:4317"),
        ("SESAME_OTLP_ENDPOINT", "http://user:secret@collector:4317"),
        ("SESAME_OTLP_ENDPOINT", "http://\u00b2"),
        ("SESAME_OTLP_ENDPOINT", "http://collector..internal:4317"),
    ],
)
def test_a_bad_value_stops_the_boot_naming_the_variable(name: str, value: str):
    """An unknown level or format, an endpoint that is not a plain http(s) URL: ConfigurationError."""
    with pytest.raises(ConfigurationError) as caught:
        Settings.from_env({name: value})
    assert name in str(caught.value)
