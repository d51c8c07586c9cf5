"""`tracing.recording` (decision 0049): False until a tracer provider is installed, True from then on, as
OpenTelemetry's own lookup says; in a fresh interpreter, since this one's tests may have installed one."""

from __future__ import annotations

import subprocess
import sys

SCRIPT = """
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from sesame.server.tracing import recording

def public() -> bool:
    return not isinstance(trace.get_tracer_provider(), trace.ProxyTracerProvider)

assert recording() is False and public() is False
trace.get_tracer("sesame.test").start_span("nothing recorded").end()
assert recording() is False
trace.set_tracer_provider(TracerProvider())
assert recording() is True and public() is True
print("ok")
"""


def test_recording_follows_the_installed_provider() -> None:
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT], capture_output=True, text=True, check=False, timeout=60
    )
    assert done.stdout.strip() == "ok", done.stderr


def test_a_provider_named_in_the_environment_is_recording() -> None:
    env_script = """
import os
os.environ["OTEL_PYTHON_TRACER_PROVIDER"] = "sdk_tracer_provider"
from sesame.server.tracing import recording
assert recording() is True
print("ok")
"""
    done = subprocess.run(
        [sys.executable, "-c", env_script], capture_output=True, text=True, check=False, timeout=60
    )
    assert done.stdout.strip() == "ok", done.stderr
