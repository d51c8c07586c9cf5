"""What a `sesame serve` worker loads: nothing it does not serve with (decision 0039: RSS per worker)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.support.serve_process import start_serve

pytestmark = [pytest.mark.e2e, pytest.mark.integration]

# Loaded only when configured: httpx for Kannel and the SIM swap API, aiohttp for Kannel's delivery reports;
# fpdf2 for `sesame evidence --pdf`, matplotlib for `make bench`. Together about 20 MB in every worker.
NOT_SERVED_WITH = ("httpx", "aiohttp", "fpdf", "matplotlib")


def test_a_console_server_loads_no_http_client_pdf_or_plot_library(tmp_path: Path) -> None:
    """Served with the console SMS (no Kannel, no SIM swap API), neither the supervisor nor the worker
    imports what only other settings or commands use (Python's own import log, read from the output)."""
    serving = start_serve(tmp_path / "var", settings={"PYTHONPROFILEIMPORTTIME": "1"})
    try:
        output = serving.output()
    finally:
        serving.process.terminate()
        serving.process.wait(timeout=30)
    imported = set(re.findall(r"^import time:.*\|\s*([\w.]+)$", output, flags=re.MULTILINE))
    assert "sesame.server.app" in imported  # the log is there: the serve path was imported
    assert {name for name in imported if name.split(".")[0] in NOT_SERVED_WITH} == set()
