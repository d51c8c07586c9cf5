"""One `sesame serve` with embedded defaults for each interop client module."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support.interop import Served
from tests.support.serve_process import start_serve


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    """One server with embedded defaults; SMS go to var/sms.jsonl (the SESAME_SMS_CONSOLE_FILE default)."""
    var = tmp_path_factory.mktemp("var")
    serving = start_serve(var)
    yield Served(serving.address, var / "sms.jsonl")
    serving.process.terminate()
    serving.process.wait(timeout=30)
