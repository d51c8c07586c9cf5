"""`sesame serve` over SMPP, an SMSC refusing the bind (a wrong password after a rotation): health says so.

The SMSC answered every bind_transceiver with ESME_RBINDFAIL: no message could leave, each would fail at once
(`unreachable`), yet health's `sesame.SmsGateway` read SERVING (and `sesame_health_serving` 1) until a
customer's SMS had failed: the watch learnt only from sends. It now reads NOT_SERVING while every provider is
held, its session not bound since its last attempt to bind failed, and SERVING again once it binds
(decision 0122).
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from tests.support.bind_gate import ESME_RINVPASWD, BindGate
from tests.support.serve_process import ServeProcess, served

pytestmark = [pytest.mark.e2e, pytest.mark.integration]

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


@pytest.fixture
def gate() -> Iterator[BindGate]:
    with BindGate() as running:
        yield running


@pytest.fixture
def serving(gate: BindGate, tmp_path: Path) -> Iterator[ServeProcess]:
    """A `sesame serve` whose only provider is the gate."""
    settings = {
        "SESAME_SMS_PROVIDERS": "smpp",
        "SESAME_SMPP_HOST": "127.0.0.1",
        "SESAME_SMPP_PORT": str(gate.port),
        "SESAME_SMPP_SYSTEM_ID": "sesame",
        "SESAME_SMPP_PASSWORD": "wrong!pw",
    }
    with served(tmp_path / "var", settings) as serving:
        yield serving


def _sms_health(address: str) -> int:
    with grpc.insecure_channel(address) as channel:
        request = health_pb2.HealthCheckRequest(service="sesame.SmsGateway")
        return int(health_pb2_grpc.HealthStub(channel).Check(request, timeout=3).status)


def _until_health(address: str, status: int, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if _sms_health(address) == status:
            return True
        time.sleep(0.2)
    return False


def test_a_refused_bind_reads_not_serving_before_any_send_and_serving_once_bound(
    gate: BindGate, serving: ServeProcess
) -> None:
    """No SMS is sent: with every bind refused the gateway's health reads NOT_SERVING within 5 s; once the
    SMSC takes the bind (the password fixed on its side), SERVING again within the bind's backoff (≤ 10 s)."""
    assert _until_health(serving.address, NOT_SERVING, 5), serving.output()[-2000:]
    assert not any(gate.binds)
    gate.refusing = False
    assert _until_health(serving.address, SERVING, 15), serving.output()[-2000:]
    assert any(gate.binds)


@pytest.fixture
def refusing_password(tmp_path: Path) -> Iterator[tuple[BindGate, ServeProcess]]:
    """A `sesame serve` whose only provider is a gate refusing the password (ESME_RINVPASWD)."""
    with BindGate(refuse_with=ESME_RINVPASWD) as gate:
        settings = {
            "SESAME_SMS_PROVIDERS": "smpp",
            "SESAME_SMPP_HOST": "127.0.0.1",
            "SESAME_SMPP_PORT": str(gate.port),
            "SESAME_SMPP_SYSTEM_ID": "sesame",
            "SESAME_SMPP_PASSWORD": "wrong!pw",
        }
        with served(tmp_path / "var", settings) as serving:
            yield gate, serving


def test_a_refused_bind_is_logged_once_a_minute_and_its_end_once(
    refusing_password: tuple[BindGate, ServeProcess],
) -> None:
    """Five binds refused in about 8 s: one WARNING, naming the SMSC and its status, never the password
    (before: a WARNING per attempt); once the SMSC takes the bind, one INFO line says it is bound again
    (decision 0117)."""
    gate, serving = refusing_password
    deadline = time.monotonic() + 20
    while len(gate.attempts) < 5 and time.monotonic() < deadline:
        time.sleep(0.1)
    assert len(gate.attempts) >= 5
    assert _until_health(serving.address, NOT_SERVING, 5), serving.output()[-2000:]
    where = f"SMPP bind to 127.0.0.1:{gate.port} failed"
    warnings = [line for line in serving.output().splitlines() if where in line]
    assert len(warnings) == 1, warnings
    assert "the SMSC refused the bind (status 0x0000000e, ESME_RINVPASWD)" in warnings[0]
    gate.refusing = False
    assert _until_health(serving.address, SERVING, 20), serving.output()[-2000:]
    output = serving.output()
    again = rf"INFO sesame\.sms SMPP bound to 127\.0\.0\.1:{gate.port} .* again, after"
    assert len(re.findall(again, output)) == 1, output[-2000:]
    assert "wrong!pw" not in output
