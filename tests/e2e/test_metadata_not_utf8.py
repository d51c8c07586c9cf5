"""A metadata value that is not UTF-8 is one WARNING a minute, never an ERROR with a traceback per call.

Found by an outside audit: HTTP/2 allows any octets in a header value, and grpc, decoding the metadata the
interceptors read, logged `ERROR grpc._cython.cygrpc Invalid encoding on b'...'` with a traceback for each
such header of each call, the bytes included, on either port: any peer of the health-only port (no
certificate needed) wrote ERROR lines at will. The calls are answered as before (decision 0160).
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from tests.support.http2 import grpc_headers, sent_and_drained
from tests.support.serve_process import free_port, served

pytestmark = [pytest.mark.e2e, pytest.mark.integration]

CALLS = 5
_NOT_UTF8 = b"r\xe9q"


def _checks(address: str) -> None:
    """CALLS health Checks on one connection, each with a header whose value is not UTF-8."""
    block = grpc_headers("/grpc.health.v1.Health/Check", address, ((b"x-anything", _NOT_UTF8),))
    sent_and_drained(address, block, CALLS)


def test_a_header_that_is_not_utf8_writes_one_warning_and_no_traceback(tmp_path: Path) -> None:
    """Five calls on the health-only port and five on the gRPC port, each with a Latin-1 header: one WARNING
    (the one worker's first; the others held back for a minute), no ERROR, no traceback, not the bytes."""
    health = f"127.0.0.1:{free_port()}"
    with served(tmp_path / "var", {"SESAME_WORKERS": "1", "SESAME_HEALTH_ADDR": health}) as serving:
        _checks(health)
        _checks(serving.address)
        time.sleep(0.5)
    output = serving.output()
    assert "Invalid encoding" not in output
    assert "Traceback" not in output
    assert "\\xe9" not in output
    assert output.count("a call's metadata held a value that is not UTF-8") == 1
