"""A request whose method name is not UTF-8 does not close a listener (decision 0161).

Found by an outside audit: grpc's aio server decodes each call's `:path` as UTF-8 in its own loop, outside
any handler; one request with `/grpc.health.v1.Health/Ch\\xe9ck` ended that loop, and the listener closed for
good (the health-only port takes no certificate: anyone reaching it took every worker out of its probes),
while the worker went on and its supervisor saw nothing. The listener listens again, with one ERROR line
and no traceback or byte of the caller's.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from sesame.server.grpc.probe import check_health
from tests.support.http2 import grpc_headers, sent_and_drained
from tests.support.serve_process import free_port, served, until

pytestmark = [pytest.mark.e2e, pytest.mark.integration]

_PATH = b"/grpc.health.v1.Health/Ch\xe9ck"


def _call_with_that_path(address: str) -> None:
    sent_and_drained(address, grpc_headers(_PATH, address))


def test_both_listeners_listen_again_after_a_path_that_is_not_utf8(tmp_path: Path) -> None:
    """One such call on the health-only port, then on the gRPC port, three times each: both answer a health
    Check after each, one ERROR line per listener ended, no traceback, none of the caller's bytes."""
    health = f"127.0.0.1:{free_port()}"
    with served(tmp_path / "var", {"SESAME_WORKERS": "1", "SESAME_HEALTH_ADDR": health}) as serving:
        for address in (health, serving.address):
            for _ in range(3):
                _call_with_that_path(address)
                assert until(lambda a=address: check_health(a, "") == "SERVING", 10), serving.output()[-3000:]
        time.sleep(0.3)
    output = serving.output()
    assert output.count("stopped (grpc's server loop failed on a call it could not read)") == 6
    assert "Traceback" not in output
    assert "\\xe9" not in output
    assert "Ch\ufffdck" not in output
